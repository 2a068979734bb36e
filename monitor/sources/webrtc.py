"""WebRTC media into a stream (aiortc): shared by WHIP (a publisher pushes to us) and WHEP (we pull).

aiortc's receive queues are unbounded, so every track is drained continuously: video into the stream's
channel at the sampling rate (the newest frame wins), audio discarded. No media for `media_timeout_s` ends the
session with a reason (ICE consent failure alone would take ~30 s to notice).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from pydantic import BaseModel, ConfigDict, Field

from ..logs import get
from ..tasks import background
from .base import SourceStats
from .channel import FrameChannel
from .sampling import RateSampler, to_frame

log = get(__name__)


class IceServer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[str] = Field(..., min_length=1, description="stun:... or turn:... URLs")
    username: str | None = None
    credential: str | None = None


def peer_connection(ice_servers: list[IceServer]) -> RTCPeerConnection:
    servers = [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice_servers]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


def restrict_host_addresses(addresses: list[str] | None) -> None:
    """aioice discovers host addresses itself and skips loopback; pin them when configured."""
    import aioice.ice

    if addresses is None:
        return
    pinned = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: pinned


class WebRtcSession:
    """One peer connection's media flowing into a stream's stats and channel."""

    def __init__(self, stream_id: str, session_id: str, pc: RTCPeerConnection, stats: SourceStats,
                 channel: FrameChannel, sample_fps: float, media_timeout_s: float,
                 on_first_frame: Callable[[WebRtcSession], None], on_end: Callable[[WebRtcSession, str, str], None],
                 peer_gone_grace_s: float = 0.0):
        """`peer_gone_grace_s`: when the peer closes the connection (not a DELETE), the session ends only after
        this long, so that a publisher that comes straight back (a page reload) replaces it instead."""
        self.stream_id, self.session_id, self.pc = stream_id, session_id, pc
        self.stats, self.channel = stats, channel
        self.sampler, self.media_timeout_s = RateSampler(sample_fps), media_timeout_s
        self.on_first_frame, self.on_end = on_first_frame, on_end
        self.peer_gone_grace_s = peer_gone_grace_s
        self.ended: str | None = None  # the reason, once ended
        self.video_track = None
        self.log = log.bind(stream_id=stream_id, session=session_id)
        self._tasks: set[asyncio.Task] = set()
        self._seq = itertools.count()
        self._last_media = time.monotonic()
        self._closed = asyncio.Event()

        @pc.on("track")
        def on_track(track):
            if track.kind == "video":
                self.video_track = track
                self._spawn(self._drain_video(track), "video")
            else:
                self._spawn(self._drain_audio(track), "audio")

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed"):
                await self._peer_gone(f"peer connection {pc.connectionState}")

    async def _peer_gone(self, detail: str) -> None:
        """The peer went away (not a DELETE): end after the grace, unless something else ended it meanwhile."""
        if self.ended is None and self.peer_gone_grace_s:
            await asyncio.sleep(self.peer_gone_grace_s)
        self.end("closed", detail)

    def start_watchdog(self) -> None:
        self._last_media = time.monotonic()
        self._spawn(self._watchdog(), "watchdog")

    def _spawn(self, coroutine, what: str) -> None:
        task = asyncio.create_task(coroutine, name=f"webrtc-{what}-{self.stream_id}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # never end silently
            error = task.exception()
            self.log.error("webrtc task failed", task=task.get_name(), error=f"{type(error).__name__}: {error}")
            self.end("internal", f"{type(error).__name__}: {error}")

    async def _drain_video(self, track) -> None:
        first = True
        try:
            while True:
                frame = await track.recv()
                now, mono = time.time(), time.monotonic()
                self._last_media = mono
                self.stats.decoded(now)
                if first:
                    first = False
                    self.on_first_frame(self)
                if self.sampler.due(mono):
                    self.stats.count("frames_emitted")
                    if self.channel.put(to_frame(self.stream_id, next(self._seq), frame, now)):
                        self.stats.drop("stale")
        except MediaStreamError:
            await self._peer_gone("the publisher's track ended")

    async def _drain_audio(self, track) -> None:
        try:
            while True:
                await track.recv()  # accepted and discarded, so aiortc's queue never grows
        except MediaStreamError:
            pass

    async def _watchdog(self) -> None:
        while self.ended is None:
            await asyncio.sleep(min(0.25, self.media_timeout_s / 4))
            if time.monotonic() - self._last_media > self.media_timeout_s:
                self.end("media_timeout", f"no media for {self.media_timeout_s:.1f} s")
                return

    def end(self, reason: str, detail: str = "") -> None:
        """End the session (idempotent): stop draining, tell the owner, close the peer connection."""
        if self.ended is not None:
            return
        self.ended = reason
        self.log.info("webrtc session ended", reason=reason, detail=detail)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self.on_end(self, reason, detail)
        background(self._close(), "webrtc-close")

    async def _close(self) -> None:
        try:
            await self.pc.close()
        finally:
            self._closed.set()

    async def closed(self) -> None:
        """Wait until the peer connection is closed."""
        await self._closed.wait()
