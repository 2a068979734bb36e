"""Frame sampling shared by every source: a rate limiter on a clock, and decoded frame -> Frame record."""

from __future__ import annotations

from ..contracts import Frame


class RateSampler:
    """Says whether a frame arriving at `clock` is due, at `fps` frames per clock-second. After a gap longer
    than one period the schedule restarts from now instead of bursting to catch up."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps
        self._next: float | None = None

    def due(self, clock: float) -> bool:
        if self._next is not None and clock < self._next:
            return False
        late = self._next is None or clock - self._next > self.period
        self._next = clock + self.period if late else self._next + self.period
        return True


def to_frame(stream_id: str, seq: int, frame, captured_at: float) -> Frame:
    """A decoded PyAV/aiortc video frame as a Frame (converted to RGB: only sampled frames pay for it)."""
    pts = float(frame.time) if frame.time is not None else None
    return Frame(stream_id, seq, captured_at, pts, frame.to_ndarray(format="rgb24"), bool(frame.key_frame))
