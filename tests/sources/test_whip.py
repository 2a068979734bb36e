"""WHIP ingest with real aiortc peers over loopback (ICE gathers only 127.0.0.1, no STUN)."""

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web
from aiortc.mediastreams import VideoStreamTrack

from monitor.api import serve
from monitor.contracts import Frame, SessionEnded
from monitor.sources import ENDED, RUNNING, WAITING
from monitor.sources.whip import WhipEndpoint, WhipSettings, WhipSource
from tests.support.aio import collect, wait_for
from tests.support.media import moving_bar, write_mp4
from tests.support.whip_client import WhipPublisher

TOKEN = "t0ken-for-tests"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return str(write_mp4(tmp_path_factory.mktemp("whip") / "clip.mp4", moving_bar(75)))


@pytest.fixture
async def server():
    """An endpoint whose streams cam1, cam2, lobby (and cam9, not allowed) are WHIP sources at 5 frames/s."""
    sources = {s: WhipSource(s, sample_fps=5) for s in ("cam1", "cam2", "lobby", "cam9")}
    endpoint = WhipEndpoint(WhipSettings(token=TOKEN, stream_tokens={"lobby": "lobby-token"},
                                         allowed_streams=["cam1", "cam2", "lobby"], max_sessions=2,
                                         max_sdp_bytes=16_000, media_timeout_s=2.0,
                                         host_addresses=["127.0.0.1"]), resolve=sources.get)
    app = web.Application()
    endpoint.add_routes(app)
    runner, port = await serve(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}", endpoint, sources
    await runner.cleanup()
    assert not endpoint.peer_connections
    for source in sources.values():
        await source.stop()


def frames_only(items):
    return [item for item in items if isinstance(item, Frame)]


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_publish_frames_arrive_then_delete_ends(server, clip, codec):
    base, endpoint, sources = server
    source = sources["cam1"]
    assert source.state == WAITING
    publisher = WhipPublisher(f"{base}/whip/cam1", TOKEN)
    response = await publisher.publish(path=clip, codec=codec, audio=True)
    assert response.status == 201 and response.headers["Location"].startswith("/whip/cam1/")
    assert response.headers["Access-Control-Expose-Headers"]
    assert await wait_for(lambda: source.state == RUNNING, 15)
    frames = frames_only(await collect(source, 3.0))
    rate = len(frames) / 3.0
    print(f"{codec}: {rate:.1f} frames/s at sample_fps=5, {source.stats.fps(time.time()):.1f} fps received")
    assert 3.0 <= rate <= 6.5
    assert frames[0].image.shape == (240, 320, 3)
    assert await publisher.delete(base) == 200
    assert source.state == ENDED and source.reason == "closed"
    assert await collect(source, 0.2) == [SessionEnded("cam1", "closed")]  # its tracks and alerts end with it
    await publisher.close()
    assert await wait_for(lambda: not endpoint.peer_connections, 5)


async def test_rejections_leave_no_peer_connection(server, clip):
    base, endpoint, sources = server
    offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"

    async def post(path, body, token=None, content_type="application/sdp"):
        headers = {"Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with aiohttp.ClientSession() as http:
            async with http.post(base + path, data=body, headers=headers) as response:
                return response.status, await response.text()

    assert (await post("/whip/cam1", offer))[0] == 401
    assert (await post("/whip/cam1", offer, "wrong"))[0] == 401
    assert (await post("/whip/lobby", offer, "wrong"))[0] == 401
    assert (await post("/whip/cam9", offer, TOKEN))[0] == 404
    status, text = await post("/whip/cam1", offer + "a=x:" + "y" * 20_000 + "\r\n", TOKEN)
    assert status == 413 and "larger than" in text
    assert (await post("/whip/cam1", "this is not SDP", TOKEN))[0] == 400
    status, text = await post("/whip/cam1", offer, TOKEN)  # SDP-looking, but unusable (no ICE, no DTLS)
    assert status == 400 and "cannot negotiate" in text
    assert (await post("/whip/cam1", offer, TOKEN, content_type="text/plain"))[0] == 415
    assert (await post("/whip/nostream", offer, TOKEN))[0] == 404  # not a WHIP stream of this daemon
    assert not endpoint.peer_connections and not endpoint.sessions
    assert sources["cam1"].state == WAITING  # a failed negotiation leaves the stream as it was
    # CORS preflight for browsers.
    async with aiohttp.ClientSession() as http:
        async with http.options(base + "/whip/cam1") as response:
            assert response.status == 204 and "POST" in response.headers["Access-Control-Allow-Methods"]
    # Session limit (2): the third publisher gets 503 and nothing is left behind.
    publishers = [WhipPublisher(f"{base}/whip/{s}", t) for s, t in (("cam1", TOKEN), ("cam2", TOKEN), ("lobby", "lobby-token"))]
    statuses = [(await p.publish(path=clip)).status for p in publishers]
    assert statuses == [201, 201, 503]
    assert len(endpoint.peer_connections) == 2
    for p in publishers:
        await p.close()


class FrozenTrack(VideoStreamTrack):
    """A publisher that sends a few frames, then nothing, without hanging up."""

    def __init__(self, frames):
        super().__init__()
        self.left = frames

    async def recv(self):
        if self.left <= 0:
            await asyncio.sleep(3600)
        self.left -= 1
        return await super().recv()


async def test_silent_publisher_is_ended_within_the_media_timeout(server):
    base, endpoint, sources = server
    publisher = WhipPublisher(f"{base}/whip/cam1", TOKEN)
    assert (await publisher.publish(video_track=FrozenTrack(20))).status == 201
    source = sources["cam1"]
    assert await wait_for(lambda: source.stats.frames_decoded > 0, 15)
    assert await wait_for(lambda: source.state == ENDED, 15)
    silence = time.time() - source.stats.last_frame_at
    print(f"silent publisher ended {silence:.2f} s after its last frame (media timeout 2.0 s)")
    assert source.reason == "media_timeout"
    assert 2.0 <= silence < 2.0 + 1.0
    assert await wait_for(lambda: not endpoint.peer_connections, 5)
    await publisher.close()


async def test_same_stream_id_replaces_the_old_session(server, clip):
    base, endpoint, sources = server
    source = sources["cam1"]
    first, second = WhipPublisher(f"{base}/whip/cam1", TOKEN), WhipPublisher(f"{base}/whip/cam1", TOKEN)
    assert (await first.publish(path=clip)).status == 201
    assert await wait_for(lambda: source.state == RUNNING, 15)
    old = source.session
    assert (await second.publish(path=clip)).status == 201
    assert old.ended == "replaced" and source.session is not old
    items = await collect(source, 3.0)
    assert SessionEnded("cam1", "replaced") in items
    assert frames_only(items[items.index(SessionEnded("cam1", "replaced")):])  # the new publisher's frames follow
    assert source.state == RUNNING
    assert await wait_for(lambda: len(endpoint.sessions) == 1 and len(endpoint.peer_connections) == 1, 5)
    await first.close()
    await second.close()


async def test_stalled_consumer_keeps_queues_bounded(server, clip):
    base, endpoint, sources = server
    publisher = WhipPublisher(f"{base}/whip/cam1", TOKEN)
    assert (await publisher.publish(path=clip)).status == 201
    source = sources["cam1"]
    assert await wait_for(lambda: source.state == RUNNING, 15)
    lengths = []
    for _ in range(16):  # nobody reads frames() for 4 s
        await asyncio.sleep(0.25)
        track = source.session.video_track  # aiortc's receive queue (private: read by the test only)
        lengths.append({"slot": source._channel.qsize(), "track": track._queue.qsize()})
    print(f"queue lengths while the consumer stalls: {lengths[-1]}, max track queue "
          f"{max(q['track'] for q in lengths)}; stale drops {source.stats.dropped.get('stale', 0)}")
    assert max(q["slot"] for q in lengths) <= 1
    assert max(q["track"] for q in lengths) <= 5
    assert source.stats.dropped["stale"] >= 10
    await publisher.close()
