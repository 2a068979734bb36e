"""Prometheus metrics of the inference worker, named after what an operator watches."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SECONDS_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class WorkerMetrics:
    """One set per registry, shared by every model's pool: each series is labelled with the model's name."""

    def __init__(self, registry: CollectorRegistry | None = None):
        registry = REGISTRY if registry is None else registry
        self.batch_size = Histogram("deepfake_worker_batch_size", "Crops per inference batch", ["model", "device"],
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.queue_wait = Histogram("deepfake_worker_queue_wait_seconds", "Time from submit to batch start",
                                    ["model", "device"], buckets=SECONDS_BUCKETS, registry=registry)
        self.inference = Histogram("deepfake_worker_inference_seconds", "Time to score one batch",
                                   ["model", "device"], buckets=SECONDS_BUCKETS, registry=registry)
        self.scored = Counter("deepfake_worker_crops_scored", "Crops scored", ["model", "device"], registry=registry)
        self.dropped = Counter("deepfake_worker_crops_dropped", "Crops not scored, by reason", ["model", "reason"],
                               registry=registry)
        self.failed_batches = Counter("deepfake_worker_failed_batches", "Batches that raised", ["model", "device"],
                                      registry=registry)
        self.queue_depth = Gauge("deepfake_worker_queue_depth", "Crops waiting for a batch", ["model"],
                                 registry=registry)
        self.max_batch = Gauge("deepfake_worker_max_batch", "Current largest batch (halved on CUDA OOM)",
                               ["model", "device"], registry=registry)
