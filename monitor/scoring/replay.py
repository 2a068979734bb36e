"""Recorded scores through the daemon's own judge: the same `TrackJudge` the pipeline runs, fed the recorded
frame times, p_fake and evaluation times. What comes out is the alerts the daemon would have raised at given
thresholds, which is what calibration counts."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ..contracts import ModelTag
from .judge import TrackJudge
from .verdict import MANIPULATED, VerdictPolicy
from .window import TrackWindow, WindowPolicy

TAG = ModelTag("replay", "replay")


@dataclass(frozen=True)
class Sample:
    frame_time: float
    evaluated_at: float  # when the daemon evaluated the window after scoring this crop
    p_fake: float


@dataclass
class Track:
    stream_id: str
    key: str  # stream/session/track: unique across daemon restarts
    samples: list[Sample]
    label: str = "real"

    @property
    def first_frame(self) -> float:
        return self.samples[0].frame_time


@dataclass(frozen=True)
class ReplayedAlert:
    stream_id: str
    track: str
    opened_at: float
    closed_at: float | None
    close_reason: str | None
    peak_verdict: str
    first_frame: float  # of the track: for time-to-alert on fake footage


def replay(track: Track, window: WindowPolicy, policy: VerdictPolicy, track_end_s: float = math.inf
           ) -> list[ReplayedAlert]:
    """The alerts one track raises. An alert still open after the last sample closes `track_end_s` later
    (the tracker's max absence; infinite: left open)."""
    judge = TrackJudge(track.stream_id, 0, window, policy, TAG, "replay", update_interval_s=0.0)
    alerts, opened, peak = [], None, None
    for sample in track.samples:
        event = judge.score(sample.frame_time, sample.p_fake, sample.evaluated_at).event
        if event is None:
            continue
        if event.type == "opened":
            opened = event
        elif event.type == "closed":
            alerts.append(ReplayedAlert(track.stream_id, track.key, opened.times["opened_at"], event.times["scored_at"],
                                        "recovered", event.peak_verdict, track.first_frame))
            opened = None
        peak = event.peak_verdict
    if opened is not None:
        end = track.samples[-1].evaluated_at + track_end_s
        alerts.append(ReplayedAlert(track.stream_id, track.key, opened.times["opened_at"],
                                    end if math.isfinite(end) else None, "track_ended" if math.isfinite(end) else None,
                                    peak, track.first_frame))
    return alerts


def replay_all(tracks: Iterable[Track], window: WindowPolicy, policy: VerdictPolicy,
               track_end_s: float = math.inf) -> list[ReplayedAlert]:
    return [alert for track in tracks for alert in replay(track, window, policy, track_end_s)]


def count(tracks: list[Track], window: WindowPolicy, policy: VerdictPolicy, level: str = "any") -> int:
    """Alerts opened (`any`), or those that reached manipulated (`manipulated`)."""
    alerts = replay_all(tracks, window, policy)
    return len(alerts) if level == "any" else sum(1 for a in alerts if a.peak_verdict == MANIPULATED)


def window_statistics(tracks: list[Track], window: WindowPolicy) -> list[float]:
    """Every evaluation's window statistic (they do not depend on the thresholds)."""
    values = []
    for track in tracks:
        track_window = TrackWindow(window)
        for sample in track.samples:
            track_window.add(sample.frame_time, sample.p_fake)
            stats = track_window.stats(sample.evaluated_at)
            if stats.value is not None and stats.crops >= window.min_crops:
                values.append(stats.value)
    return values
