"""RTSP, files and whatever else FFmpeg opens, on PyAV: one reader thread per stream that decodes every frame
and hands the newest to the event loop at the sampling rate.

The reader never stops reading a live session (a paused reader makes the server buffer and latency creep
up); decoded frames that are not sampled are simply replaced by newer ones. Only sampled frames are
converted to RGB. A slow consumer sees the newest frame; frames it missed are counted as `stale`.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import av

from ..contracts import Frame
from ..logs import get
from ..redact import redact
from .base import (
    ENDED,
    ERROR,
    FATAL_REASONS,
    RECONNECTING,
    RUNNING,
    STALLED,
    STOPPED,
    Backoff,
    SourceFailure,
    SourceSettings,
    SourceStats,
    StatsState,
    classify,
)
from .channel import FrameChannel
from .sampling import RateSampler, to_frame

log = get(__name__)
PROBE_BYTES = 1_000_000  # enough for the stream headers and a keyframe of a 4K camera

# Network input is live (reconnects forever); a file path is not (it ends, or loops).
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "udp://", "tcp://")
# A packet that arrives this share of stall_timeout_s after the previous one came out of FFmpeg's buffer when its
# read timed out: the silence is the news, that packet is old.
SILENCE_SHARE = 0.95


class PyAVSource(StatsState):
    """A stream read by PyAV. `is_live` (network URLs): reconnects forever; otherwise a file (ends, or loops)."""

    def __init__(self, stream_id: str, url: str, settings: SourceSettings | None = None):
        self.stream_id, self.url = stream_id, url
        self.settings = settings or SourceSettings()
        self.is_live = url.lower().startswith(LIVE_SCHEMES)
        self.stats = SourceStats(stall_after_s=self.settings.stall_timeout_s + 1.0 if self.is_live else None)
        self.log = log.bind(stream_id=stream_id)
        self._channel = FrameChannel()
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
        self.stats.set_state(STOPPED)
        self._channel.finish()

    def frames(self):
        """Sampled frames, the newest served first, until the stream ends or is stopped."""
        return self._channel.items()

    def status(self) -> dict:
        return {"id": self.stream_id, "url": self.safe_url, **self.stats.snapshot()}

    # --- reader thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(self.settings, self.stats)
        first, clean_end = True, False
        try:
            while not self._stop.is_set():
                if not first and not clean_end:  # a file looping round is not a reconnect
                    self.stats.restart_attempted(time.time())
                first, clean_end = False, False
                try:
                    self._read_once()
                    if self._stop.is_set():
                        return
                    if not self.is_live and not self.settings.loop:
                        self.stats.set_state(ENDED, "closed", "end of file")
                        return
                    backoff.reset()  # a clean session resets the backoff
                    if not self.is_live:
                        clean_end = True
                        continue  # loop the file at once
                    failure = SourceFailure("closed", "the server ended the session")
                except SourceFailure as error:
                    failure = error
                    if not self.is_live and failure.reason != "stall":
                        self.stats.set_state(ERROR, failure.reason, str(failure))
                        self.log.error("stream failed", reason=failure.reason, error=str(failure))
                        return
                fatal = failure.reason in FATAL_REASONS
                self.stats.set_state(ERROR if fatal else RECONNECTING, failure.reason, str(failure))
                delay = backoff.delay(failure.reason)
                self.log.warning("reconnecting", reason=failure.reason, error=str(failure), in_s=round(delay, 2))
                self._stop.wait(delay)
        except Exception as e:  # a bug, not a stream failure: say so, the supervisor shows the stream in error
            self.stats.set_state(ERROR, "internal", redact(f"{type(e).__name__}: {e}"))
            self.log.exception("reader failed")
        finally:
            self._post(self._channel.finish)

    def _post(self, callback, *args) -> None:
        """Run `callback` on the event loop (the only place the channel is touched)."""
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _open(self):
        s = self.settings
        options, read_timeout, open_bound = {}, s.stall_timeout_s, s.open_timeout_s
        if self.url.lower().startswith(("rtsp://", "rtsps://")):
            # FFmpeg's socket timeout bounds every connect and read. PyAV's own read timeout is then left
            # off: it takes the GIL on each of the hundreds of socket polls a second, per stream.
            # Probing stops after `probe_s` (FFmpeg waits up to 5 s to guess the frame rate, which a live source
            # does not need: the first frame comes 0.6 s after connecting instead of 2.8 s on a 10 fps camera).
            options = {"rtsp_transport": s.transport, "timeout": str(int(s.stall_timeout_s * 1e6)),
                       "analyzeduration": str(int(s.probe_s * 1e6)), "probesize": str(PROBE_BYTES)}
            read_timeout, open_bound = None, min(s.open_timeout_s, s.stall_timeout_s)
        elif self.url.lower().startswith(("rtmp://", "rtmps://")):
            # A live RTMP stream is probed for 5 s by default: longer than a short open timeout, which then cut
            # every open and reconnected the stream every few seconds. Bounded as for RTSP.
            options = {"analyzeduration": str(int(s.probe_s * 1e6)), "probesize": str(PROBE_BYTES)}
        started = time.monotonic()
        try:
            return av.open(self.url, options=options, timeout=(s.open_timeout_s, read_timeout))
        except Exception as e:  # PyAV raises a zoo of FFmpegError/OSError subclasses; classify them all
            failure = classify(e, self.url)
            if failure.reason == "protocol" and time.monotonic() - started >= 0.9 * open_bound:
                # A server that accepts and never answers surfaces as "invalid data" once the timeout hits.
                failure = SourceFailure("timeout", f"timeout: no answer within {open_bound:.1f} s ({failure})")
            raise failure from None

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
                raise self._stalled(f"no data for {self.settings.stall_timeout_s:.1f} s") from None
            raise failure from None
        finally:
            container.close()

    def _stalled(self, detail: str) -> SourceFailure:
        self.stats.count("stalls")
        self.stats.set_state(STALLED, "stall", detail)
        self.log.warning("stream stalled", detail=detail)
        return SourceFailure("stall", f"stall: {detail}")

    def _decode(self, container, stream) -> None:
        paced = not self.is_live and self.settings.realtime
        wall_start = media_start = None
        sampler = RateSampler(self.settings.sample_fps)
        stall_s = self.settings.stall_timeout_s
        last_frame = last_packet = time.monotonic()
        keyframes_only = self.settings.mode == "keyframes"
        for packet in container.demux(stream):
            if self._stop.is_set():
                return
            arrived = time.monotonic()
            if self.is_live and arrived - last_packet >= SILENCE_SHARE * stall_s:
                # FFmpeg's read timed out and it handed over what it had buffered before the silence: report the
                # stall now (not at the next timeout), and never decode that stale packet as a fresh frame.
                raise self._stalled(f"no data for {arrived - last_packet:.1f} s")
            last_packet = arrived
            self.stats.data_arrived()
            if keyframes_only and not packet.is_keyframe and packet.size:
                # Read (so the session never backs up) but not decoded: the decoder would skip it anyway.
                # With keyframes seconds apart, arriving packets are what proves the stream alive.
                last_frame = arrived
                continue
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                self.stats.drop("decode_error")  # a corrupt packet: skip it, keep the session
                continue
            for frame in frames:
                now = time.time()
                self.stats.decoded(now)
                last_frame = time.monotonic()
                if self.state != RUNNING:
                    if self._sessions:  # a session came back after a loss
                        self.stats.count("reconnects")
                    self._sessions += 1
                    self.stats.set_state(RUNNING)
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
                    self.stats.count("frames_emitted")
                    self._post(self._deliver, to_frame(self.stream_id, next(self._seq), frame, now))
            if arrived - last_frame > stall_s:
                raise self._stalled("packets arrive but no frame decodes")

    def _deliver(self, frame: Frame) -> None:
        if self._channel.put(frame):  # the consumer had not taken the previous frame: the newest wins
            self.stats.drop("stale")
