"""Daemon metrics: counters the pipeline updates, and gauges read from the streams at scrape time."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)


class DaemonMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.frames_skipped = Counter("deepfake_stream_frames_skipped", "Sampled frames skipped because face "
                                      "detection of the previous one was still running", ["stream"], registry=registry)
        self.frame_to_alert = Histogram("deepfake_frame_to_alert_seconds", "From the newest frame in the window to "
                                        "the alert event's publication", buckets=LATENCY_BUCKETS, registry=registry)
        self.score_drift = Gauge("deepfake_stream_score_drift", "Median p_fake of authentic footage minus the "
                                 "calibrated baseline, over [drift] window_h", ["stream"], registry=registry)


class StreamCollector:
    """Per-stream figures straight from each stream's status (consistent copies) when Prometheus scrapes."""

    def __init__(self, statuses: Callable[[], list[dict]], gpu_memory: Callable[[], dict]):
        self.statuses, self.gpu_memory = statuses, gpu_memory

    def collect(self):
        fps_in = GaugeMetricFamily("deepfake_stream_fps_in", "Frames decoded per second", labels=["stream"])
        emitted = CounterMetricFamily("deepfake_stream_frames_emitted", "Frames sampled for analysis", labels=["stream"])
        decoded = CounterMetricFamily("deepfake_stream_frames_decoded", "Frames decoded", labels=["stream"])
        dropped = CounterMetricFamily("deepfake_stream_frames_dropped", "Frames dropped, by reason",
                                      labels=["stream", "reason"])
        reconnects = CounterMetricFamily("deepfake_stream_reconnects", "Sessions re-established", labels=["stream"])
        up = GaugeMetricFamily("deepfake_stream_up", "1 while the stream delivers frames", labels=["stream"])
        scored = CounterMetricFamily("deepfake_stream_crops_scored", "Crops scored", labels=["stream"])
        for status in self.statuses():
            stream = status["id"]
            fps_in.add_metric([stream], status.get("fps", 0.0))
            emitted.add_metric([stream], status.get("frames_emitted", 0))
            decoded.add_metric([stream], status.get("frames_decoded", 0))
            for reason, count in (status.get("dropped") or {}).items():
                dropped.add_metric([stream, reason], count)
            reconnects.add_metric([stream], status.get("reconnects", 0))
            up.add_metric([stream], 1.0 if status.get("state") == "running" else 0.0)
            scored.add_metric([stream], status.get("crops_scored", 0))
        yield from (fps_in, emitted, decoded, dropped, reconnects, up, scored)
        gpu = GaugeMetricFamily("deepfake_gpu_memory_bytes", "GPU memory allocated by the worker", labels=["device"])
        for device, used in self.gpu_memory().items():
            gpu.add_metric([device], used)
        yield gpu


class LoopCollector:
    """The event loop's asyncio tasks at scrape time: a count that only grows is a leak (bench/soak.py)."""

    def collect(self):
        import asyncio

        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # scraped off the loop: nothing to count
            return
        gauge = GaugeMetricFamily("deepfake_event_loop_tasks", "asyncio tasks alive on the daemon's event loop")
        gauge.add_metric([], tasks)
        yield gauge
