"""Synthetic score traces with known statistics, written as the CSV `monitor record export` writes.

Authentic tracks: p_fake = sigmoid(mu + x_t), x an AR(1) process (consecutive crops of a face are correlated,
as on real footage); fake tracks are the same shifted by `shift` in logit space. Each track lasts `track_s` at
`fps`; tracks of a stream are separated by gaps longer than the calibration's MAX_GAP_S, so a stream's hours
are exactly the sum of its tracks' spans.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLUMNS = ["stream_id", "session", "track_id", "frame_time", "evaluated_at", "p_fake", "model_id", "label"]


@dataclass(frozen=True)
class TraceSpec:
    hours: float
    streams: int = 3
    track_s: float = 120.0
    fps: float = 2.0
    mu: float = -3.0
    sigma: float = 1.2  # stationary spread of x
    phi: float = 0.9  # correlation of consecutive crops
    gap_s: float = 300.0
    start: float = 1_790_000_000.0


def tracks(spec: TraceSpec, label: str = "real", shift: float = 0.0, seed: int = 0, count: int | None = None):
    """(stream_id, track_id, frame_times, p_fake) per track; `count` tracks, else enough for `spec.hours`."""
    rng = np.random.default_rng(seed)
    n = count if count is not None else max(1, round(spec.hours * 3600 / spec.track_s))
    samples = int(spec.track_s * spec.fps) + 1  # spans exactly track_s
    innovation = spec.sigma * math.sqrt(1 - spec.phi ** 2)
    clocks = [spec.start] * spec.streams
    for index in range(n):
        stream = index % spec.streams
        x = np.empty(samples)
        x[0] = rng.normal(0, spec.sigma)
        for i in range(1, samples):
            x[i] = spec.phi * x[i - 1] + rng.normal(0, innovation)
        p = 1 / (1 + np.exp(-(spec.mu + shift + x)))
        times = clocks[stream] + np.arange(samples) / spec.fps
        clocks[stream] = times[-1] + spec.gap_s
        yield f"cam-{stream}", f"{label}-{index}", times, p


def write(path: Path, spec: TraceSpec, fake_tracks: int = 0, shift: float = 4.0, seed: int = 0,
          append: bool = False) -> float:
    """Write authentic tracks for `spec.hours` (and `fake_tracks` shifted ones); returns the authentic hours."""
    hours = 0.0
    with open(path, "a" if append else "w", newline="") as f:
        writer = csv.writer(f)
        if not append:
            writer.writerow(COLUMNS)
        runs = [("real", tracks(spec, "real", 0.0, seed))]
        if fake_tracks:
            fake_spec = TraceSpec(**{**spec.__dict__, "start": spec.start + spec.hours * 3600 * 2 + 86400})
            runs.append(("fake", tracks(fake_spec, "fake", shift, seed + 1, fake_tracks)))
        for label, generated in runs:
            for stream, track, times, p in generated:
                if label == "real":
                    hours += (times[-1] - times[0]) / 3600
                for t, value in zip(times, p):
                    writer.writerow([stream, "1", track, f"{t:.3f}", f"{t + 0.05:.3f}", f"{value:.6f}", "synthetic",
                                     label])
    return hours
