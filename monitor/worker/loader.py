"""The daemon's model: a checkpoint (or the untrained demo network) on each configured device, warmed up in an
inference pool. Every problem is a `ConfigError` naming the key."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..alerts import ModelTag
from ..errors import ConfigError
from ..logs import get
from ..model.errors import CheckpointError
from .metrics import WorkerMetrics
from .pool import InferencePool, WorkerConfig

log = get(__name__)


@dataclass(frozen=True)
class LoadedModel:
    pool: InferencePool
    tag: ModelTag  # what every alert says about the model
    face_template: str  # how crops must be aligned for it


def checkpoint_path(configured: str | None) -> str | None:
    """The configured checkpoint, else one pulled by `monitor model pull`, else None."""
    from ..model.hub import PUBLISHED, native_name
    from ..paths import models_dir

    if configured is not None:
        return configured
    pulled = (models_dir() / native_name(repo) for repo in PUBLISHED)
    return next((str(p) for p in pulled if p.is_file()), None)


def check_devices(devices: list[str]) -> list:
    """`auto` -> None (the first GPU, else the CPU); anything this host lacks is a configuration error."""
    from ..model import resolve_device

    resolved = []
    for device in devices:
        if device == "auto":
            resolved.append(None)
            continue
        try:
            resolved.append(str(resolve_device(device)))
        except ValueError as e:
            raise ConfigError(f"model.devices: {e}") from None
    return resolved


async def load_model(model, worker, registry) -> LoadedModel:
    """`model` and `worker` are the config's sections; metrics go to `registry`."""
    from ..model import VIT_L14, Architecture, Detector

    devices = check_devices(model.devices)
    path = checkpoint_path(model.path)
    if path is None and not model.allow_untrained:
        raise ConfigError("model.path: no checkpoint given and none pulled (`monitor model pull`); set "
                          "model.allow_untrained = true to run the untrained demo network")

    def load():
        if path is not None:
            try:
                return [Detector.load(path, device=d, precision=model.precision) for d in devices]
            except CheckpointError as e:
                raise ConfigError(f"model.path: {e}") from None
        arch = VIT_L14 if model.size == "L14" else Architecture(width=128, layers=2, mlp_width=512)
        log.warning("UNTRAINED MODEL: no checkpoint found; scores MEAN NOTHING and every alert is marked "
                    "untrained. Install the weights with `monitor model pull`.")
        return [Detector.untrained(arch, device=d, precision=model.precision) for d in devices]

    if worker.cpu_threads:
        import torch

        torch.set_num_threads(worker.cpu_threads)
    detectors = await asyncio.get_running_loop().run_in_executor(None, load)
    first = detectors[0]
    config = WorkerConfig(max_batch=worker.max_batch, max_wait_ms=worker.max_wait_ms, staleness_ms=worker.staleness_ms,
                          queue_capacity=worker.queue_capacity, buckets=tuple(worker.buckets),
                          cuda_graphs=worker.cuda_graphs, compile=worker.compile, cpu_threads=worker.cpu_threads)
    pool = InferencePool(detectors, config, WorkerMetrics(registry))
    await pool.start()  # warm-up: ready only after it
    return LoadedModel(pool, ModelTag(first.info.model_id, first.precision, first.info.untrained, first.info.sha256),
                       first.info.face_template)
