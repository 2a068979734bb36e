"""Sliding windows of crop scores for one face track: by time and by count, with skip counts."""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, deque
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class WindowPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: float = Field(10.0, gt=0, description="crops older than this (by frame time) leave the window")
    max_crops: int = Field(32, ge=1, description="at most this many newest crops are kept")
    statistic: Literal["mean", "median"] = Field("mean", description="mean is the paper's video score")
    min_crops: int = Field(4, ge=1, description="fewer scored crops in the window: insufficient_evidence")


@dataclass(frozen=True)
class WindowStats:
    value: float | None  # the statistic, None when the window is empty
    crops: int
    first_frame: float | None
    last_frame: float | None
    skipped: dict[str, int]

    @property
    def span_s(self) -> float:
        return (self.last_frame - self.first_frame) if self.crops else 0.0

    @property
    def abstain_reason(self) -> str | None:
        """The commonest reason crops of the window were skipped (why the monitor cannot judge), or None."""
        return max(self.skipped, key=self.skipped.get) if self.skipped else None


class TrackWindow:
    def __init__(self, policy: WindowPolicy):
        self.policy = policy
        self._scores: deque[tuple[float, float]] = deque()  # (frame_time, p_fake), frame order
        self._skips: deque[tuple[float, str]] = deque()

    def add(self, frame_time: float, p_fake: float) -> None:
        # Kept in frame order even when crops are scored out of it (several devices finish batches in any
        # order), so that ageing out from the left is right and max_crops keeps the newest frames.
        if self._scores and frame_time < self._scores[-1][0]:
            bisect.insort(self._scores, (frame_time, p_fake), key=lambda s: s[0])
        else:
            self._scores.append((frame_time, p_fake))
        while len(self._scores) > self.policy.max_crops:
            self._scores.popleft()

    def skip(self, frame_time: float, reason: str) -> None:
        self._skips.append((frame_time, reason))

    def stats(self, now: float) -> WindowStats:
        """Statistic over crops whose frame is at most `policy.seconds` old at `now`."""
        horizon = now - self.policy.seconds
        while self._scores and self._scores[0][0] < horizon:
            self._scores.popleft()
        while self._skips and self._skips[0][0] < horizon:
            self._skips.popleft()
        values = [p for _, p in self._scores]
        skipped = dict(Counter(reason for _, reason in self._skips))
        if not values:
            return WindowStats(None, 0, None, None, skipped)
        value = statistics.fmean(values) if self.policy.statistic == "mean" else statistics.median(values)
        return WindowStats(value, len(values), self._scores[0][0], self._scores[-1][0], skipped)
