"""The table of backbones, one module each (aiortc's codecs table is the shape): which network an `Architecture`
names, and which backbone a checkpoint's tensors hold. A backbone module has `NETWORK` (a `LinearNormDetector`),
`owns(state_dict)` and `infer(state_dict) -> Architecture`; adding one is a module and a line here (and its kind in
`architecture.BACKBONES`)."""

from __future__ import annotations

import torch

from ..architecture import Architecture, LinearNormDetector
from ..errors import CheckpointError
from . import clip, dinov3, pe

TABLE = {"clip": clip, "pe": pe, "dinov3": dinov3}


def build_network(arch: Architecture) -> LinearNormDetector:
    return TABLE[arch.backbone].NETWORK(arch)


def infer_architecture(state_dict: dict[str, torch.Tensor]) -> Architecture:
    """Read the architecture from the tensor shapes of a native-named state dict (any backbone)."""
    for module in TABLE.values():
        if module.owns(state_dict):
            return module.infer(state_dict)
    raise CheckpointError("the backbone's tensors are neither Perception Encoder's (backbone.attn_pool.latent) "
                          "nor DINOv3's (backbone.embeddings.register_tokens)")
