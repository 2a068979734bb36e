"""Evidence behind alerts: crops, frame and timeline in Redis, the HTTP routes, the report; an outage delays it."""

import asyncio
import io
import json
import re

import aiohttp
import numpy as np
import pytest
import redis
from PIL import Image

from monitor.config import parse
from monitor.daemon import Daemon
from monitor.model import Detector
from tests.support.aio import wait_for
from tests.support.media import write_mp4
from tests.support.runtime import MODERATE_SEED, tiny_checkpoint
from tests.support.servers import RedisServer, RtspServer

TOKEN = "api-T0ken@evidence"
JPEG_TOLERANCE = 0.01  # measured: |Δp_fake| ≤ 0.0042 on the 32 fixture crops (JPEG q95 4:4:4, tiny model)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, face_paths):
    folder = tmp_path_factory.mktemp("evidence")
    face = np.asarray(Image.open(face_paths[0]).convert("RGB").resize((170, 170)))

    def still_face(n):  # one face that stays put: one track, one alert
        for i in range(n):
            frame = np.full((360, 480, 3), 60, np.uint8)
            frame[95 + i % 3:265 + i % 3, 150:320] = face
            yield frame

    return write_mp4(folder / "still.mp4", still_face(25 * 40))


def config(tmp_path, redis_url, rtsp_url, evidence=None):
    return parse({"model": {"path": str(tiny_checkpoint(tmp_path, MODERATE_SEED)), "devices": ["cpu"]},
                  "worker": {"max_batch": 4, "buckets": [1, 4]}, "sampling": {"sample_fps": 4},
                  "window": {"min_crops": 2}, "verdict": {"suspicious": 0.01, "manipulated": 0.99, "enter_crops": 2,
                                                          "enter_seconds": 0},
                  "alerts": {"spool_dir": str(tmp_path / "spool"), "update_interval_s": 0},
                  "evidence": evidence or {}, "redis": {"url": redis_url},
                  "http": {"port": 0, "token": TOKEN}, "streams": [{"id": "cam", "url": rtsp_url}]})


async def get(base, path, token=TOKEN, cookie=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(cookies=cookie) as http:
        async with http.get(base + path, headers=headers) as response:
            return response.status, await response.read(), response.headers


async def test_an_alerts_evidence_rescores_to_its_recorded_scores_and_makes_a_self_contained_report(tmp_path, clip):
    with RedisServer() as redis_server, RtspServer(file=str(clip), size="480x360") as rtsp:
        daemon = Daemon(config(tmp_path, redis_server.url, rtsp.url("file")))
        await daemon.start()
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        base = f"http://127.0.0.1:{daemon.http_port}"
        try:
            assert await wait_for(lambda: client.xlen("deepfake:events") > 0, 60)
            opened = json.loads(client.xrange("deepfake:events")[0][1]["event"])
            await asyncio.sleep(4)  # the window fills: more crops than K
            alerts = json.loads((await get(base, "/alerts?stream=cam"))[1])["alerts"]
            assert alerts and alerts[0]["alert_id"] == opened["alert_id"] and alerts[0]["status"] == "open"
        finally:
            await daemon.stop()  # closes the alert: the last evidence goes with the closed event
        alert_id = opened["alert_id"]
        raw = redis.Redis.from_url(redis_server.url).hgetall(f"deepfake:evidence:{alert_id}")
        meta = json.loads(raw[b"meta"])
        ttl = client.ttl(f"deepfake:evidence:{alert_id}")
        events = [json.loads(v) for v in client.hgetall(f"deepfake:alert:{alert_id}").values()]
    closed = next(e for e in events if e["type"] == "closed")
    assert opened["evidence"]["key"] == f"deepfake:evidence:{alert_id}" and opened["evidence"]["crops"]
    assert [c["index"] for c in closed["evidence"]["crops"]] == list(range(6))  # K = 6 by default
    assert 6 * 86400 < ttl <= 7 * 86400
    crops = [Image.open(io.BytesIO(raw[f"crop-{c['index']}.jpg".encode()])) for c in meta["crops"]]
    assert all(c.size == (256, 256) and c.mode == "RGB" for c in crops)
    assert len(meta["crops"]) == 6 and meta["crops"] == sorted(meta["crops"], key=lambda c: -c["p_fake"])
    frame = Image.open(io.BytesIO(raw[b"frame.jpg"]))
    assert frame.size == (480, 360)
    rescored = Detector.load(tiny_checkpoint(tmp_path, MODERATE_SEED), device="cpu").score_images(crops)
    recorded = np.array([c["p_fake"] for c in meta["crops"]])
    print(f"re-scored from the stored JPEGs: max |Δp_fake| {np.abs(rescored - recorded).max():.5f}; evidence "
          f"{sum(len(v) for v in raw.values())} bytes, {len(meta['timeline'])} timeline points")
    assert np.abs(rescored - recorded).max() <= JPEG_TOLERANCE
    assert meta["model"]["sha256"] and meta["model"]["id"] == opened["model"]["id"]
    assert len(meta["timeline"]) >= len(meta["crops"]) and all(0 <= p["p_fake"] <= 1 for p in meta["timeline"])

    from monitor.report import render

    html = render(sorted(events, key=lambda e: e["seq"]), meta, {k.decode(): v for k, v in raw.items() if k != b"meta"})
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # self-contained: nothing to fetch
    assert meta["model"]["id"] in html and meta["model"]["sha256"] in html
    assert html.count('<circle class="score"') == len(meta["timeline"])  # one point per scored crop
    assert html.count("class='crop'") == 6 and "monitor score-images --model CHECKPOINT" in html
    (tmp_path / "report.html").write_text(html)


async def test_the_api_serves_alerts_and_evidence_to_the_token_only(tmp_path, clip):
    with RedisServer() as redis_server, RtspServer(file=str(clip), size="480x360") as rtsp:
        daemon = Daemon(config(tmp_path, redis_server.url, rtsp.url("file")))
        await daemon.start()
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        base = f"http://127.0.0.1:{daemon.http_port}"
        try:
            assert await wait_for(lambda: client.xlen("deepfake:events") > 0, 60)
            alert_id = json.loads(client.xrange("deepfake:events")[0][1]["event"])["alert_id"]
            assert await wait_for(lambda: client.exists(f"deepfake:evidence:{alert_id}"), 10)
            routes = ["/alerts", f"/alerts/{alert_id}", f"/alerts/{alert_id}/crops/0.jpg", f"/alerts/{alert_id}/frame.jpg",
                      f"/alerts/{alert_id}/report.html", "/", "/live", "/streams"]
            for route in routes:
                assert (await get(base, route, token=None))[0] == 401, route
                assert (await get(base, route, token="wrong"))[0] == 401, route
                assert (await get(base, route, token=None, cookie={"monitor_session": "9999999999.forged"}))[0] == 401
            status, body, headers = await get(base, f"/alerts/{alert_id}/crops/0.jpg")
            assert status == 200 and headers["Content-Type"] == "image/jpeg" and Image.open(io.BytesIO(body)).size == (256, 256)
            detail = json.loads((await get(base, f"/alerts/{alert_id}"))[1])
            assert detail["events"][0]["type"] == "opened" and detail["evidence"]["crops"]
            status, body, headers = await get(base, f"/alerts/{alert_id}/report.html")
            assert status == 200 and b"<svg" in body and "img-src data:" in headers["Content-Security-Policy"]
            for bad in ("/alerts/not-an-id", "/alerts/" + "0" * 32, f"/alerts/{alert_id}/crops/99.jpg"):
                assert (await get(base, bad))[0] == 404, bad
            assert (await get(base, "/alerts?since=yesterday"))[0] == 400
        finally:
            await daemon.stop()


async def test_evidence_made_while_redis_is_down_arrives_when_it_returns(tmp_path, clip):
    server = RedisServer()  # not started: down while the alert opens
    with RtspServer(file=str(clip), size="480x360") as rtsp:
        daemon = Daemon(config(tmp_path, server.url, rtsp.url("file")))
        await daemon.start()
        try:
            spool = daemon.publisher.spool
            assert await wait_for(lambda: any(r["event"].get("kind") == "evidence" for r in spool._records), 60)
            evidence_key = next(r["event"]["key"] for r in spool._records if r["event"].get("kind") == "evidence")
            server.start()
            assert await daemon.publisher.flush(20)
            client = redis.Redis.from_url(server.url)
            assert client.exists(evidence_key) and json.loads(client.hget(evidence_key, "meta"))["crops"]
            assert client.xlen("deepfake:events") >= 1
        finally:
            await daemon.stop()
            server.stop()
