"""The daemon's runtime parts for in-process tests: a tiny checkpoint in the published format, loaded in a real
inference pool, and a real alert publisher on a real Redis."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from monitor.alerts import AlertPublisher, PublisherMetrics, Spool
from monitor.config import MonitorConfig, parse
from monitor.contracts import Frame
from monitor.worker.loader import load_model
from tests.support.reference_models import make_lightning

# Seed 2 of the tiny model scores the fixture faces between 0.55 and 0.93 (median 0.60): thresholds can sit
# on either side of a track's statistic.
MODERATE_SEED = 2


def tiny_checkpoint(folder: Path, seed: int = MODERATE_SEED) -> Path:
    path = folder / f"tiny-{seed}.ckpt"
    if not path.exists():
        make_lightning(path, width=64, layers=1, seed=seed)
    return path


def runtime_config(checkpoint: Path, redis_url: str, spool: Path, **sections) -> MonitorConfig:
    base = {"model": {"path": str(checkpoint), "devices": ["cpu"]}, "worker": {"max_batch": 4, "buckets": [1, 4]},
            "alerts": {"spool_dir": str(spool), "update_interval_s": 0}, "redis": {"url": redis_url},
            "window": {"min_crops": 2}, "verdict": {"suspicious": 0.01, "manipulated": 0.99, "enter_crops": 2,
                                                     "enter_seconds": 0, "exit_seconds": 1.0}}
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return parse(base)


async def start_runtime(config: MonitorConfig):
    """(loaded model, publisher), started; stop them with `stop_runtime`."""
    registry = CollectorRegistry()
    publisher = AlertPublisher(config.redis, Spool(config.alerts.spool_dir), config.instance, PublisherMetrics(registry))
    await publisher.start()
    model = await load_model(config.model, config.worker, registry)
    return model, publisher


async def stop_runtime(model, publisher) -> None:
    await model.pool.stop(drain=False)
    await publisher.close(flush_timeout=5)


def frame_now(stream_id: str, seq: int, image: np.ndarray) -> Frame:
    return Frame(stream_id, seq, time.time(), None, image)
