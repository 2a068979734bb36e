"""What every source shares: the `Source` protocol, states and reasons, failure classification, settings,
and the counters a reader thread writes while the event loop reads them."""

from __future__ import annotations

import errno
import random
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ..contracts import Frame, SessionEnded
from ..logs import get
from ..redact import redact

log = get(__name__)


class StreamState(StrEnum):
    """A source's state, as `/streams`, the console and the stream-state hash show it (plain strings there)."""

    STARTING = "starting"  # opening, or a publisher negotiating
    RUNNING = "running"  # frames arrive
    STALLED = "stalled"  # connected, no data for stall_timeout_s
    RECONNECTING = "reconnecting"  # lost; trying again after a backoff
    ENDED = "ended"  # a file's end, or a publisher's session ended
    ERROR = "error"  # failed: fatal reasons retry only after backoff_fatal_s
    STOPPED = "stopped"  # removed or the daemon stops: final
    WAITING = "waiting_for_publisher"  # a pushed stream with no publisher


STARTING, RUNNING, STALLED, RECONNECTING, ENDED, ERROR, STOPPED, WAITING = StreamState
STATES = tuple(StreamState)
_NOT_WAITING = {STARTING, RUNNING, STALLED, RECONNECTING, ERROR, ENDED, STOPPED}
# Where each state may go. STOPPED is final; only a pushed stream waits for a publisher; a stall is a state of a
# connected stream, never of one waiting or ended.
TRANSITIONS: dict[StreamState, frozenset[StreamState]] = {
    STARTING: frozenset(_NOT_WAITING | {WAITING}),
    WAITING: frozenset({STARTING, RUNNING, ENDED, STOPPED}),
    RUNNING: frozenset(_NOT_WAITING | {WAITING}),
    STALLED: frozenset({RUNNING, RECONNECTING, ERROR, ENDED, STOPPED}),
    RECONNECTING: frozenset(_NOT_WAITING),
    ERROR: frozenset(_NOT_WAITING),
    ENDED: frozenset({STARTING, RUNNING, ENDED, STOPPED, WAITING}),
    STOPPED: frozenset({STOPPED}),
}
FPS_WINDOW_S = 5.0
REASONS = ("auth", "not_found", "dns", "not_video", "timeout", "refused", "codec", "protocol", "stall", "closed",
           "media_timeout", "replaced", "stopped", "internal")


class Source(Protocol):
    """A stream's frames. Implementations: `PyAVSource` (RTSP, files, HTTP...), `WhipSource` (WebRTC push).

    `frames()` yields sampled frames (the newest wins when the consumer is slow) and a `SessionEnded` marker
    when a publisher's session ends (its tracks and alerts end with it); it returns when the source has
    finished for good (stopped, a file's end, a fatal error). `status()` is safe to call from the event loop
    at any time. `busy`: a publisher is connected (a cluster rebalance must not cut it). `update_sampling` applies
    a new sampling in place and says so; False: the source must be restarted to apply it."""

    stream_id: str

    @property
    def busy(self) -> bool: ...

    def start(self) -> None: ...

    def frames(self) -> AsyncIterator[Frame | SessionEnded]: ...

    def status(self) -> dict: ...

    def update_sampling(self, settings: SourceSettings) -> bool: ...

    async def stop(self) -> None: ...


class SourceSettings(BaseModel):
    """How one stream is read and sampled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_fps: float = Field(2.0, gt=0, le=120, description="frames per second handed to face detection")
    mode: Literal["full", "keyframes"] = Field("full", description="keyframes: decode only keyframes (cheap)")
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport")
    open_timeout_s: float = Field(10.0, gt=0, description="bound on connecting and opening")
    stall_timeout_s: float = Field(5.0, gt=0, description="no data or no frame for this long: restart the stream")
    decoder_threads: int = Field(1, ge=1, le=4, description="decoder threads per stream")
    probe_s: float = Field(0.5, gt=0, le=10, description="RTSP, RTMP: how long FFmpeg may probe the stream when opening "
                           "(longer only for streams whose format it cannot tell quickly)")
    backoff_initial_s: float = Field(0.5, gt=0, description="first reconnect delay")
    backoff_max_s: float = Field(30.0, gt=0, description="reconnect delay cap")
    backoff_fatal_s: float = Field(120.0, gt=0, description="delay after auth / not-found failures")
    restarts_per_minute: int = Field(12, ge=1, description="restart-rate limit")
    realtime: bool = Field(True, description="files: play at their own pace (false: as fast as possible)")
    loop: bool = Field(False, description="files: start again at the end")


class SourceFailure(Exception):
    """A classified failure; the message is already redacted."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def classify(error: BaseException, url: str) -> SourceFailure:
    """Map PyAV/FFmpeg/OS errors to a reason, with a message that never holds credentials."""
    import av

    if isinstance(error, SourceFailure):
        return error
    text = str(error)
    if isinstance(error, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)) or " 401 " in text:
        reason = "auth"
    elif isinstance(error, (av.error.HTTPNotFoundError, FileNotFoundError)) or " 404 " in text:
        reason = "not_found"
    elif isinstance(error, ConnectionRefusedError) or getattr(error, "errno", None) == errno.ECONNREFUSED:
        reason = "refused"
    elif isinstance(error, (TimeoutError, av.error.ExitError)) or getattr(error, "errno", None) == errno.ETIMEDOUT:
        reason = "timeout"
    elif isinstance(error, (av.error.DecoderNotFoundError, av.error.PatchWelcomeError)):
        reason = "codec"
    elif (unresolved := unresolvable_host(url)) is not None:
        # FFmpeg says only "Input/output error" when the host name does not resolve.
        return SourceFailure("dns", redact(f"dns: the host name {unresolved!r} does not resolve ({text})"))
    elif isinstance(error, av.error.InvalidDataError) and is_local(url):
        return SourceFailure("not_video", redact(f"not_video: {local_path(url)} is not a video FFmpeg can read "
                                                 f"({error.strerror or text})"))
    else:
        reason = "protocol"
    return SourceFailure(reason, redact(f"{reason}: {type(error).__name__}: {text}"))


def is_local(url: str) -> bool:
    """A file path or file:// URL (not `whip`, which names no file)."""
    return url != "whip" and ("://" not in url or url.lower().startswith("file://"))


def local_path(url: str) -> str:
    return url[len("file://"):] if url.lower().startswith("file://") else url


def unresolvable_host(url: str) -> str | None:
    """The URL's host name when it does not resolve (asked only after a failure), else None."""
    import socket
    from urllib.parse import urlsplit

    if is_local(url):
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror:
        return host
    except OSError:
        return None
    return None


class SourceStats:
    """A source's state and counters. The reader thread writes them while the event loop reads them (for
    /metrics, /streams and the watchdog), so every change and every read holds one lock, and readers get
    copies: no code on the loop iterates a structure the reader is changing."""

    def __init__(self, stall_after_s: float | None = None):
        self._lock = threading.Lock()
        self.state, self.reason, self.detail = STARTING, None, ""
        self.frames_decoded = self.frames_emitted = 0
        self.reconnects = 0  # sessions re-established after a loss
        self.reconnect_attempts = 0
        self.stalls = 0
        self.dropped: Counter = Counter()  # reason -> count
        self.last_frame_at: float | None = None  # wall clock
        self.last_data_at: float | None = None  # monotonic: the newest packet (or frame) that arrived
        self.expected_fps: float | None = None
        self.stall_after_s = stall_after_s  # RUNNING with no data this long shows as stalled, whatever the reader
        self._recent_decodes: deque[float] = deque(maxlen=4096)  # the last FPS_WINDOW_S seconds of decodes
        self._recent_restarts: deque[float] = deque(maxlen=64)

    # --- written by the reader ---------------------------------------------------------------------------

    def set_state(self, state: StreamState, reason: str | None = None, detail: str = "") -> None:
        with self._lock:
            if state not in TRANSITIONS[StreamState(self.state)]:  # a bug: said, never fatal to the stream
                log.error("impossible stream state change", state=self.state, to=state, reason=reason)
            if state == RUNNING:
                reason, detail = None, ""
            elif reason is None:
                reason, detail = self.reason, detail or self.detail
            self.state, self.reason, self.detail = state, reason, detail

    def decoded(self, now: float) -> None:
        with self._lock:
            self.frames_decoded += 1
            self.last_frame_at = now
            recent = self._recent_decodes
            recent.append(now)
            while now - recent[0] > FPS_WINDOW_S:
                recent.popleft()
        self.last_data_at = time.monotonic()

    def data_arrived(self) -> None:
        """A packet arrived (it may not decode into a frame yet); one float store, no lock needed."""
        self.last_data_at = time.monotonic()

    def count(self, counter: str, n: int = 1) -> None:
        """frames_emitted, reconnects or stalls."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + n)

    def drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.dropped[reason] += n

    def restart_attempted(self, now: float) -> None:
        with self._lock:
            self.reconnect_attempts += 1
            self._recent_restarts.append(now)

    # --- read by anyone ----------------------------------------------------------------------------------

    def restarts_within(self, seconds: float, now: float) -> int:
        with self._lock:
            return sum(1 for t in self._recent_restarts if now - t <= seconds)

    def fps(self, now: float | None = None) -> float:
        with self._lock:
            recent = list(self._recent_decodes)
        return _fps(recent, time.time() if now is None else now)

    def snapshot(self, now: float | None = None) -> dict:
        """State and counters as one consistent copy."""
        now = time.time() if now is None else now
        with self._lock:
            state, reason, detail = self.state, self.reason, self.detail
            decodes, restarts = list(self._recent_decodes), list(self._recent_restarts)
            snapshot = {
                "frames_decoded": self.frames_decoded, "frames_emitted": self.frames_emitted,
                "dropped": dict(self.dropped), "reconnects": self.reconnects,
                "reconnect_attempts": self.reconnect_attempts, "stalls": self.stalls,
            }
            last_frame_at, expected = self.last_frame_at, self.expected_fps
        silent = None if self.last_data_at is None else time.monotonic() - self.last_data_at
        if state == RUNNING and self.stall_after_s and silent is not None and silent > self.stall_after_s:
            # The reader did not notice yet (a call that ignores its timeout): say what is true.
            state, reason, detail = STALLED, "stall", f"no data for {silent:.1f} s"
        fps = _fps(decodes, now)
        recent_restarts = sum(1 for t in restarts if now - t <= 300)
        return {
            "state": state, "reason": reason, "detail": detail, **snapshot, "fps": round(fps, 2),
            "seconds_since_frame": None if last_frame_at is None else round(now - last_frame_at, 3),
            "connection_quality": _quality(state, fps, expected, recent_restarts, snapshot["dropped"]),
        }


def _fps(decodes: list[float], now: float) -> float:
    """Frames per second over the last FPS_WINDOW_S: robust to frames that arrive in bursts (WebRTC's jitter
    buffer releases several at once)."""
    recent = [t for t in decodes if now - t <= FPS_WINDOW_S]
    if len(recent) < 2:
        return 0.0
    return len(recent) / max(now - recent[0], recent[-1] - recent[0], 1e-3)


def _quality(state: str, fps: float, expected: float | None, restarts_5min: int, dropped: dict) -> str:
    """Frigate-style summary: good, degraded, poor, down (or unknown before the first frame)."""
    if state != RUNNING:
        return "unknown" if state in (STARTING, ENDED, WAITING) else "down"
    if restarts_5min >= 3 or (expected and fps < 0.5 * expected):
        return "poor"
    if restarts_5min >= 1 or (expected and fps < 0.8 * expected) or dropped.get("decode_error", 0):
        return "degraded"
    return "good"


class StatsState:
    """`state` and `reason` of a source that keeps them in its `SourceStats` (every source does), and the
    defaults of a source that opens its own connection: never busy, restarted for a new sampling."""

    stats: SourceStats

    @property
    def busy(self) -> bool:
        return False

    def update_sampling(self, settings: SourceSettings) -> bool:
        return False

    @property
    def state(self) -> str:
        return self.stats.state

    @property
    def reason(self) -> str | None:
        return self.stats.reason


FATAL_REASONS = ("auth", "not_found", "dns", "not_video")  # no: retrying soon would only hammer it


class Backoff:
    """When to try again after a failure: capped exponential backoff with ±20 % jitter (cameras behind one
    gateway do not retry in step), `backoff_fatal_s` after auth / not-found, and a restart-rate limit.
    Shared by every reconnecting source, whatever its protocol."""

    def __init__(self, settings: SourceSettings, stats: SourceStats):
        self.settings, self.stats = settings, stats
        self._next = settings.backoff_initial_s

    def reset(self) -> None:
        """A session worked: the next failure starts from the initial delay again."""
        self._next = self.settings.backoff_initial_s

    def delay(self, reason: str, now: float | None = None) -> float:
        """The wait before the next attempt after a failure for `reason`."""
        s = self.settings
        if reason in FATAL_REASONS:
            self._next = max(self._next, s.backoff_fatal_s)
        delay = self._next * random.uniform(0.8, 1.2)
        if self.stats.restarts_within(60, time.time() if now is None else now) >= s.restarts_per_minute:
            delay = max(delay, 60.0 / s.restarts_per_minute * 2)
        cap = max(s.backoff_max_s, s.backoff_fatal_s if reason in FATAL_REASONS else 0.0)
        self._next = min(self._next * 2, cap)
        return delay
