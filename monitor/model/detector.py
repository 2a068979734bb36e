"""The detector at run time: a loaded network on a device at a precision, scoring crops."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from open_clip.transformer import LayerNormFp32
from PIL import Image
from torch import nn

from . import PRECISIONS
from .architecture import VIT_L14, Architecture, LinearNormDetector
from .backbones import build_network
from .checkpoint import Checkpoint, CheckpointError, read_checkpoint
from .graphs import GraphSet
from .preprocess import normalise_uint8_batch, pil_batch


def resolve_device(device: str | None) -> torch.device:
    """`None`/`auto` -> the first GPU when there is one, else the CPU."""
    if device in (None, "", "auto"):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}: use cpu, cuda or cuda:N")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
        index = 0 if resolved.index is None else resolved.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        resolved = torch.device("cuda", index)
    return resolved


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """Default: the authors' bf16-autocast on CUDA, fp32 on the CPU."""
    if precision in (None, "", "auto"):
        return "bf16-autocast" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    return precision


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    architecture: Architecture
    face_template: str
    source_format: str
    untrained: bool = False
    sha256: str | None = None  # of the published checkpoint it came from: what a report cites


class Detector:
    """Scores aligned face crops. `p_fake` is softmax(logits)[:, 1]."""

    def __init__(self, network: LinearNormDetector, info: ModelInfo, device: str | None = None,
                 precision: str | None = None):
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.info = info
        self.image_size = info.architecture.image_size
        self.backbone = info.architecture.backbone  # which preprocessing
        self.network = _place(network, self.device, self.precision)
        self.input_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision, torch.float32)
        self._graphs: GraphSet | None = None

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, precision: str | None = None) -> "Detector":
        """Load a native, Lightning or GenD checkpoint: the one way every component gets a detector."""
        return cls.from_checkpoint(read_checkpoint(path), device=device, precision=precision)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, device: str | None = None,
                        precision: str | None = None) -> "Detector":
        network = build_network(checkpoint.architecture)
        fit = f"checkpoint does not fit {checkpoint.architecture.describe()}"
        try:
            # strict: every parameter filled and every tensor used (checked below, for a readable message)
            result = network.load_state_dict(network.adapt_state_dict(checkpoint.state_dict), strict=False)
        except RuntimeError as e:  # shape mismatches
            details = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
            raise CheckpointError(f"{fit}: {'; '.join(details[:3]) or e}") from None
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(f"{fit}: Missing keys {result.missing_keys[:5]}; "
                                  f"unexpected keys {result.unexpected_keys[:5]}")
        info = ModelInfo(checkpoint.model_id, checkpoint.architecture, checkpoint.face_template,
                         checkpoint.source_format, sha256=checkpoint.source_sha256)
        return cls(network, info, device=device, precision=precision)

    @classmethod
    def untrained(cls, arch: Architecture = VIT_L14, device: str | None = None, precision: str | None = None,
                  seed: int = 0) -> "Detector":
        """A randomly initialised network of the real architecture, for demos without the weights.
        Its scores mean nothing; `info.untrained` marks every output that comes from it."""
        torch.manual_seed(seed)
        info = ModelInfo("untrained-random-init", arch, "deepfakebench", "none", untrained=True)
        return cls(build_network(arch), info, device=device, precision=precision)

    def autocast(self):
        if self.precision == "bf16-autocast":
            # No weight-cast cache: each weight is used once per forward, and CUDA graph capture needs it off.
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.network(pixels)

    def enable_cuda_graphs(self, batch_sizes: Sequence[int]) -> None:
        """Capture the forward pass once per batch size (CUDA only); later calls replay the graphs."""
        self._graphs = GraphSet(self._forward, batch_sizes, self.image_size, self.input_dtype, self.device)

    def compile(self, mode: str = "max-autotune") -> None:
        """torch.compile the network (fuses QuickGELU/LayerNorm, autotunes GEMMs; modes with CUDA graphs
        replay them). Compilation happens on the first call of each batch size: warm up before serving."""
        if getattr(self, "compile_mode", None) == mode:
            return  # already compiled (a worker's warm-up may ask again)
        self.network = torch.compile(self.network, mode=mode, dynamic=False)
        self.compile_mode = mode

    @property
    def graph_batch_sizes(self) -> tuple[int, ...]:
        return tuple(self._graphs.graphs) if self._graphs else ()

    @torch.inference_mode()
    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [N, 3, S, S] -> fp32 logits [N, 2] on the device."""
        pixels = pixels.to(self.device, dtype=self.input_dtype, non_blocking=True)
        if self._graphs is not None:
            return self._graphs(pixels)
        return self._forward(pixels)

    def p_fake(self, pixels: torch.Tensor) -> np.ndarray:
        return torch.softmax(self.logits(pixels), dim=-1)[:, 1].float().cpu().numpy()

    def score_images(self, images: list[Image.Image], batch_size: int = 16) -> np.ndarray:
        """The reference path: the backbone's reference preprocessing (CLIP: bit-identical to
        CLIPImageProcessor)."""
        scores = [self.p_fake(pil_batch(images[i:i + batch_size], self.image_size, self.backbone))
                  for i in range(0, len(images), batch_size)]
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    @torch.inference_mode()
    def score_uint8(self, crops: np.ndarray | torch.Tensor) -> np.ndarray:
        """The worker's path: uint8 crops [N, H, W, 3], uploaded then normalised on the device."""
        crops = torch.as_tensor(crops)
        if self.device.type == "cuda":
            crops = crops.pin_memory().to(self.device, non_blocking=True)
        return self.p_fake(normalise_uint8_batch(crops, self.image_size, self.backbone))


def _place(network: nn.Module, device: torch.device, precision: str) -> nn.Module:
    network = network.to(device).eval().requires_grad_(False)
    if precision in ("bf16", "fp16"):
        network.to(torch.bfloat16 if precision == "bf16" else torch.float16)
        # CLIP's LayerNorms and the head keep fp32 parameters: LayerNormFp32 computes in fp32 with them.
        # (timm's and transformers' LayerNorms take the weights' dtype: they stay in it.)
        for module in network.modules():
            if isinstance(module, LayerNormFp32):
                module.float()
        network.head.float()
    if device.type == "cuda":
        # The authors trained and evaluated with TF32 matmuls for whatever runs outside autocast.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return network
