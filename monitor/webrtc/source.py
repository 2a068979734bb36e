"""A WebRTC publisher's video track as a source: the same Frames, sampling, counters and states as RTSP.

aiortc's receive queues are unbounded, so the track is drained continuously into a newest-frame slot;
audio is drained and discarded. No media for `media_timeout_s` closes the peer connection and ends the
stream with a reason (ICE consent failure alone would take ~30 s to notice).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

from aiortc.mediastreams import MediaStreamError

from ..sources.base import ENDED, RUNNING, STARTING, SourceStats
from ..sources.sampling import RateSampler, to_frame
from ..sources.slot import FrameSlot

log = logging.getLogger(__name__)


class WebRtcSource:
    def __init__(self, stream_id: str, session_id: str, sample_fps: float, media_timeout_s: float):
        self.stream_id, self.session_id = stream_id, session_id
        self.sample_fps, self.media_timeout_s = sample_fps, media_timeout_s
        self.state = STARTING
        self.reason: str | None = None
        self.detail = ""
        self.stats = SourceStats()
        self.url = f"whip:{stream_id}"
        self._slot = FrameSlot()
        self._tasks: list[asyncio.Task] = []
        self._seq = itertools.count()
        self._last_media = time.monotonic()
        self.on_end = None  # callback(source), set by the endpoint: closes the peer connection
        self.track = None

    def attach_video(self, track) -> None:
        self.track = track
        self._tasks.append(asyncio.create_task(self._drain_video(track), name=f"whip-video-{self.stream_id}"))

    def attach_audio(self, track) -> None:
        self._tasks.append(asyncio.create_task(self._drain_audio(track), name=f"whip-audio-{self.stream_id}"))

    def start_watchdog(self) -> None:
        self._tasks.append(asyncio.create_task(self._watchdog(), name=f"whip-watchdog-{self.stream_id}"))

    async def _drain_video(self, track) -> None:
        sampler = RateSampler(self.sample_fps)
        try:
            while True:
                frame = await track.recv()
                now, mono = time.time(), time.monotonic()
                self._last_media = mono
                self.stats.decoded(now)
                if self.state != RUNNING:
                    self.state, self.reason, self.detail = RUNNING, None, ""
                if sampler.due(mono):
                    self.stats.frames_emitted += 1
                    if self._slot.put(to_frame(self.stream_id, next(self._seq), frame, now)):
                        self.stats.dropped["stale"] += 1
        except MediaStreamError:
            self.end("closed", "the publisher's track ended")

    async def _drain_audio(self, track) -> None:
        try:
            while True:
                await track.recv()  # accepted and discarded, so aiortc's queue never grows
        except MediaStreamError:
            pass

    async def _watchdog(self) -> None:
        while self.state not in (ENDED,):
            await asyncio.sleep(min(0.25, self.media_timeout_s / 4))
            if time.monotonic() - self._last_media > self.media_timeout_s:
                self.end("media_timeout", f"no media for {self.media_timeout_s:.1f} s")
                return

    def end(self, reason: str, detail: str = "") -> None:
        """End the session (idempotent): state `ended` with a reason; closes the peer connection."""
        if self.state == ENDED:
            return
        self.state, self.reason, self.detail = ENDED, reason, detail
        log.info("whip stream %s session %s ended: %s %s", self.stream_id, self.session_id, reason, detail)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._slot.finished.set()
        if self.on_end is not None:
            asyncio.ensure_future(self.on_end(self))

    async def stop(self) -> None:
        self.end("stopped")

    def frames(self):
        """Sampled frames, the newest served first, until the stream ends or is stopped."""
        return self._slot.frames()

    def queue_lengths(self) -> dict:
        """For memory checks: our slot and aiortc's receive queue."""
        remote = getattr(self.track, "_queue", None)
        return {"slot": self._slot.qsize(), "track": remote.qsize() if remote is not None else 0}

    def status(self) -> dict:
        return {"id": self.stream_id, "url": self.url, "session": self.session_id, "state": self.state,
                "reason": self.reason, "detail": self.detail, **self.stats.snapshot(self.state)}
