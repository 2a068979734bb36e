"""The inference worker: fair, deadline-batched scoring of face crops on GPUs or the CPU."""

from .metrics import WorkerMetrics
from .pool import InferencePool, WorkerConfig, WorkerError
from .queue import FairQueue

__all__ = ["InferencePool", "WorkerConfig", "WorkerError", "WorkerMetrics", "FairQueue"]
