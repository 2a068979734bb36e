"""`monitor run` as a real child process, and the small helpers the daemon tests share."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp


class DaemonProcess:
    def __init__(self, config_path: Path, log_path: Path, env: dict | None = None, notify_socket: str | None = None):
        env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        if notify_socket:
            env.update(NOTIFY_SOCKET=notify_socket, WATCHDOG_USEC="1000000")
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(config_path)],
                                        stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.log.close()
        return code

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text()[-chars:] if self.log_path.exists() else ""


async def http(method: str, url: str, token: str | None = None, **kwargs) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers, **kwargs) as response:
            return response.status, await response.text()


async def wait_until(predicate, timeout: float, step: float = 0.2) -> bool:
    """Poll an async predicate (connection errors count as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await predicate():
                return True
        except (aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(step)
    return False


async def ready(base: str) -> bool:
    return (await http("GET", base + "/readyz"))[0] == 200


async def value(x):
    """An async predicate from a plain value: `wait_until(lambda: value(condition()), ...)`."""
    return x


def events(client, prefix: str = "deepfake") -> list[dict]:
    """Every event in the durable log, in order, with its entry id as `log_id`."""
    return [{**json.loads(fields["event"]), "log_id": entry_id} for entry_id, fields in client.xrange(f"{prefix}:events")]
