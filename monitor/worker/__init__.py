"""The inference worker: fair, deadline-batched scoring of face crops on GPUs or the CPU.

Names are imported lazily, as in `monitor.model`: the config reads `WorkerSettings` without importing torch.
"""

import importlib

_EXPORTS = {"InferencePool": "pool", "WorkerError": "pool", "WorkerSettings": "settings", "WorkerMetrics": "metrics",
            "FairQueue": "queue"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
