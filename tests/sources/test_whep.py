"""WHEP pull against a real WHEP server (aiohttp + aiortc over loopback), H.264 and VP8."""

import asyncio

import pytest

from monitor.contracts import Frame
from monitor.sources import ERROR, RUNNING, SourceSettings
from monitor.sources.webrtc import restrict_host_addresses
from monitor.sources.whep import WhepSource
from tests.support.aio import collect, wait_for
from tests.support.media import moving_bar, write_mp4
from tests.support.whep_server import WhepServer

TOKEN = "Whep-T0ken@x/y"
FAST = dict(backoff_initial_s=0.2, backoff_max_s=1.0, backoff_fatal_s=30.0, open_timeout_s=5.0, stall_timeout_s=2.0)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whep")
    h264 = write_mp4(folder / "clip.mp4", moving_bar(75))
    vp8 = write_mp4(folder / "clip.webm", moving_bar(75), codec="libvpx")
    return {"h264": (str(h264), "H264"), "vp8": (str(vp8), "VP8")}


@pytest.fixture
async def server(media):
    restrict_host_addresses(["127.0.0.1"])
    server = await WhepServer(media, token=TOKEN).start()
    yield server
    await server.stop()


@pytest.mark.parametrize("mount", ["h264", "vp8"])
async def test_frames_arrive_at_the_stream_rate_and_stop_sends_delete(server, mount):
    source = WhepSource("cam", server.url(mount), SourceSettings(sample_fps=5, **FAST), token=TOKEN)
    source.start()
    assert await wait_for(lambda: source.state == RUNNING, 20), source.status()
    frames = [f for f in await collect(source, 3.0) if isinstance(f, Frame)]
    rate = len(frames) / 3.0
    status = source.status()
    print(f"{mount}: {rate:.1f} frames/s at sample_fps=5; {status['fps']} fps received, {status['connection_quality']}")
    assert 3.5 <= rate <= 6.5 and frames[0].image.shape == (240, 320, 3)
    assert status["state"] == "running" and status["session"] and status["connection_quality"] in ("good", "degraded")
    assert TOKEN not in str(status)
    await source.stop()
    assert source.state == "stopped" and len(server.deletes) == 1 and not server.sessions


async def test_a_wrong_token_is_an_auth_error_that_backs_off(server):
    source = WhepSource("cam", server.url("h264"), SourceSettings(**FAST), token="wrong")
    source.start()
    assert await wait_for(lambda: source.reason == "auth", 10)
    await asyncio.sleep(1.5)
    status = source.status()
    await source.stop()
    assert status["state"] == ERROR and "401" in status["detail"]
    assert status["reconnect_attempts"] == 0 and server.posts == ["h264"]  # backing off for backoff_fatal_s


async def test_an_unknown_mount_is_not_found(server):
    source = WhepSource("cam", server.url("nope"), SourceSettings(**FAST), token=TOKEN)
    source.start()
    assert await wait_for(lambda: source.reason == "not_found", 10)
    assert source.state == ERROR
    await source.stop()


async def test_the_stream_recovers_when_the_server_goes_away_and_comes_back(server):
    source = WhepSource("cam", server.url("h264"), SourceSettings(sample_fps=5, **FAST), token=TOKEN)
    source.start()
    assert await wait_for(lambda: source.state == RUNNING, 20)
    await server.stop()  # media ends and the endpoint refuses connections
    assert await wait_for(lambda: source.state == "reconnecting", 10), source.status()
    reason = source.reason
    await asyncio.sleep(1.0)
    await server.start()  # same port
    assert await wait_for(lambda: source.state == RUNNING, 30), source.status()
    frames = [f for f in await collect(source, 1.5) if isinstance(f, Frame)]
    status = source.status()
    await source.stop()
    print(f"lost the server ({reason}), back after {status['reconnect_attempts']} attempts; "
          f"{len(frames)} frames in 1.5 s since")
    assert reason in ("closed", "media_timeout", "refused") and status["reconnects"] == 1 and frames
    assert status["connection_quality"] in ("degraded", "poor")  # a reconnect in the last 5 minutes


async def test_a_frozen_server_takes_the_stream_out_of_running_within_the_stall_timeout(server):
    """A server that freezes (media stops, HTTP hangs): the stream leaves `running` once the media has been
    missing for stall_timeout_s; the DELETE to the frozen server goes on in the background with its own bound
    (it was awaited first: the stream stayed `running` for stall_timeout_s + open_timeout_s)."""
    settings = SourceSettings(sample_fps=5, **FAST)
    source = WhepSource("cam", server.url("h264"), settings, token=TOKEN)
    source.start()
    assert await wait_for(lambda: source.state == RUNNING, 20)
    server.freeze()
    frozen = asyncio.get_running_loop().time()
    assert await wait_for(lambda: source.state != RUNNING, 15), source.status()
    took = asyncio.get_running_loop().time() - frozen
    state, reason = source.state, source.reason
    server.thaw()
    await source.stop()
    print(f"frozen server: {state} ({reason}) after {took:.1f} s (stall_timeout_s {settings.stall_timeout_s}, "
          f"open_timeout_s {settings.open_timeout_s})")
    assert reason == "media_timeout"
    assert took < settings.stall_timeout_s + settings.open_timeout_s - 1  # not the DELETE's timeout on top
