"""The HTTP API of a daemon running in this process (real Redis, a tiny checkpoint, file streams)."""

import asyncio
import sys
import time

import aiohttp
import pytest

from monitor.config import parse
from monitor.daemon import Daemon
from tests.support.faces import load_crops
from tests.support.media import face_frames, write_mp4
from tests.support.reference_models import make_lightning

TOKEN = "api-token-for-tests"


@pytest.fixture(scope="module")
def media(tmp_path_factory, face_paths):
    folder = tmp_path_factory.mktemp("api")
    clip = write_mp4(folder / "faces.mp4", face_frames(load_crops(face_paths[::8]), 50, size=(320, 240), face_px=120))
    make_lightning(folder / "model.ckpt", width=64, layers=1)
    return folder, clip


@pytest.fixture
async def daemon(media, redis_server, tmp_path):
    folder, clip = media
    streams = [{"id": f"flat{i}", "url": str(clip), "sampling": {"realtime": False, "loop": True, "sample_fps": 8}}
               for i in range(2)]
    config = parse({"model": {"path": str(folder / "model.ckpt"), "devices": ["cpu"]},
                    "worker": {"max_batch": 4, "buckets": [1, 4]},
                    "alerts": {"spool_dir": str(tmp_path / "spool")}, "redis": {"url": redis_server.url},
                    "http": {"port": 0, "token": TOKEN}, "whip": {"token": "whip-token-for-tests"},
                    "streams": streams})
    daemon = Daemon(config)
    await daemon.start()
    yield daemon, f"http://127.0.0.1:{daemon.http_port}"
    await daemon.stop()


async def get(session, url, token=TOKEN):
    async with session.get(url, headers={"Authorization": f"Bearer {token}"} if token else {}) as response:
        return response.status, await response.text()


async def test_metrics_streams_and_watchdog_stay_correct_while_streams_decode_flat_out(daemon):
    """Reader threads decode as fast as they can while the loop serves /metrics and /streams and the watchdog
    reads the same counters; with thread switches every microsecond a shared structure iterated on the loop
    while a reader changes it fails within a second."""
    daemon, base = daemon
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    answers, summaries = [], 0
    try:
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            while time.monotonic() - started < 4.0:
                answers += await asyncio.gather(get(session, base + "/metrics"), get(session, base + "/streams"))
                daemon.health.summary()  # what the watchdog sends as STATUS=
                daemon.health.healthy()
                summaries += 1
    finally:
        sys.setswitchinterval(before)
    decoded = sum(s["frames_decoded"] for s in daemon.supervisor.statuses())
    print(f"{len(answers)} answers and {summaries} watchdog summaries while {decoded} frames were decoded")
    assert decoded > 500 and len(answers) > 50
    assert all(status == 200 for status, _ in answers), [text[:200] for status, text in answers if status != 200][:2]


async def test_routes_with_a_token_refuse_without_it_and_show_the_running_config_masked(daemon):
    daemon, base = daemon
    async with aiohttp.ClientSession() as session:
        for route in ("/streams", "/streams/flat0", "/config"):
            assert (await get(session, base + route, token=None))[0] == 401
            assert (await get(session, base + route, token="wrong"))[0] == 401
        for route in ("/healthz", "/readyz", "/metrics"):
            assert (await get(session, base + route, token=None))[0] == 200
        status, text = await get(session, base + "/config")
        assert status == 200 and TOKEN not in text
        shown = __import__("json").loads(text)
        assert shown["config"]["http"]["token"] == "***" and shown["restart_needed"] == []
        assert [s["id"] for s in shown["config"]["streams"]] == ["flat0", "flat1"]


@pytest.mark.parametrize("body,status,needle", [
    ("not json", 400, "JSON object"), ("[1, 2]", 400, "JSON object"), ('{"id": "x"}', 400, "url"),
    ('{"id": "bad id!", "url": "x.mp4"}', 400, "id"), ('{"id": "y", "url": "ftp://h/x"}', 400, "url"),
    ('{"id": "z", "url": "x.mp4", "verdict": {"suspicious": 3}}', 400, "verdict.suspicious"),
    ('{"id": "flat0", "url": "x.mp4"}', 409, "already exists"),
    ('{"id": "m", "url": "/no/such/clip.mp4"}', 400, "url: /no/such/clip.mp4: no such file")])
async def test_malformed_stream_definitions_are_refused_naming_the_key(daemon, body, status, needle):
    daemon, base = daemon
    async with aiohttp.ClientSession() as session:
        async with session.post(base + "/streams", data=body, headers={"Authorization": f"Bearer {TOKEN}",
                                                                         "Content-Type": "application/json"}) as r:
            assert r.status == status
            assert needle in (await r.json())["error"]
    assert sorted(daemon.supervisor.ids()) == ["flat0", "flat1"]  # nothing was added or disturbed


# Routes served without the API token, and why: probes and scrapers; the pages' shells (their data needs the
# token or a login session); the publisher page (it asks for the WHIP token); WHIP's PATCH (a fixed 405: trickle
# ICE is not supported). The other WHIP routes take the WHIP token instead of the API token: checked the same way.
OPEN_ROUTES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/"), ("GET", "/login"),
               ("POST", "/login"), ("POST", "/logout"), ("GET", "/publish/{id}"),
               ("PATCH", "/whip/{stream_id}/{session_id}")}


async def test_every_route_checks_the_token_first(daemon):
    """Walks the router of the running server, so that a route added later without a guard fails here."""
    daemon, base = daemon
    fill = {"{id}": "flat0", "{n}": "0", "{stream_id}": "flat0", "{session_id}": "x"}
    checked = []
    async with aiohttp.ClientSession() as session:
        for route in daemon.http_runner.app.router.routes():
            method, path = route.method, route.resource.canonical
            if method in ("HEAD", "OPTIONS") or (method, path) in OPEN_ROUTES or path.startswith("/static"):
                continue
            url = path
            for placeholder, value in fill.items():
                url = url.replace(placeholder, value)
            assert "{" not in url, f"no test value for {path}"
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                async with session.request(method, base + url, headers=headers, data=b"{}") as response:
                    assert response.status == 401, f"{method} {path} answered {response.status} without the token"
            checked.append(f"{method} {path}")
    assert {"GET /cluster", "POST /streams", "DELETE /streams/{id}", "GET /alerts/{id}/report.html",
            "GET /live", "POST /whip/{stream_id}"} <= set(checked), checked


async def test_a_stream_that_is_no_video_is_in_error_saying_so_after_it_was_added(daemon, tmp_path, caplog):
    """A junk file: `error` with reason `not_video` and the file named (not FFmpeg's errno); the log says the
    stream was added before it says it failed."""
    import logging

    caplog.set_level(logging.INFO)
    daemon, base = daemon
    junk = tmp_path / "notes.mp4"
    junk.write_text("these are meeting notes, not a video\n" * 20)
    async with aiohttp.ClientSession() as session:
        async with session.post(base + "/streams", json={"id": "junk", "url": str(junk)},
                                headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 201
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = daemon.supervisor.status("junk")
            if status["state"] == "error":
                break
            await asyncio.sleep(0.1)
    assert status["state"] == "error" and status["reason"] == "not_video", status
    assert f"{junk} is not a video" in status["detail"] and "1094995529" not in status["detail"]
    messages = [r.getMessage() for r in caplog.records if "junk" in r.getMessage()]
    added = next(i for i, m in enumerate(messages) if "stream added" in m)
    failed = next(i for i, m in enumerate(messages) if "stream failed" in m)
    assert added < failed, messages
    assert sorted(daemon.supervisor.ids()) == ["flat0", "flat1", "junk"]


async def test_a_live_feed_client_that_hangs_up_at_once_is_no_error(daemon, caplog):
    """`printf 'GET /live ...' | nc -q0`: the client is gone before the first write. Five tries, no error logged
    (each used to log an error with a traceback)."""
    import logging
    import socket

    caplog.set_level(logging.INFO)
    daemon, base = daemon
    port = int(base.rsplit(":", 1)[1])
    request = f"GET /live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(request)
        await asyncio.sleep(0.3)
    await asyncio.sleep(1.0)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[:2]
    async with aiohttp.ClientSession() as session:  # the feed still serves a client that stays
        async with session.get(base + "/live", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200 and (await r.content.readuntil(b"\n\n")).startswith(b"event: snapshot")
