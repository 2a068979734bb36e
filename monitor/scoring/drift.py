"""Score drift per stream: has what authentic footage scores moved since the thresholds were calibrated?

Each stream keeps a histogram of the p_fake of crops whose track was judged authentic, one per hour (kept in
Redis, so a restart forgets nothing), and compares the median of the last `window_h` hours with the baseline
`monitor calibrate` measured. A move beyond `threshold` raises one `drift` event (schema
`deepfake-monitor/drift/v1`): the camera, the encoder or the light changed, and the thresholds may no longer
hold. It raises again only after the median came back within half the threshold.
"""

from __future__ import annotations

import time
import uuid

BINS = 100
SCHEMA = "deepfake-monitor/drift/v1"


class DriftTracker:
    def __init__(self, stream_id: str, baseline: float, settings, instance: str):
        self.stream_id, self.baseline, self.settings, self.instance = stream_id, baseline, settings, instance
        self.hours: dict[int, list[int]] = {}
        self.dirty: set[int] = set()  # hours changed since they were last written
        self.drifting = False
        self.last_check = 0.0

    def add(self, p_fake: float, at: float) -> None:
        hour = int(at // 3600)
        counts = self.hours.setdefault(hour, [0] * BINS)
        counts[min(BINS - 1, int(p_fake * BINS))] += 1
        self.dirty.add(hour)

    def load(self, stored: dict[int, list[int]]) -> None:
        """Hours recorded before a restart (ours win where both exist)."""
        for hour, counts in stored.items():
            self.hours.setdefault(hour, list(counts))

    def median(self, now: float) -> tuple[float | None, int]:
        first = int((now - self.settings.window_h * 3600) // 3600)
        total = [0] * BINS
        for hour, counts in list(self.hours.items()):
            if hour < first:
                del self.hours[hour]
                continue
            total = [a + b for a, b in zip(total, counts)]
        n = sum(total)
        if not n:
            return None, 0
        seen = 0
        for index, c in enumerate(total):
            seen += c
            if seen * 2 >= n:
                return (index + 0.5) / BINS, n
        return None, n

    def check(self, now: float | None = None) -> dict | None:
        """A drift event when the median has just moved beyond the threshold; else None."""
        now = time.time() if now is None else now
        self.last_check = now
        median, crops = self.median(now)
        if median is None or crops < self.settings.min_crops:
            return None
        shift = median - self.baseline
        if self.drifting:
            if abs(shift) <= self.settings.threshold / 2:
                self.drifting = False  # back: a later move raises again
            return None
        if abs(shift) <= self.settings.threshold:
            return None
        self.drifting = True
        return {"schema": SCHEMA, "event_id": uuid.uuid4().hex, "type": "drift", "alert_id": None, "seq": 0,
                "stream_id": self.stream_id, "baseline": round(self.baseline, 4), "median": round(median, 4),
                "shift": round(shift, 4), "threshold": self.settings.threshold, "window_h": self.settings.window_h,
                "crops": crops, "instance": self.instance, "times": {"detected_at": now}}

    def shift(self, now: float | None = None) -> float | None:
        median, crops = self.median(time.time() if now is None else now)
        return None if median is None or crops < self.settings.min_crops else median - self.baseline
