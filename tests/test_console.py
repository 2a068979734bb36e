"""The live web console in a real browser (Debian's Chromium): login with the token, streams, an alert that
appears live with its crops, the report."""

import asyncio
import json

import pytest
import redis

from monitor.config import parse
from monitor.daemon import Daemon
from tests.support.aio import wait_for
from tests.support.browser import Browser, chromium
from tests.support.faces import load_crops
from tests.support.media import face_frames, write_mp4
from tests.support.runtime import MODERATE_SEED, tiny_checkpoint
from tests.support.servers import RedisServer, RtspServer

TOKEN = "Console-T0ken@x/y"


@pytest.fixture(scope="module")
def clip(tmp_path_factory, face_paths):
    folder = tmp_path_factory.mktemp("console")
    return write_mp4(folder / "faces.mp4", face_frames(load_crops(face_paths[:1]), 25 * 30, size=(480, 360),
                                                      face_px=170))


async def test_the_console_shows_streams_and_an_alert_appearing_live_with_its_crops(tmp_path, clip):
    with RedisServer() as redis_server, RtspServer(file=str(clip), size="480x360") as rtsp:
        config = parse({"instance": "console-test",
                        "model": {"path": str(tiny_checkpoint(tmp_path, MODERATE_SEED)), "devices": ["cpu"]},
                        "worker": {"max_batch": 4, "buckets": [1, 4]}, "sampling": {"sample_fps": 4},
                        "faces": {"track_max_absence_s": 5},
                        "window": {"min_crops": 2}, "verdict": {"suspicious": 0.01, "manipulated": 0.99,
                                                                "enter_crops": 4, "enter_seconds": 8},
                        "alerts": {"spool_dir": str(tmp_path / "spool"), "update_interval_s": 0},
                        "redis": {"url": redis_server.url}, "http": {"port": 0, "token": TOKEN},
                        "streams": [{"id": "lobby", "url": rtsp.url("file")}, {"id": "call", "url": "whip"}]})
        daemon = Daemon(config)
        await daemon.start()
        base = f"http://127.0.0.1:{daemon.http_port}"
        page = Browser(await asyncio.to_thread(chromium, tmp_path / "profile", None, (), (1200, 1000)))
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            await page.do(lambda d: d.get(base + "/"))
            assert await page.wait(lambda d: d.find_elements("id", "signin"), 10)  # not signed in: the form
            await page.do(lambda d: d.find_element("id", "token").send_keys("wrong"))
            await page.do(lambda d: d.find_element("id", "signin").click())
            assert await page.wait(lambda d: d.find_element("id", "failed").is_displayed(), 10)
            await page.do(lambda d: d.find_element("id", "token").send_keys(TOKEN))
            await page.do(lambda d: d.find_element("id", "signin").click())
            assert await page.wait(lambda d: d.find_elements("css selector", "[data-stream='lobby'] .state-running"),
                                   30), await page.do(lambda d: d.page_source[:2000])
            cookie = await page.do(lambda d: d.get_cookie("monitor_session"))
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
            assert client.xlen("deepfake:events") == 0  # no alert yet: the next one must appear without a reload
            marker = await page.do(lambda d: d.execute_script("window.notReloaded = true; return true"))
            assert marker
            assert await page.wait(lambda d: d.find_elements("css selector", "#open-alerts .alert"), 60)
            assert await page.do(lambda d: d.execute_script("return window.notReloaded === true"))
            alert_id = await page.do(lambda d: d.find_element("css selector", "#open-alerts .alert")
                                     .get_attribute("data-alert"))
            assert await wait_for(lambda: client.exists(f"deepfake:evidence:{alert_id}"), 10)
            await asyncio.sleep(3)  # a few more updates: the crops fill in
            loaded = await page.wait(lambda d: d.execute_script(
                "const imgs = [...document.querySelectorAll('#open-alerts .alert img')];"
                "return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0)"), 20)
            assert loaded, await page.do(lambda d: d.page_source[-3000:])
            await page.do(lambda d: d.save_screenshot(str(tmp_path / "console.png")))
            await page.do(lambda d: d.get(f"{base}/alerts/{alert_id}/report.html"))
            assert await page.wait(lambda d: d.execute_script(
                "return [...document.images].length > 1 && [...document.images].every((i) => i.naturalWidth > 0)"),
                10)
            await page.do(lambda d: d.save_screenshot(str(tmp_path / "report.png")))
            await page.do(lambda d: d.get(base + "/"))
            await page.do(lambda d: d.find_element("css selector", ".logout button").click())
            assert await page.wait(lambda d: d.find_elements("id", "signin"), 10)
            assert await page.do(lambda d: d.get_cookie("monitor_session")) is None
            print(f"screenshots: {tmp_path / 'console.png'} {tmp_path / 'report.png'}")
        finally:
            await page.quit()
            await daemon.stop()
        assert json.loads(client.xrange("deepfake:events")[0][1]["event"])["alert_id"] == alert_id
