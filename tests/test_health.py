"""sd_notify watchdog: pings stop while the worker really stalls (a full-size network on the CPU), and the
systemd unit passes `systemd-analyze verify`."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.media import face_frames, write_mp4
from tests.support.servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.full_size
async def test_watchdog_pings_stop_when_the_worker_stalls(tmp_path, face_paths):
    crops = [np.asarray(Image.open(p).convert("RGB")) for p in face_paths[:4]]
    clip = write_mp4(tmp_path / "faces.mp4", face_frames(crops, 25 * 20, size=(480, 360), face_px=170))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    received: list[tuple[float, str]] = []

    def read():
        while True:
            try:
                received.append((time.monotonic(), notify.recv(4096).decode()))
            except BlockingIOError:
                return

    asyncio.get_running_loop().add_reader(notify.fileno(), read)
    with RedisServer() as redis_server:
        config = tmp_path / "monitor.toml"
        # An untrained ViT-L/14 on two CPU cores: ~2 s per crop, so a batch of 8 takes ~16 s, far beyond the
        # 3 s watchdog: a real stall, with work waiting and no batch finishing.
        config.write_text(f"""
[model]
allow_untrained = true
devices = ["cpu"]
[worker]
max_batch = 8
max_wait_ms = 100
buckets = [1]
staleness_ms = 60000
watchdog_s = 3
[sampling]
sample_fps = 8
[alerts]
spool_dir = "{tmp_path / 'spool'}"
[redis]
url = "{redis_server.url}"
[http]
port = {free_port()}
[[streams]]
id = "cam"
url = "{clip}"
""")
        env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
        log = open(tmp_path / "daemon.log", "w")
        daemon = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(config)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline and longest_stall(received) < 6:
                await asyncio.sleep(0.5)
        finally:
            stopping = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=90)
            log.close()
            # A CPU batch of 8 ViT-L/14 crops (~16 s here) finishes before the process can exit.
            print(f"SIGTERM to exit with a batch in flight: {time.monotonic() - stopping:.1f} s")
    asyncio.get_running_loop().remove_reader(notify.fileno())
    notify.close()
    ready = next(t for t, m in received if m.startswith("READY=1"))
    pings = [t for t, m in received if "WATCHDOG=1" in m and t > ready]
    assert len(pings) >= 2, "no WATCHDOG=1 while healthy"
    stall = longest_stall(received)
    print(f"{len(pings)} pings while healthy; the longest stall: {stall} unhealthy reports in a row, no ping between")
    assert stall >= 6  # >= 3 s of reports every 0.5 s with the pings withheld


def longest_stall(received) -> int:
    """The longest run of consecutive STATUS=unhealthy notifications with no WATCHDOG=1 among them."""
    best = run = 0
    for _, message in received:
        if "STATUS=unhealthy" in message:
            run += 1
            best = max(best, run)
        elif "WATCHDOG=1" in message:
            run = 0
    return best


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (.ci/setup installs it)")
def test_systemd_unit_verifies(tmp_path):
    unit = (ROOT / "systemd" / "deepfake-monitor.service").read_text()
    for required in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "LoadCredential=", "DeviceAllow=/dev/nvidiactl"):
        assert required in unit
    directives = [line.split("=", 1)[0] for line in unit.splitlines() if line and not line.startswith("#")]
    for forbidden in ("PrivateDevices", "MemoryDenyWriteExecute"):
        assert forbidden not in directives
    # verify checks that ExecStart exists: point it at this checkout's venv.
    local = tmp_path / "deepfake-monitor.service"
    local.write_text(unit.replace("/opt/deepfake-monitor/.venv/bin/monitor", sys.executable.replace("python", "monitor")))
    result = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "deepfake-monitor.service" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (.ci/setup installs it)")
def test_systemd_template_unit_verifies_per_instance(tmp_path):
    """deepfake-monitor@.service: one daemon per config (a cluster member each), with its own state folder."""
    template = (ROOT / "systemd" / "deepfake-monitor@.service").read_text()
    for required in ("Type=notify", "--config /etc/deepfake-monitor/%i.toml", "StateDirectory=deepfake-monitor/%i",
                     "WatchdogSec=", "LoadCredential="):
        assert required in template
    local = tmp_path / "deepfake-monitor@gpu0.service"
    local.write_text(template.replace("/opt/deepfake-monitor/.venv/bin/monitor",
                                      sys.executable.replace("python", "monitor")))
    result = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "deepfake-monitor@" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
