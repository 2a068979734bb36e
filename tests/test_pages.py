"""The built-in WHIP publisher page in a real browser (Debian's Chromium): camera in, frames scored by the
daemon; tokens, codecs, closing and reloading the tab, trickle ICE."""

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from monitor.api import serve
from monitor.config import parse
from monitor.daemon import Daemon
from monitor.sources.webrtc import restrict_host_addresses
from tests.support.aio import wait_for
from tests.support.browser import Browser, chromium, write_y4m
from tests.support.faces import load_crops
from tests.support.media import face_frames
from tests.support.runtime import tiny_checkpoint

TOKEN = "Whip-T0ken@call"


@pytest.fixture(scope="module")
def media(tmp_path_factory, face_paths):
    folder = tmp_path_factory.mktemp("pages")
    camera = write_y4m(folder / "face.y4m", face_frames(load_crops(face_paths[:1]), 125, size=(640, 480), face_px=220))
    return folder, camera, tiny_checkpoint(folder)


@pytest.fixture
async def daemon(media, redis_server, tmp_path):
    folder, _, model = media
    restrict_host_addresses(["127.0.0.1"])
    config = parse({"model": {"path": str(model), "devices": ["cpu"]}, "worker": {"max_batch": 4, "buckets": [1, 4]},
                    "alerts": {"spool_dir": str(tmp_path / "spool")}, "redis": {"url": redis_server.url},
                    "http": {"port": 0, "token": "api-token"},
                    "whip": {"token": TOKEN, "sample_fps": 2, "media_timeout_s": 3, "host_addresses": ["127.0.0.1"]},
                    "streams": [{"id": "call", "url": "whip", "sampling": {"sample_fps": 4}},
                                {"id": "cam", "url": str(media[1])}]})
    daemon = Daemon(config)
    await daemon.start()
    yield daemon, f"http://127.0.0.1:{daemon.http_port}"
    await daemon.stop()


@pytest.fixture
async def elsewhere(daemon):
    """Another origin (another port) serving a copy of the page and its assets, as a portal might."""
    _, base = daemon
    files = {}
    async with aiohttp.ClientSession() as http:
        for path in ("/publish/call", "/static/publish.js", "/static/publish.css"):
            async with http.get(base + path) as response:
                assert response.status == 200
                files[path] = (await response.read(), response.content_type)
    async def copy(request):
        body, content_type = files[request.path]
        return web.Response(body=body, content_type=content_type)

    app = web.Application()
    for path in files:
        app.router.add_get(path, copy)
    runner, port = await serve(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def browser(tmp_path, media):
    return Browser(await asyncio.to_thread(chromium, tmp_path / "profile", media[1]))


async def fill(browser, token=TOKEN, codec="VP8", source="camera", remember=False):
    def act(driver):
        from selenium.webdriver.support.ui import Select

        Select(driver.find_element("id", "source")).select_by_value(source)
        Select(driver.find_element("id", "codec")).select_by_value(codec)
        field = driver.find_element("id", "token")
        field.clear()
        field.send_keys(token)
        if remember:  # the token stays in this tab's sessionStorage
            driver.find_element("id", "remember").click()

    await browser.do(act)


async def click(browser, element_id):
    await browser.do(lambda d: d.find_element("id", element_id).click())


async def page_says(browser, text, timeout=20):
    return await browser.wait(lambda d: text in d.find_element("id", "message").text, timeout)


SENT_CODEC = """
const done = arguments[arguments.length - 1];
pc.getStats().then((stats) => {
  let codec = null;
  stats.forEach((s) => { if (s.type === "outbound-rtp" && s.kind === "video") codec = stats.get(s.codecId); });
  done(codec ? codec.mimeType : null);
});
"""


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_the_page_publishes_from_another_origin_at_the_streams_own_rate(daemon, elsewhere, media, tmp_path,
                                                                               codec):
    daemon, base = daemon
    page = await browser(tmp_path, media)
    try:
        await page.do(lambda d: d.get(f"{elsewhere}/publish/call?endpoint={base}/whip/call"))
        assert not await page.do(lambda d: d.find_element("id", "unavailable").is_displayed())
        await fill(page, codec=codec)
        await click(page, "start")
        assert await page_says(page, "Publishing to call"), await page.text("message")
        status = lambda: daemon.supervisor.status("call")  # noqa: E731
        assert await wait_for(lambda: status()["state"] == "running", 20), status()
        await asyncio.sleep(1.0)
        frames, started = status()["frames_in"], time.monotonic()
        await asyncio.sleep(4.0)
        rate = (status()["frames_in"] - frames) / (time.monotonic() - started)
        assert await wait_for(lambda: status()["crops_scored"] > 0, 20)
        assert await page.wait(lambda d: d.find_element("id", "verdict").text not in ("–", ""), 10)
        sent = await page.do(lambda d: d.execute_async_script(SENT_CODEC))
        frames_sent = int(await page.text("frames"))
        shot = tmp_path / f"publisher-{codec}.png"
        await page.do(lambda d: d.save_screenshot(str(shot)))
        print(f"{codec}: {rate:.1f} frames/s handed on (stream sample_fps 4, [whip] default 2); sent as {sent}; "
              f"{frames_sent} frames sent; page shows {await page.text('verdict')} {await page.text('score')}; "
              f"screenshot {shot}")
        assert 3.0 <= rate <= 5.5  # the stream's own sampling, not [whip] sample_fps
        assert sent == f"video/{codec}"
        assert frames_sent > 30
        await click(page, "stop")
        assert await wait_for(lambda: status()["state"] == "ended" and status()["reason"] == "closed", 10)
    finally:
        await page.quit()


async def test_a_wrong_token_is_refused_before_anything_is_negotiated(daemon, media, tmp_path):
    daemon, base = daemon
    page = await browser(tmp_path, media)
    try:
        await page.do(lambda d: d.get(f"{base}/publish/call"))
        await fill(page, token="not-the-token")
        await click(page, "start")
        assert await page_says(page, "Wrong or missing WHIP token (HTTP 401)")
        assert not daemon.whip.sessions and not daemon.whip.peer_connections
        assert daemon.supervisor.status("call")["state"] == "waiting_for_publisher"
        assert not await page.do(lambda d: d.find_element("id", "start").get_attribute("disabled"))
    finally:
        await page.quit()


async def test_closing_the_tab_ends_the_stream_and_a_reload_replaces_the_session(daemon, media, tmp_path):
    daemon, base = daemon
    status = lambda: daemon.supervisor.status("call")  # noqa: E731
    page = await browser(tmp_path, media)
    try:
        await page.do(lambda d: d.get(f"{base}/publish/call"))
        await fill(page, remember=True)
        await click(page, "start")
        assert await wait_for(lambda: status()["state"] == "running", 20)
        assert TOKEN not in await page.do(lambda d: d.current_url)  # never in the URL
        # Trickle ICE: the browser can read our 405 (PATCH passes the CORS preflight).
        patched = await page.do(lambda d: d.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch(session, {method: "PATCH", headers: {"Content-Type": "application/trickle-ice-sdpfrag",
                                                         "Authorization": "Bearer " + arguments[0]}, body: "a=x"})
              .then((r) => done(r.status), (e) => done(String(e)));""", TOKEN))
        assert patched == 405
        first = daemon.supervisor.whip_source("call").session
        await page.do(lambda d: d.refresh())  # a camera publisher starts again by itself: a new session replaces it
        assert await wait_for(lambda: first.ended is not None, 15)
        assert await wait_for(lambda: status()["state"] == "running" and status()["session"] != first.session_id, 20)
        print(f"after a reload the first session ended with reason {first.ended!r}")
        assert first.ended == "replaced"
        second = daemon.supervisor.whip_source("call").session
        await page.do(lambda d: d.close())  # the tab goes: no DELETE, the media stops
        closed_at = time.monotonic()
        assert await wait_for(lambda: second.ended is not None, 10)
        print(f"closing the tab ended the stream after {time.monotonic() - closed_at:.1f} s ({second.ended})")
        assert time.monotonic() - closed_at <= 3 + 1.5 and status()["state"] == "ended"
    finally:
        await page.quit()


async def test_the_page_is_only_for_whip_streams(daemon):
    _, base = daemon
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/publish/cam") as response:
            assert response.status == 404
        async with http.get(f"{base}/publish/call") as response:
            csp = response.headers["Content-Security-Policy"]
            assert response.status == 200 and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        async with http.get(f"{base}/whip/call") as response:
            assert response.status == 401  # the status for the page needs the WHIP token
        async with http.get(f"{base}/whip/call", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            shown = await response.json()
            assert shown["state"] == "waiting_for_publisher" and "url" not in shown

