"""Daemons of one cluster as real child processes, and a sampler of who runs what."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.support.daemon import DaemonProcess
from tests.support.servers import free_port


def node_config(folder: Path, instance: str, checkpoint: Path, redis_url: str, port: int, ttl: float = 3.0,
                max_streams: int = 4, extra: str = "") -> str:
    return f"""
instance = "{instance}"
[model]
path = "{checkpoint}"
devices = ["cpu"]
[worker]
max_batch = 4
buckets = [1, 4]
cpu_threads = 1
[sampling]
sample_fps = 2
open_timeout_s = 5
stall_timeout_s = 5
backoff_initial_s = 0.2
backoff_max_s = 1
[window]
seconds = 10
min_crops = 2
[verdict]
suspicious = 0.01
manipulated = 0.99
enter_crops = 1
enter_seconds = 0
[alerts]
spool_dir = "{folder / instance / 'spool'}"
update_interval_s = 0
[evidence]
enabled = false
[cluster]
enabled = true
lease_ttl_s = {ttl}
max_streams = {max_streams}
[redis]
url = "{redis_url}"
[http]
port = {port}
[logging]
format = "json"
{extra}
"""


@dataclass
class Node:
    instance: str
    port: int
    process: DaemonProcess
    config: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self, sig=signal.SIGKILL) -> None:
        self.process.process.send_signal(sig)

    def alive(self) -> bool:
        return self.process.process.poll() is None


def start_node(folder: Path, instance: str, checkpoint: Path, redis_url: str, **options) -> Node:
    port = free_port()
    (folder / instance).mkdir(parents=True, exist_ok=True)
    config = folder / instance / "monitor.toml"
    config.write_text(node_config(folder, instance, checkpoint, redis_url, port, **options))
    process = DaemonProcess(config, folder / instance / "daemon.log", env={"OMP_NUM_THREADS": "1"})
    return Node(instance, port, process, config)


async def cluster_view(session: aiohttp.ClientSession, node: Node) -> dict | None:
    try:
        async with session.get(node.base + "/cluster", timeout=aiohttp.ClientTimeout(total=2)) as response:
            return await response.json() if response.status == 200 else None
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return None


@dataclass
class Sampler:
    """Every `period` s, each running node's `/cluster`: the streams it runs under a lease it trusts. Two nodes
    overlapping on a stream (one's report made after the other claimed it, while it still held it) is a dual
    owner."""

    nodes: list[Node]
    period: float = 0.1
    samples: int = 0
    dual: list[tuple] = field(default_factory=list)
    owned: list[tuple[float, dict[str, str]]] = field(default_factory=list)  # (time, stream -> owner)
    _task: asyncio.Task | None = None

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                views = await asyncio.gather(*(cluster_view(session, n) for n in self.nodes if n.alive()))
                holders: dict[str, list[tuple[str, dict, float]]] = {}
                for view in views:
                    if not view:
                        continue
                    for stream, lease in view.get("held", {}).items():
                        holders.setdefault(stream, []).append((view["instance"], lease, view["now"]))
                for stream, entries in holders.items():
                    if len(entries) > 1:
                        entries.sort(key=lambda e: e[1]["token"])
                        (_, _, old_now), (_, new_lease, _) = entries[-2], entries[-1]
                        if old_now >= new_lease["claimed_at"]:  # the old one still trusted it after the claim
                            self.dual.append((time.time(), stream, entries))
                self.owned.append((time.time(), {s: e[-1][0] for s, e in holders.items()}))
                self.samples += 1
                await asyncio.sleep(self.period)

    def start(self) -> "Sampler":
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


def leases(client, streams: list[str]) -> dict[str, tuple[str, int] | None]:
    out = {}
    for stream in streams:
        value = client.get(f"deepfake:lease:{stream}")
        out[stream] = (value.rpartition(":")[0], int(value.rpartition(":")[2])) if value else None
    return out


def log_events(client) -> list[dict]:
    return [json.loads(fields["event"]) for _, fields in client.xrange("deepfake:events")]


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0

