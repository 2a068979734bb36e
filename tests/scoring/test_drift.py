"""The drift watch on its own: one event when authentic scores move away from the baseline, none while they
stay, another only after they came back; histograms survive a restart."""

import numpy as np

from monitor.config import DriftSettings
from monitor.scoring.drift import SCHEMA, DriftTracker

SETTINGS = DriftSettings(enabled=True, threshold=0.1, window_h=2, min_crops=100, check_every_s=1)
T0 = 1_790_000_000.0


def feed(tracker, scores, start, step=1.0):
    events = []
    for i, p in enumerate(scores):
        tracker.add(float(p), start + i * step)
        if i % 50 == 0:
            event = tracker.check(start + i * step)
            if event:
                events.append(event)
    return events, start + len(scores) * step


def test_one_event_per_excursion():
    rng = np.random.default_rng(0)
    tracker = DriftTracker("cam", 0.30, SETTINGS, "host-a")
    events, t = feed(tracker, rng.normal(0.30, 0.03, 3000).clip(0, 1), T0)
    assert events == []  # stays at its baseline
    events, t = feed(tracker, rng.normal(0.65, 0.03, 8000).clip(0, 1), t)  # a new camera: scores moved up
    assert len(events) == 1
    event = events[0]
    assert event["schema"] == SCHEMA and event["type"] == "drift" and event["stream_id"] == "cam"
    assert event["alert_id"] is None and event["baseline"] == 0.3 and event["median"] > 0.5
    assert event["shift"] == round(event["median"] - 0.3, 4) and event["crops"] >= 100
    # Back at the baseline (after the old hours left the window), then away again: a second event.
    events, t = feed(tracker, rng.normal(0.30, 0.03, 9000).clip(0, 1), t)
    assert events == [] and not tracker.drifting
    events, t = feed(tracker, rng.normal(0.10, 0.02, 9000).clip(0, 1), t)
    assert len(events) == 1 and events[0]["shift"] < -0.15


def test_too_few_crops_say_nothing_and_hours_survive_a_restart():
    tracker = DriftTracker("cam", 0.10, SETTINGS, "host-a")
    events, t = feed(tracker, [0.9] * 60, T0)
    assert events == [] and tracker.shift(t) is None  # 60 < min_crops
    restarted = DriftTracker("cam", 0.10, SETTINGS, "host-a")
    restarted.load({hour: list(counts) for hour, counts in tracker.hours.items()})
    events, _ = feed(restarted, [0.9] * 60, t)
    assert len(events) == 1 and events[0]["crops"] == 60 + 51  # checked at the 51st new crop: the old ones count
