"""The daemon end to end, as a real subprocess: RTSP (GStreamer) and WHIP (aiortc) in, Redis out."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import redis
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from monitor.sources.webrtc import restrict_host_addresses
from tests.support.media import face_frames, write_mp4
from tests.support.reference_models import make_lightning
from tests.support.servers import RedisServer, RtspServer, free_port
from tests.support.whip_client import WhipPublisher

SECRETS = {"rtsp": "rtsp-Pa55-x1", "redis": "redis-Pa55-y2", "api": "api-t0ken-z3", "whip": "whip-t0ken-w4"}


@pytest.fixture(scope="module")
def assets(tmp_path_factory, face_paths):
    folder = tmp_path_factory.mktemp("daemon")
    crops = [np.asarray(Image.open(p).convert("RGB")) for p in face_paths[::4]]
    clip = write_mp4(folder / "faces.mp4", face_frames(crops, 25 * 40, size=(480, 360), face_px=170))
    make_lightning(folder / "model.ckpt", width=64, layers=1)
    return folder, clip


def config_text(folder: Path, http_port: int, redis_port: int, rtsp_port: int, streams: str) -> str:
    return f"""
instance = "test-daemon"
[model]
path = "{folder / 'model.ckpt'}"
devices = ["cpu"]
[worker]
max_batch = 8
max_wait_ms = 20
watchdog_s = 10
[sampling]
sample_fps = 4
open_timeout_s = 5
stall_timeout_s = 3
backoff_initial_s = 0.2
backoff_max_s = 1
[window]
seconds = 10
min_crops = 2
[verdict]
suspicious = 0.01
manipulated = 0.99
enter_crops = 2
enter_seconds = 0
[alerts]
spool_dir = "{folder / 'spool'}"
update_interval_s = 0
[redis]
url = "redis://:${{REDIS_PASSWORD}}@127.0.0.1:{redis_port}/0"
[http]
port = {http_port}
token = "${{API_TOKEN}}"
[whip]
token = "${{WHIP_TOKEN}}"
media_timeout_s = 3
host_addresses = ["127.0.0.1"]
[logging]
format = "json"
{streams}
"""


def rtsp_stream(stream_id, port):
    return f'[[streams]]\nid = "{stream_id}"\nurl = "rtsp://viewer:${{RTSP_PASSWORD}}@127.0.0.1:{port}/file"\n'


class Daemon:
    def __init__(self, config_path: Path, log_path: Path, notify_socket: str | None = None):
        env = {**os.environ, "REDIS_PASSWORD": SECRETS["redis"], "API_TOKEN": SECRETS["api"],
               "WHIP_TOKEN": SECRETS["whip"], "RTSP_PASSWORD": SECRETS["rtsp"], "PYTHONUNBUFFERED": "1"}
        if notify_socket:
            env.update(NOTIFY_SOCKET=notify_socket, WATCHDOG_USEC="1000000")
        self.log = open(log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(config_path)],
                                        stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def stop(self, timeout=30) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.log.close()
        return code


async def http(method, url, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers, **kwargs) as response:
            return response.status, await response.text()


async def wait_until(predicate, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await predicate():
                return True
        except (aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(step)
    return False


def events(client) -> list[dict]:
    return [json.loads(fields["event"]) for _, fields in client.xrange("deepfake:events")]


async def test_end_to_end_rtsp_and_whip(assets, tmp_path):
    folder, clip = assets
    restrict_host_addresses(["127.0.0.1"])
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = str(tmp_path / "notify.sock")
    notify.bind(notify_path)
    notify.setblocking(False)
    messages = []

    def read_notifications():  # like systemd: always reading
        while True:
            try:
                messages.append(notify.recv(4096).decode())
            except BlockingIOError:
                return

    asyncio.get_running_loop().add_reader(notify.fileno(), read_notifications)
    with RedisServer(password=SECRETS["redis"]) as redis_server, \
            RtspServer(file=str(clip), user="viewer", password=SECRETS["rtsp"], size="480x360") as rtsp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        config_path = tmp_path / "monitor.toml"
        config_path.write_text(config_text(folder, port, redis_server.port, rtsp.port,
                                           rtsp_stream("cam1", rtsp.port) + '[[streams]]\nid = "call"\nurl = "whip"\n'))
        daemon = Daemon(config_path, tmp_path / "daemon.log", notify_path)
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        publisher = WhipPublisher(f"{base}/whip/call", SECRETS["whip"])
        try:
            assert await wait_until(lambda: _ok(http("GET", base + "/readyz")), 90), _tail(tmp_path)
            started = time.time()
            response = await publisher.publish(path=str(clip), codec="H264")
            assert response.status == 201
            # Both streams produce alerts (the thresholds are set so that any face alerts).
            assert await wait_until(lambda: _async({e["stream_id"] for e in events(client) if e["type"] == "opened"}
                                                   >= {"cam1", "call"}), 60), _tail(tmp_path)
            state = client.hgetall("deepfake:stream:cam1")
            assert state["verdict"] in ("no_face", "insufficient_evidence", "authentic", "suspicious", "manipulated")
            assert float(state["frames_in"]) > 0 and state["instance"] == "test-daemon"
            opened = [e for e in events(client) if e["type"] == "opened"]
            for event in opened:
                t = event["times"]
                assert t["first_frame"] <= t["last_frame"] <= t["scored_at"] <= t["published_at"]
                assert event["model"]["id"].startswith("yermandy/deepfake-detection@")
            latencies = [e["times"]["published_at"] - e["times"]["last_frame"] for e in opened]
            print(f"frame-to-alert latency over {len(latencies)} opened alerts: median {np.median(latencies):.2f} s, "
                  f"max {max(latencies):.2f} s (first alert {min(e['times']['published_at'] for e in opened) - started:.1f} s "
                  f"after publishing started)")

            # The API: auth, listing, runtime add/remove while the others keep producing.
            assert (await http("GET", base + "/streams"))[0] == 401
            status, body = await http("GET", base + "/streams", SECRETS["api"])
            assert status == 200 and {s["id"] for s in json.loads(body)["streams"]} == {"cam1", "call"}
            added = {"id": "cam2", "url": f"rtsp://viewer:{SECRETS['rtsp']}@127.0.0.1:{rtsp.port}/file"}
            assert (await http("POST", base + "/streams", SECRETS["api"], json=added))[0] == 201
            assert (await http("POST", base + "/streams", SECRETS["api"], json=added))[0] == 409
            bad = await http("POST", base + "/streams", SECRETS["api"], json={"id": "x", "url": "ftp://nope"})
            assert bad[0] == 400 and "url" in bad[1]
            assert await wait_until(lambda: _async(any(e["stream_id"] == "cam2" and e["type"] == "opened"
                                                       for e in events(client))), 60)
            cam1_before = int(client.hget("deepfake:stream:cam1", "frames_in"))
            assert (await http("DELETE", base + "/streams/cam2", SECRETS["api"]))[0] == 204

            def cam2_all_closed():
                cam2 = [e for e in events(client) if e["stream_id"] == "cam2"]
                opened = {e["alert_id"] for e in cam2 if e["type"] == "opened"}
                return opened and opened <= {e["alert_id"] for e in cam2 if e["type"] == "closed"}

            assert await wait_until(lambda: _async(cam2_all_closed()), 10)
            assert (await http("GET", base + "/streams/cam2", SECRETS["api"]))[0] == 404
            await asyncio.sleep(2)
            assert int(client.hget("deepfake:stream:cam1", "frames_in")) > cam1_before

            # SIGHUP: an invalid file is rejected and nothing changes; a valid one adds cam3 by diff.
            good_text = config_path.read_text()
            config_path.write_text(good_text.replace("suspicious = 0.01", "suspicious = 9"))
            daemon.process.send_signal(signal.SIGHUP)
            await asyncio.sleep(1.5)
            status, body = await http("GET", base + "/streams", SECRETS["api"])
            assert {s["id"] for s in json.loads(body)["streams"]} == {"cam1", "call"}
            config_path.write_text(good_text + rtsp_stream("cam3", rtsp.port))
            daemon.process.send_signal(signal.SIGHUP)
            assert await wait_until(lambda: _async(client.hget("deepfake:stream:cam3", "frames_in") not in (None, "0")), 30)

            # Metrics parse with prometheus-client's own parser.
            status, text = await http("GET", base + "/metrics")
            names = {f.name for f in text_string_to_metric_families(text)}
            assert {"deepfake_stream_fps_in", "deepfake_worker_batch_size", "deepfake_frame_to_alert_seconds",
                    "deepfake_alert_spool_events", "deepfake_stream_frames_dropped"} <= names
            metrics_text = text
            streams_text = (await http("GET", base + "/streams", SECRETS["api"]))[1]
        finally:
            await publisher.close()
            stop_started = time.monotonic()
            code = daemon.stop()
            stop_s = time.monotonic() - stop_started
        assert code == 0, _tail(tmp_path)
        print(f"SIGTERM to exit: {stop_s:.1f} s")
        assert stop_s < 25
        closed = [e for e in events(client) if e["type"] == "closed"]
        still_open = {e["alert_id"] for e in events(client) if e["type"] == "opened"} - {e["alert_id"] for e in closed}
        assert not still_open  # every alert closed: recovered, stream_ended or shutdown
        assert any(e["close_reason"] == "shutdown" for e in closed)
        alerts_text = json.dumps(events(client))
    asyncio.get_running_loop().remove_reader(notify.fileno())
    read_notifications()
    notify.close()
    assert messages and messages[0].startswith("READY=1")
    assert sum("WATCHDOG=1" in m for m in messages) >= 3
    log_text = (tmp_path / "daemon.log").read_text()
    for secret in SECRETS.values():
        for where, text in (("log", log_text), ("metrics", metrics_text), ("streams", streams_text),
                            ("alerts", alerts_text)):
            assert secret not in text, f"{secret} leaked into {where}"


async def _ok(coroutine):
    status, _ = await coroutine
    return status == 200


async def _async(value):
    return value


def _tail(tmp_path):
    path = tmp_path / "daemon.log"
    return path.read_text()[-3000:] if path.exists() else ""


def children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_ctrl_c_with_a_local_redis_delivers_closed_events_and_a_killed_daemon_leaves_no_server(assets, tmp_path):
    folder, clip = assets
    http_port, redis_port = free_port(), free_port()
    config = tmp_path / "monitor.toml"
    config.write_text(f"""
[model]
path = "{folder / 'model.ckpt'}"
devices = ["cpu"]
[sampling]
sample_fps = 4
[window]
min_crops = 2
[verdict]
suspicious = 0.01
manipulated = 0.99
enter_crops = 2
enter_seconds = 0
[alerts]
spool_dir = "{tmp_path / 'spool'}"
update_interval_s = 0
[redis]
start_local = true
url = "redis://127.0.0.1:{redis_port}/0"
[http]
port = {http_port}
[logging]
format = "json"
""")

    def start(log_path):
        log = open(log_path, "w")
        # Its own session, as a shell gives a foreground job: the signals below go to its whole group.
        return log, subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    with RtspServer(file=str(clip), size="480x360") as rtsp:
        with open(config, "a") as f:
            f.write(f'[[streams]]\nid = "cam"\nurl = "{rtsp.url("file")}"\n')
        log, daemon = start(tmp_path / "first.log")
        received = []

        def read_events():  # until the server goes away
            client = redis.Redis(port=redis_port, decode_responses=True)
            last = "0"
            try:
                while True:
                    for _, entries in client.xread({"deepfake:events": last}, block=500) or []:
                        for last, fields in entries:
                            received.append(json.loads(fields["event"]))
            except redis.ConnectionError:
                return

        try:
            deadline = time.monotonic() + 120
            while not port_open(redis_port) and time.monotonic() < deadline:
                time.sleep(0.2)
            reader = threading.Thread(target=read_events, daemon=True)
            reader.start()
            while not any(e["type"] == "opened" for e in received) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert any(e["type"] == "opened" for e in received), (tmp_path / "first.log").read_text()[-3000:]
            servers = [pid for pid in children(daemon.pid)
                       if b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            assert len(servers) == 1 and os.getpgid(servers[0]) != os.getpgid(daemon.pid)  # Ctrl-C spares it
            os.killpg(daemon.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
            assert daemon.wait(timeout=60) == 0
        finally:
            if daemon.poll() is None:
                os.killpg(daemon.pid, signal.SIGKILL)
            log.close()
        reader.join(timeout=10)
        text = (tmp_path / "first.log").read_text()
        opened = {e["alert_id"] for e in received if e["type"] == "opened"}
        closed = {e["alert_id"] for e in received if e["type"] == "closed"}
        assert opened and opened <= closed, f"opened {opened}, closed {closed}"
        assert "Redis unreachable at shutdown" not in text
        assert not port_open(redis_port)  # and it stopped the server it started

        # Killed outright, the daemon cannot stop its server: the parent-death signal does.
        log, daemon = start(tmp_path / "second.log")
        try:
            deadline = time.monotonic() + 120
            while not port_open(redis_port) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert port_open(redis_port)
            daemon.kill()
            daemon.wait(timeout=10)
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while port_open(redis_port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not port_open(redis_port), "the local redis-server outlived a killed daemon"
