"""RTSP and file sources on PyAV: one reader thread per stream that decodes every frame and hands the
newest to the event loop at the sampling rate.

The reader never stops reading a live session (a paused reader makes the server buffer and latency creep
up); decoded frames that are not sampled are simply replaced by newer ones. Only sampled frames are
converted to RGB. A slow consumer sees the newest frame; frames it missed are counted as `stale`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import threading
import time

import av

from ..contracts import Frame
from ..redact import redact
from .base import (
    ENDED,
    ERROR,
    RECONNECTING,
    RUNNING,
    STALLED,
    STARTING,
    STOPPED,
    SourceFailure,
    SourceSettings,
    SourceStats,
    classify,
)
from .sampling import RateSampler, to_frame
from .slot import FrameSlot

log = logging.getLogger(__name__)

FATAL_REASONS = ("auth", "not_found")
_open_containers = 0  # for leak checks
_open_lock = threading.Lock()


def open_containers() -> int:
    return _open_containers


class PyAVSource:
    """A stream read by PyAV. `is_live`: RTSP (reconnects forever); otherwise a file (ends, or loops)."""

    def __init__(self, stream_id: str, url: str, settings: SourceSettings | None = None):
        self.stream_id, self.url = stream_id, url
        self.settings = settings or SourceSettings()
        self.is_live = url.lower().startswith(("rtsp://", "rtsps://", "rtmp://", "srt://", "udp://", "tcp://"))
        self.state = STARTING
        self.reason: str | None = None  # why the stream is in error / reconnecting
        self.detail: str = ""
        self.stats = SourceStats()
        self._slot = FrameSlot()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = itertools.count()
        self._sessions = 0  # sessions that delivered frames

    @property
    def safe_url(self) -> str:
        return redact(self.url)

    # --- control (event loop) -----------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.stream_id}", daemon=True)
        self._thread.start()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop reading; bounded by the open timeout (a blocked open cannot be interrupted sooner)."""
        self._stop.set()
        if self._thread is not None:
            bound = timeout if timeout is not None else self.settings.open_timeout_s + self.settings.stall_timeout_s + 1
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, bound)
        self._set_state(STOPPED)

    def frames(self):
        """Sampled frames, the newest served first, until the stream ends or is stopped."""
        return self._slot.frames()

    def status(self) -> dict:
        return {"id": self.stream_id, "url": self.safe_url, "state": self.state, "reason": self.reason,
                "detail": self.detail, **self.stats.snapshot(self.state)}

    # --- reader thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self.settings.backoff_initial_s
        first, clean_end = True, False
        try:
            while not self._stop.is_set():
                if not first and not clean_end:  # a file looping round is not a reconnect
                    self.stats.reconnect_attempts += 1
                    self.stats.restarted(time.time())
                first, clean_end = False, False
                try:
                    self._read_once()
                    if self._stop.is_set():
                        return
                    if not self.is_live and not self.settings.loop:
                        self._set_state(ENDED, "closed", "end of file")
                        return
                    backoff = self.settings.backoff_initial_s  # a clean session resets the backoff
                    if self.is_live:
                        self._note_failure(SourceFailure("closed", "the server ended the session"))
                    else:
                        clean_end = True
                        continue  # loop the file at once
                except SourceFailure as failure:
                    if not self.is_live and failure.reason != "stall":
                        self._set_state(ERROR, failure.reason, str(failure))
                        log.error("stream %s: %s", self.stream_id, failure)
                        return
                    self._note_failure(failure)
                    if failure.reason in FATAL_REASONS:
                        backoff = max(backoff, self.settings.backoff_fatal_s)
                        self._set_state(ERROR, failure.reason, str(failure))
                if self._stop.is_set():
                    return
                delay = self._restart_delay(backoff)
                self._stop.wait(delay)
                backoff = min(backoff * 2, max(self.settings.backoff_max_s, self.settings.backoff_fatal_s
                                               if self.reason in FATAL_REASONS else 0))
        finally:
            self._loop.call_soon_threadsafe(self._slot.finished.set)

    def _restart_delay(self, backoff: float) -> float:
        delay = backoff * random.uniform(0.8, 1.2)  # jitter: many cameras behind one gateway do not retry in step
        if self.stats.restarts_within(60, time.time()) >= self.settings.restarts_per_minute:
            delay = max(delay, 60.0 / self.settings.restarts_per_minute * 2)
        return delay

    def _note_failure(self, failure: SourceFailure) -> None:
        self._set_state(RECONNECTING, failure.reason, str(failure))
        log.warning("stream %s: %s; reconnecting", self.stream_id, failure)

    def _open(self):
        global _open_containers
        s = self.settings
        options, read_timeout, open_bound = {}, s.stall_timeout_s, s.open_timeout_s
        if self.url.lower().startswith(("rtsp://", "rtsps://")):
            # FFmpeg's socket timeout bounds every connect and read. PyAV's own read timeout is then left
            # off: it takes the GIL on each of the hundreds of socket polls a second, per stream.
            options = {"rtsp_transport": s.transport, "timeout": str(int(s.stall_timeout_s * 1e6))}
            read_timeout, open_bound = None, min(s.open_timeout_s, s.stall_timeout_s)
        started = time.monotonic()
        try:
            container = av.open(self.url, options=options, timeout=(s.open_timeout_s, read_timeout))
        except Exception as e:  # PyAV raises a zoo of FFmpegError/OSError subclasses; classify them all
            failure = classify(e, self.url)
            if failure.reason == "protocol" and time.monotonic() - started >= 0.9 * open_bound:
                # A server that accepts and never answers surfaces as "invalid data" once the timeout hits.
                failure = SourceFailure("timeout", f"timeout: no answer within {open_bound:.1f} s ({failure})")
            raise failure from None
        with _open_lock:
            _open_containers += 1
        return container

    def _close(self, container) -> None:
        global _open_containers
        try:
            container.close()
        finally:
            with _open_lock:
                _open_containers -= 1

    def _read_once(self) -> None:
        """One session: open, decode until the end, a failure, or stop. The container is always closed."""
        container = self._open()
        try:
            if not container.streams.video:
                raise SourceFailure("codec", f"codec: {self.safe_url} has no video stream")
            stream = container.streams.video[0]
            try:
                stream.codec_context.thread_count = self.settings.decoder_threads
                if self.settings.mode == "keyframes":
                    stream.codec_context.skip_frame = "NONKEY"
            except (av.FFmpegError, ValueError) as e:
                raise classify(e, self.url) from None
            if stream.average_rate:
                self.stats.expected_fps = float(stream.average_rate)
            self._decode(container, stream)
        except SourceFailure:
            raise
        except Exception as e:
            failure = classify(e, self.url)
            if failure.reason == "timeout" and self.state == RUNNING:  # the read timeout fired mid-stream: a stall
                self.stats.stalls += 1
                self._set_state(STALLED, "stall", f"no data for {self.settings.stall_timeout_s:.1f} s")
                failure = SourceFailure("stall", f"stall: no data for {self.settings.stall_timeout_s:.1f} s")
            raise failure from None
        finally:
            self._close(container)

    def _decode(self, container, stream) -> None:
        paced = not self.is_live and self.settings.realtime
        wall_start = media_start = None
        sampler = RateSampler(self.settings.sample_fps)
        last_frame = time.monotonic()
        keyframes_only = self.settings.mode == "keyframes"
        for packet in container.demux(stream):
            if self._stop.is_set():
                return
            if keyframes_only and not packet.is_keyframe and packet.size:
                # Read (so the session never backs up) but not decoded: the decoder would skip it anyway.
                # With keyframes seconds apart, arriving packets are what proves the stream alive.
                last_frame = time.monotonic()
                continue
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                self.stats.dropped["decode_error"] += 1  # a corrupt packet: skip it, keep the session
                continue
            now_mono = time.monotonic()
            for frame in frames:
                now = time.time()
                self.stats.decoded(now)
                last_frame = now_mono
                if self.state != RUNNING:
                    if self._sessions:  # a session came back after a loss
                        self.stats.reconnects += 1
                    self._sessions += 1
                    self._set_state(RUNNING)
                media_time = frame.time
                if paced and media_time is not None:  # play files at their own pace
                    if wall_start is None:
                        wall_start, media_start = time.monotonic(), media_time
                    ahead = (media_time - media_start) - (time.monotonic() - wall_start)
                    if ahead > 0 and self._stop.wait(ahead):
                        return
                # The sampling clock: wall time for live and paced input, media time when decoding flat out.
                clock = media_time if (not self.is_live and not paced and media_time is not None) else time.monotonic()
                if sampler.due(clock):
                    self.stats.frames_emitted += 1
                    self._loop.call_soon_threadsafe(self._deliver, to_frame(self.stream_id, next(self._seq), frame, now))
            if now_mono - last_frame > self.settings.stall_timeout_s:
                self.stats.stalls += 1
                self._set_state(STALLED, "stall", "packets arrive but no frame decodes")
                raise SourceFailure("stall", f"stall: no frame for {self.settings.stall_timeout_s:.1f} s")

    def _deliver(self, frame: Frame) -> None:
        if self._slot.put(frame):  # the consumer had not taken the previous frame: the newest wins
            self.stats.dropped["stale"] += 1

    def _set_state(self, state: str, reason: str | None = None, detail: str = "") -> None:
        if state == RUNNING:
            self.reason, self.detail = None, ""
        elif reason is not None:
            self.reason, self.detail = reason, detail
        if state == STALLED:
            log.warning("stream %s stalled: %s", self.stream_id, detail)
        self.state = state
