"""One face track from scores to verdicts and alert events: the one code path the daemon, a shadow model and
calibration's replay all run.

The judge holds the track's sliding window, its verdict state (persistence and hysteresis) and its alert
lifecycle. It is pure: every call is given the time, and it returns what to publish instead of publishing it, so
"replay equals live" holds by construction. The pipeline only executes what it is told (vLLM's scheduler and
engine split: the plan is computed, the caller acts on it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..contracts import ModelTag
from .lifecycle import AlertEvent, AlertLifecycle
from .verdict import INSUFFICIENT, VerdictPolicy, VerdictState, step
from .window import TrackWindow, WindowPolicy, WindowStats


@dataclass(frozen=True)
class Judgement:
    """One evaluation of a track: its verdict, the window behind it, and the alert event to publish (if any)."""

    verdict: str
    stats: WindowStats
    event: AlertEvent | None = None


class TrackJudge:
    """Window -> verdict step -> alert lifecycle for one track. `alerts=False` (a shadow model): verdicts only,
    never an event."""

    def __init__(self, stream_id: str, track_id: int, window: WindowPolicy, policy: VerdictPolicy, model: ModelTag,
                 instance: str, update_interval_s: float = 5.0, alerts: bool = True):
        self.policy = policy
        self.window = TrackWindow(window)  # holds the window policy
        self.state = VerdictState()
        self.statistic: float | None = None
        self.abstain_reason: str | None = None  # why the monitor cannot judge this face (insufficient_evidence)
        self.lifecycle = (AlertLifecycle(stream_id, track_id, window, policy, model, instance, update_interval_s)
                          if alerts else None)

    @property
    def verdict(self) -> str:
        return self.state.verdict

    @property
    def alert_id(self) -> str | None:
        return self.lifecycle.alert_id if self.lifecycle is not None else None

    @property
    def alert_open(self) -> bool:
        return self.lifecycle is not None and self.lifecycle.open

    def score(self, frame_time: float, p_fake: float, now: float) -> Judgement:
        """A crop of this track was scored: into the window, then judged."""
        self.window.add(frame_time, p_fake)
        return self.evaluate(now)

    def dropped(self, frame_time: float, reason: str) -> None:
        """The worker dropped a crop of this track (stale, queue_full, ...): counted in the window, not judged
        (the next score is)."""
        self.window.skip(frame_time, reason)

    def abstain(self, frame_time: float, reason: str, now: float) -> Judgement:
        """A face seen but not fit to judge (low quality, ...): counted, then judged, so the track can say why it
        abstains."""
        self.window.skip(frame_time, reason)
        return self.evaluate(now)

    def evaluate(self, now: float) -> Judgement:
        stats = self.window.stats(now)
        self.statistic = stats.value
        self.state = step(self.state, stats.value, stats.crops >= self.window.policy.min_crops, now, self.policy,
                          faces_seen=bool(stats.skipped))
        self.abstain_reason = stats.abstain_reason if self.state.verdict == INSUFFICIENT else None
        event = self.lifecycle.observe(self.state.verdict, stats, now) if self.lifecycle is not None else None
        return Judgement(self.state.verdict, stats, event)

    def end(self, reason: str, now: float) -> AlertEvent | None:
        """The track, its stream or the daemon ended: the open alert's `closed` event, if one is open."""
        if self.lifecycle is None:
            return None
        return self.lifecycle.end(reason, self.window.stats(now), now)

    def reconfigure(self, window: WindowPolicy, policy: VerdictPolicy, update_interval_s: float) -> None:
        """New thresholds and windows (a reload): they apply from the next evaluation; an open alert stays open and
        its next events carry the new values."""
        self.policy = policy
        self.window.policy = window
        if self.lifecycle is not None:
            self.lifecycle.window, self.lifecycle.policy = window, policy
            self.lifecycle.update_interval_s = update_interval_s
