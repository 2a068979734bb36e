"""Webhooks from a real daemon (RTSP in, a tiny checkpoint, Redis and aiohttp receivers out)."""

import asyncio
import json
import os
import sys
import time
from collections import Counter

import pytest
import redis

from tests.support.daemon import DaemonProcess, events, ready, value, wait_until
from tests.support.faces import load_crops
from tests.support.media import face_frames, write_mp4
from tests.support.runtime import tiny_checkpoint
from tests.support.servers import RedisServer, RtspServer, free_port
from tests.support.webhook_receiver import WebhookReceiver

SECRET = "Hook-S3cret@a/b:c%d"


@pytest.fixture(scope="module")
def assets(tmp_path_factory, face_paths):
    folder = tmp_path_factory.mktemp("webhooks")
    clip = write_mp4(folder / "faces.mp4", face_frames(load_crops(face_paths[::4]), 25 * 30, size=(480, 360),
                                                      face_px=170))
    return folder, clip, tiny_checkpoint(folder)


def config(folder, model, redis_url, http_port, webhook_url, rtsp_url, spool) -> str:
    # manipulated sits inside the range this model scores faces (0.55-0.93), and the 1 s window is shorter than
    # the clip's runs of high-scoring (~1 s) and low-scoring (~1.6 s) faces: every cycle the verdict goes up to
    # manipulated and back, whatever frame a session starts at. Alerts open, update, close.
    return f"""
instance = "hooks"
[model]
path = "{model}"
devices = ["cpu"]
[sampling]
sample_fps = 4
[window]
seconds = 1
min_crops = 2
[verdict]
suspicious = 0.01
manipulated = 0.70
hysteresis = 0.01
enter_crops = 2
enter_seconds = 0
exit_seconds = 0.5
[alerts]
spool_dir = "{spool}"
update_interval_s = 0
[redis]
url = "{redis_url}"
[http]
port = {http_port}
[logging]
format = "json"
[[sinks]]
type = "webhook"
name = "soc"
url = "{webhook_url}"
secret = "${{WEBHOOK_SECRET}}"
timeout_s = 2
[[streams]]
id = "cam1"
url = "{rtsp_url}"
"""


def daemon(folder, tmp_path, name, text):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return DaemonProcess(path, tmp_path / f"{name}.log", {"WEBHOOK_SECRET": SECRET})


async def test_a_receiver_down_for_10_s_gets_every_event_once_in_order_and_redis_is_not_delayed(assets, tmp_path):
    folder, clip, model = assets
    receiver = await WebhookReceiver(SECRET).start()
    with RedisServer() as redis_server, RtspServer(file=str(clip), size="480x360") as rtsp:
        port = free_port()
        run = daemon(folder, tmp_path, "run", config(folder, model, redis_server.url, port, receiver.url,
                                                     rtsp.url("file"), tmp_path / "spool"))
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            assert await wait_until(lambda: ready(f"http://127.0.0.1:{port}"), 90), run.tail()
            down_until = time.time() + 10
            receiver.answer = lambda event: 503 if time.time() < down_until else 200
            await asyncio.sleep(16)
        finally:
            code = await asyncio.to_thread(run.stop)  # the receiver runs on this loop: keep it turning
        logged = events(client)
    await receiver.stop()
    assert code == 0, run.tail()
    accepted = receiver.ids()
    duplicates = sum(n - 1 for n in Counter(accepted).values())
    during = [e for e in logged if e["times"]["published_at"] < down_until]
    redis_delays = [int(e["log_id"].split("-")[0]) / 1000 - e["times"]["published_at"] for e in during]
    kinds = Counter(e["type"] for e in logged)
    print(f"{len(logged)} events {dict(kinds)}; the receiver refused {receiver.requests - len(accepted)} requests, "
          f"then took {len(accepted)} ({duplicates} duplicates); Redis took the {len(during)} events of the outage "
          f"within {max(redis_delays):.3f} s of publication")
    assert kinds["opened"] and kinds["updated"] and kinds["closed"] and during
    assert set(accepted) == {e["event_id"] for e in logged} and duplicates == 0  # every event, exactly once
    for alert in {e["alert_id"] for e in receiver.accepted}:  # in order per alert
        seqs = [e["seq"] for e in receiver.accepted if e["alert_id"] == alert]
        assert seqs == sorted(seqs) == list(range(len(seqs)))
    assert receiver.bad_signatures == 0 and max(redis_delays) < 1.0


async def test_events_spooled_while_the_receiver_was_down_arrive_after_a_restart(assets, tmp_path):
    folder, clip, model = assets
    hook_port = free_port()
    receiver = WebhookReceiver(SECRET, port=hook_port)  # not started: down during the first run
    with RedisServer() as redis_server, RtspServer(file=str(clip), size="480x360") as rtsp:
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        text = config(folder, model, redis_server.url, free_port(), receiver.url, rtsp.url("file"), tmp_path / "spool")
        first = daemon(folder, tmp_path, "first", text)
        try:
            assert await wait_until(lambda: value(len(events(client)) >= 4), 90), first.tail()
        finally:
            assert await asyncio.to_thread(first.stop) == 0, first.tail()
        missed = [e["event_id"] for e in events(client)]
        spooled = [json.loads(line)["event"] for line in (tmp_path / "spool" / "events.jsonl").read_text().splitlines()]
        pending = [e["event_id"] for e in spooled if e.get("kind") != "evidence"]  # evidence goes to Redis only
        assert set(missed) <= set(pending)  # kept on disk for the webhook
        await receiver.start()
        second = daemon(folder, tmp_path, "second", text)
        try:
            assert await wait_until(lambda: value(set(missed) <= set(receiver.ids())), 90), second.tail()
        finally:
            assert await asyncio.to_thread(second.stop) == 0
    await receiver.stop()
    print(f"{len(missed)} events of the first run reached the receiver after the restart")
    assert receiver.bad_signatures == 0 and Counter(receiver.ids()).most_common(1)[0][1] == 1


async def test_sinks_test_reports_each_sink_and_fails_when_one_does(tmp_path, redis_server):
    good, failing = await WebhookReceiver(SECRET).start(), await WebhookReceiver().start()
    failing.answer = lambda event: 503
    path = tmp_path / "monitor.toml"
    base = f'[redis]\nurl = "{redis_server.url}"\n'
    hook = '[[sinks]]\ntype = "webhook"\nname = "{}"\nurl = "{}"\nsecret = "${{WEBHOOK_SECRET}}"\n'

    async def run():
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor.cli", "sinks", "test", "--config", str(path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "WEBHOOK_SECRET": SECRET})
        out, err = await process.communicate()
        return process.returncode, out.decode(), err.decode()

    path.write_text(base + hook.format("good", good.url))
    code, out, _ = await run()
    assert code == 0 and out.splitlines()[0].startswith("redis: ok: PING ok")
    assert out.splitlines()[1].startswith("good: ok: HTTP 200") and good.accepted[0]["type"] == "test"
    path.write_text(base + hook.format("good", good.url) + hook.format("down", failing.url))
    code, out, err = await run()
    print(out)
    assert code == 1 and "down: FAILED: " in out and "HTTP 503" in out and SECRET not in out + err
    assert good.bad_signatures == 0 and len(good.accepted) == 2
    await good.stop()
    await failing.stop()
