"""Stream states, counters, failure classification and the source settings shared by every source."""

from __future__ import annotations

import errno
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..redact import redact

STARTING, RUNNING, STALLED, RECONNECTING, ENDED, ERROR, STOPPED = (
    "starting", "running", "stalled", "reconnecting", "ended", "error", "stopped")
STATES = (STARTING, RUNNING, STALLED, RECONNECTING, ENDED, ERROR, STOPPED)
REASONS = ("auth", "not_found", "timeout", "refused", "codec", "protocol", "stall", "closed")


class SourceSettings(BaseModel):
    """How one stream is read and sampled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_fps: float = Field(2.0, gt=0, le=120, description="frames per second handed to face detection")
    mode: Literal["full", "keyframes"] = Field("full", description="keyframes: decode only keyframes (cheap)")
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport")
    open_timeout_s: float = Field(10.0, gt=0, description="bound on connecting and opening")
    stall_timeout_s: float = Field(5.0, gt=0, description="no data or no frame for this long: restart the stream")
    decoder_threads: int = Field(1, ge=1, le=4, description="decoder threads per stream")
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
    else:
        reason = "protocol"
    return SourceFailure(reason, redact(f"{reason}: {type(error).__name__}: {text}"))


@dataclass
class SourceStats:
    frames_decoded: int = 0
    frames_emitted: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    reconnects: int = 0  # sessions re-established after a loss
    reconnect_attempts: int = 0
    stalls: int = 0
    last_frame_at: float | None = None  # wall clock
    expected_fps: float | None = None
    _recent_decodes: deque = field(default_factory=lambda: deque(maxlen=64))
    _recent_restarts: deque = field(default_factory=lambda: deque(maxlen=64))

    def decoded(self, now: float) -> None:
        self.frames_decoded += 1
        self.last_frame_at = now
        self._recent_decodes.append(now)

    def restarted(self, now: float) -> None:
        self._recent_restarts.append(now)

    def fps(self, now: float) -> float:
        recent = [t for t in self._recent_decodes if now - t <= 5.0]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(1e-6, recent[-1] - recent[0])

    def restarts_within(self, seconds: float, now: float) -> int:
        return sum(1 for t in self._recent_restarts if now - t <= seconds)

    def quality(self, state: str, now: float) -> str:
        """Frigate-style summary: good, degraded, poor or down."""
        if state not in (RUNNING,):
            return "down" if state not in (STARTING, ENDED) else "unknown"
        fps, expected = self.fps(now), self.expected_fps
        restarts = self.restarts_within(300, now)
        if restarts >= 3 or (expected and fps < 0.5 * expected):
            return "poor"
        if restarts >= 1 or (expected and fps < 0.8 * expected) or self.dropped.get("decode_error", 0):
            return "degraded"
        return "good"

    def snapshot(self, state: str, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        return {
            "frames_decoded": self.frames_decoded, "frames_emitted": self.frames_emitted,
            "dropped": dict(self.dropped), "reconnects": self.reconnects,
            "reconnect_attempts": self.reconnect_attempts, "stalls": self.stalls,
            "fps": round(self.fps(now), 2),
            "seconds_since_frame": None if self.last_frame_at is None else round(now - self.last_frame_at, 3),
            "connection_quality": self.quality(state, now),
        }
