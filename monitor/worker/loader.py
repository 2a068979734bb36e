"""The daemon's models: each a checkpoint (or the untrained demo network) on each of its devices, warmed up in
its own inference pool. Every problem is a `ConfigError` naming the key (`model.path`, `models.<name>.path`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..contracts import DEFAULT_MODEL, ModelTag
from ..errors import ConfigError
from ..logs import get
from ..model.errors import CheckpointError
from .metrics import WorkerMetrics
from .pool import InferencePool

log = get(__name__)


@dataclass(frozen=True)
class LoadedModel:
    pool: InferencePool
    tag: ModelTag  # what every alert says about the model
    face_template: str  # how crops must be aligned for it

    @property
    def name(self) -> str:
        return self.tag.name


def config_key(name: str) -> str:
    """Where a model's settings are in the file: [model] for `default`, else [models.<name>]."""
    return "model" if name == DEFAULT_MODEL else f"models.{name}"


async def load_models(config, registry) -> dict[str, LoadedModel]:
    """Every model of the config, by name, in the config's order (the first is the default); one pool each,
    sharing one set of worker metrics."""
    metrics = WorkerMetrics(registry)
    models: dict[str, LoadedModel] = {}
    try:
        for name, settings in config.model_table.items():
            models[name] = await load_model(settings, config.worker, metrics, name)
    except BaseException:
        for loaded in models.values():
            await loaded.pool.stop(drain=False)
        raise
    return models


def checkpoint_path(configured: str | None) -> str | None:
    """The configured checkpoint, else one pulled by `monitor model pull`, else None."""
    from ..model.hub import PUBLISHED, native_name
    from ..paths import models_dir

    if configured is not None:
        return configured
    pulled = (models_dir() / native_name(repo) for repo in PUBLISHED)
    return next((str(p) for p in pulled if p.is_file()), None)


def check_devices(devices: list[str], key: str = "model") -> list:
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
            raise ConfigError(f"{key}.devices: {e}") from None
    return resolved


async def load_model(model, worker, metrics, name: str = "default") -> LoadedModel:
    """`model` and `worker` are the config's sections; `metrics` a registry or shared WorkerMetrics."""
    from ..model import VIT_L14, Architecture, Detector

    key = config_key(name)
    devices = check_devices(model.devices, key)
    path = checkpoint_path(model.path)
    if path is None and not model.allow_untrained:
        raise ConfigError(f"{key}.path: no checkpoint given and none pulled (`monitor model pull`); set "
                          f"{key}.allow_untrained = true to run the untrained demo network")

    def load():
        if path is not None:
            try:
                return [Detector.load(path, device=d, precision=model.precision) for d in devices]
            except CheckpointError as e:
                raise ConfigError(f"{key}.path: {e}") from None
        arch = VIT_L14 if model.size == "L14" else Architecture(width=128, layers=2, mlp_width=512)
        log.warning("UNTRAINED MODEL: no checkpoint found; scores MEAN NOTHING and every alert is marked "
                    "untrained. Install the weights with `monitor model pull`.")
        return [Detector.untrained(arch, device=d, precision=model.precision) for d in devices]

    if worker.cpu_threads:
        import torch

        torch.set_num_threads(worker.cpu_threads)
    detectors = await asyncio.get_running_loop().run_in_executor(None, load)
    first = detectors[0]
    if not isinstance(metrics, WorkerMetrics):
        metrics = WorkerMetrics(metrics)
    pool = InferencePool(detectors, worker, metrics, name)
    await pool.start()  # warm-up: ready only after it
    log.info("model loaded", model=name, model_id=first.info.model_id, backbone=first.info.architecture.backbone,
             devices=[str(d.device) for d in detectors], precision=first.precision)
    return LoadedModel(pool, ModelTag(first.info.model_id, first.precision, first.info.untrained, first.info.sha256,
                                      name, first.info.architecture.backbone), first.info.face_template)
