"""The daemon end to end, as a real subprocess: RTSP (GStreamer) and WHIP (aiortc) in, Redis out."""

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import redis
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from monitor.sources.webrtc import restrict_host_addresses
from tests.support.daemon import DaemonProcess, events, http, value, wait_until
from tests.support.media import face_frames, write_mp4
from tests.support.reference_models import make_lightning
from tests.support.servers import RedisServer, RtspServer, free_port
from tests.support.whip_client import WhipPublisher

# Hostile secrets: `@ / : % # ?` inside them. In URLs they are percent-encoded, as they must be.
SECRETS = {"rtsp": "Rt5pSecr3t@Hostile1/Pa:55%Rt#?Tail", "redis": "Red1sSecr3t@Hostile2/x:y%Rd#?Tail",
           "api": "Ap1T0ken@Hostile3/x:y%Ap#?", "whip": "Wh1pT0ken@Hostile4:x%Wp"}


def leaked(text: str) -> list[str]:
    """Every secret, in raw and percent-encoded form and in pieces split at its special characters."""
    forms = set()
    for secret in SECRETS.values():
        forms |= {secret, quote(secret, safe="")} | {p for p in re.split(r"[@/:%#?]", secret) if len(p) >= 5}
    return sorted(form for form in forms if form in text)


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


def secret_env() -> dict:
    """What the config's ${...} references resolve to (URL passwords percent-encoded, as a user must)."""
    return {"REDIS_PASSWORD": quote(SECRETS["redis"], safe=""), "API_TOKEN": SECRETS["api"],
            "WHIP_TOKEN": SECRETS["whip"], "RTSP_PASSWORD": quote(SECRETS["rtsp"], safe="")}


def Daemon(config_path: Path, log_path: Path, notify_socket: str | None = None) -> DaemonProcess:
    return DaemonProcess(config_path, log_path, secret_env(), notify_socket)



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
            assert await wait_until(lambda: value({e["stream_id"] for e in events(client) if e["type"] == "opened"}
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
            added = {"id": "cam2", "url": rtsp.url("file", f"viewer:{quote(SECRETS['rtsp'], safe='')}")}
            assert (await http("POST", base + "/streams", SECRETS["api"], json=added))[0] == 201
            assert (await http("POST", base + "/streams", SECRETS["api"], json=added))[0] == 409
            bad = await http("POST", base + "/streams", SECRETS["api"], json={"id": "x", "url": "ftp://nope"})
            assert bad[0] == 400 and "url" in bad[1]
            assert await wait_until(lambda: value(any(e["stream_id"] == "cam2" and e["type"] == "opened"
                                                       for e in events(client))), 60)
            cam1_before = int(client.hget("deepfake:stream:cam1", "frames_in"))
            assert (await http("DELETE", base + "/streams/cam2", SECRETS["api"]))[0] == 204

            def cam2_all_closed():
                cam2 = [e for e in events(client) if e["stream_id"] == "cam2"]
                opened = {e["alert_id"] for e in cam2 if e["type"] == "opened"}
                return opened and opened <= {e["alert_id"] for e in cam2 if e["type"] == "closed"}

            assert await wait_until(lambda: value(cam2_all_closed()), 10)
            assert (await http("GET", base + "/streams/cam2", SECRETS["api"]))[0] == 404
            await asyncio.sleep(2)
            assert int(client.hget("deepfake:stream:cam1", "frames_in")) > cam1_before

            # A wrong (hostile) password: the stream shows error/auth, and the password shows nowhere.
            wrong = {"id": "cam-wrong", "url": rtsp.url("file", f"viewer:{quote(SECRETS['redis'], safe='')}")}
            assert (await http("POST", base + "/streams", SECRETS["api"], json=wrong))[0] == 201
            assert await wait_until(lambda: value(_reason(client, "cam-wrong") == "auth"), 30), _tail(tmp_path)
            status, wrong_text = await http("GET", base + "/streams/cam-wrong", SECRETS["api"])
            assert json.loads(wrong_text)["state"] == "error" and json.loads(wrong_text)["origin"] == "api"
            status, config_text_shown = await http("GET", base + "/config", SECRETS["api"])
            assert status == 200 and json.loads(config_text_shown)["config"]["http"]["token"] == "***"
            assert (await http("GET", base + "/config"))[0] == 401

            # Metrics parse with prometheus-client's own parser.
            status, text = await http("GET", base + "/metrics")
            names = {f.name for f in text_string_to_metric_families(text)}
            assert {"deepfake_stream_fps_in", "deepfake_worker_batch_size", "deepfake_frame_to_alert_seconds",
                    "deepfake_alert_spool_events", "deepfake_stream_frames_dropped"} <= names
            metrics_text = text
            streams_text = (await http("GET", base + "/streams", SECRETS["api"]))[1]

            # kill -USR1: every thread's stack as one log event (not raw text on stderr).
            daemon.process.send_signal(signal.SIGUSR1)
            assert await wait_until(lambda: value("thread stacks" in (tmp_path / "daemon.log").read_text()), 10)
            raw = redis.Redis.from_url(redis_server.url)  # evidence hashes hold JPEG bytes: read raw, show as text
            redis_text = repr({key: raw.hgetall(key) if raw.type(key) == b"hash" else raw.get(key)
                               for key in raw.scan_iter("deepfake:*") if raw.type(key) in (b"hash", b"string")})
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
    dump = next(json.loads(line) for line in log_text.splitlines() if "thread stacks" in line)
    assert any(name.startswith("MainThread") for name in dump["threads"]) and len(dump["threads"]) >= 3
    assert "Current thread 0x" not in log_text and "Thread 0x" not in log_text  # faulthandler's raw format
    check = subprocess.run([sys.executable, "-m", "monitor.cli", "check-config", str(config_path)], text=True,
                           capture_output=True, env={**os.environ, **secret_env()}, timeout=60)
    assert check.returncode == 0, check.stderr
    for where, text in (("log", log_text), ("metrics", metrics_text), ("streams", streams_text + wrong_text),
                        ("alerts", alerts_text), ("redis state", redis_text), ("/config", config_text_shown),
                        ("check-config", check.stdout + check.stderr)):
        assert not leaked(text), f"{leaked(text)} leaked into {where}"
    assert "viewer:***@127.0.0.1" in streams_text and "redis://:***@127.0.0.1" in config_text_shown


def _reason(client, stream_id):
    return client.hget(f"deepfake:stream:{stream_id}", "reason")


async def _ok(coroutine):
    status, _ = await coroutine
    return status == 200


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
        assert "undelivered alert events stay in the spool" not in text
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


def bad_start_config(tmp_path: Path, case: str, folder: Path, busy_port: int) -> str:
    model = f'path = "{folder / "model.ckpt"}"'
    devices, port, spool = '["cpu"]', free_port(), tmp_path / "spool"
    redis = f'url = "redis://127.0.0.1:{free_port()}/0"'
    if case == "device":
        devices = '["cuda:3"]'
    elif case == "port":
        port = busy_port
    elif case == "model":
        model = f'path = "{tmp_path / "no-such-model.ckpt"}"'
    elif case == "spool":
        (tmp_path / "a-file").write_text("not a folder")
        spool = tmp_path / "a-file" / "spool"
    elif case == "local_redis":
        redis = f'url = "redis://127.0.0.1:{busy_port}/0"\nstart_local = true'
    return (f'[model]\n{model}\ndevices = {devices}\n[alerts]\nspool_dir = "{spool}"\n[http]\nport = {port}\n'
            f'[redis]\n{redis}\n[logging]\nformat = "json"\n')


START_FAILURES = [("device", "model.devices"), ("port", "http.port"), ("model", "model.path"),
                  ("spool", "alerts.spool_dir"), ("spool_in_use", "alerts.spool_dir"),
                  ("local_redis", "redis.start_local")]


@contextmanager
def another_monitor_on(spool: Path):
    """A second process holding the spool, as a running daemon does (its Spool open)."""
    holder = subprocess.Popen([sys.executable, "-c", f"import time; from monitor.alerts.spool import Spool; "
                               f"s = Spool({str(spool)!r}); print('held', flush=True); time.sleep(300)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("command", ["run", "check-config"])
@pytest.mark.parametrize("case,key", START_FAILURES)
def test_start_failures_exit_2_with_one_line_naming_the_key(assets, tmp_path, case, key, command):
    """`monitor run` refuses before it loads a model, and `monitor check-config` finds the same: one line naming
    the key, exit 2."""
    folder, _ = assets
    with socket.socket() as busy, contextlib.ExitStack() as stack:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = tmp_path / "monitor.toml"
        config.write_text(bad_start_config(tmp_path, case, folder, busy.getsockname()[1]))
        holder = stack.enter_context(another_monitor_on(tmp_path / "spool")) if case == "spool_in_use" else None
        args = ["run", "--config", str(config)] if command == "run" else ["check-config", str(config)]
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "monitor.cli", *args], capture_output=True, text=True,
                                timeout=120)
        took = time.monotonic() - started
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    print(f"{command} {case}: exit {result.returncode} in {took:.1f} s: {lines}")
    assert result.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("monitor: error: ") and key in lines[0]
    assert "Traceback" not in result.stderr
    if command == "run":
        assert not result.stdout
    if holder is not None:
        assert f"pid {holder}" in lines[0]


def test_check_config_reports_the_host_checks_it_passed(assets, tmp_path):
    folder, _ = assets
    config = tmp_path / "monitor.toml"
    config.write_text(bad_start_config(tmp_path, "none", folder, free_port()))
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "check-config", str(config)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)
    for key in ("alerts.spool_dir", "http.port", "model: devices cpu"):
        assert f"monitor: ok: {key}" in result.stderr
    assert "this host is ready for it" in result.stderr


async def test_reload_applies_thresholds_to_open_alerts_rejects_bad_files_and_keeps_api_streams(assets, tmp_path,
                                                                                           face_paths):
    """SIGHUP: new [verdict] thresholds decide the next evaluations of running tracks (an open alert recovers
    under a stricter bar); what needs a restart is named; an invalid file changes nothing; API streams stay."""
    from tests.support.runtime import tiny_checkpoint

    folder, _ = assets
    model = tiny_checkpoint(tmp_path)  # scores these faces around 0.6: a bar of 0.97 is far above the track
    face = np.asarray(Image.open(face_paths[0]).convert("RGB").resize((170, 170)))

    def still_face(n):  # one face that stays put: one track for the whole test
        for i in range(n):
            frame = np.full((360, 480, 3), 60, np.uint8)
            frame[95 + i % 3:265 + i % 3, 150:320] = face
            yield frame

    clip = write_mp4(tmp_path / "still.mp4", still_face(25 * 40))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    with RedisServer() as redis_server, RtspServer(file=str(clip), size="480x360") as rtsp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"

        def config(suspicious: float, manipulated: float, model_path: Path = model) -> str:
            return f"""
[model]
path = "{model_path}"
devices = ["cpu"]
[sampling]
sample_fps = 4
[window]
min_crops = 2
[verdict]
suspicious = {suspicious}
manipulated = {manipulated}
hysteresis = 0.02
enter_crops = 2
enter_seconds = 0
exit_seconds = 1
[alerts]
spool_dir = "{tmp_path / 'spool'}"
update_interval_s = 0
[redis]
url = "{redis_server.url}"
[http]
port = {port}
token = "t"
[logging]
format = "json"
[[streams]]
id = "cam1"
url = "{rtsp.url('file')}"
"""

        path = tmp_path / "monitor.toml"
        path.write_text(config(0.01, 0.99))
        daemon = Daemon(path, tmp_path / "daemon.log", str(tmp_path / "notify.sock"))
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            assert await wait_until(lambda: _ok(http("GET", base + "/readyz")), 90), _tail(tmp_path)
            assert await wait_until(lambda: value(any(e["type"] == "opened" for e in events(client))), 60), \
                _tail(tmp_path)
            api_stream = {"id": "from-api", "url": rtsp.url("file")}
            assert (await http("POST", base + "/streams", "t", json=api_stream))[0] == 201

            path.write_text(config(9, 0.99))  # invalid: rejected, nothing changes
            daemon.process.send_signal(signal.SIGHUP)
            assert await wait_until(lambda: value("config reload rejected" in _tail(tmp_path)), 10)
            shown = json.loads((await http("GET", base + "/config", "t"))[1])
            assert shown["config"]["verdict"]["suspicious"] == 0.01 and shown["restart_needed"] == []

            path.write_text(config(0.97, 0.98, model_path=folder / "model.ckpt"))  # stricter; another model
            alerts = events(client)
            still_open = {e["alert_id"] for e in alerts if e["type"] == "opened"} - {
                e["alert_id"] for e in alerts if e["type"] == "closed"}
            opened = next(e for e in alerts if e["alert_id"] in still_open and e["stream_id"] == "cam1")
            reloaded = time.time()
            daemon.process.send_signal(signal.SIGHUP)
            assert await wait_until(lambda: value(any(e["type"] == "closed" and e["alert_id"] == opened["alert_id"]
                                                       for e in events(client))), 15), _tail(tmp_path)
            closed = next(e for e in events(client) if e["type"] == "closed" and e["alert_id"] == opened["alert_id"])
            shown = json.loads((await http("GET", base + "/config", "t"))[1])
            streams = json.loads((await http("GET", base + "/streams", "t"))[1])["streams"]
        finally:
            code = daemon.stop()
        messages = []
        while True:
            try:
                messages.append(notify.recv(4096).decode())
            except BlockingIOError:
                break
        notify.close()
    assert code == 0, _tail(tmp_path)
    print(f"closed {closed['times']['scored_at'] - reloaded:.1f} s after the reload, reason {closed['close_reason']}")
    assert closed["close_reason"] == "recovered" and closed["thresholds"]["suspicious"] == 0.97
    assert closed["times"]["scored_at"] - reloaded >= 1.0  # exit_seconds below the new bar, not at once
    assert shown["config"]["verdict"]["suspicious"] == 0.97
    assert shown["restart_needed"] == ["model.path"] and shown["config"]["model"]["path"] == str(model)
    assert {s["id"]: s["origin"] for s in streams} == {"cam1": "file", "from-api": "api"}
    log = [json.loads(line) for line in (tmp_path / "daemon.log").read_text().splitlines() if line.startswith("{")]
    changed = {e["key"]: e for e in log if e["event"].startswith("config changed")}
    assert changed["verdict.suspicious"]["old"] == 0.01 and changed["verdict.suspicious"]["new"] == 0.97
    assert "restart" in changed["model.path"]["event"]
    assert any("restart needed for model.path" in m for m in messages)
