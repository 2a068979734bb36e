"""The table of backbones: which network an `Architecture` names, and which architecture a checkpoint's tensors
hold. The one place that knows every backbone (CLIP in `architecture.py`, PE and DINOv3 in `backbones.py`)."""

from __future__ import annotations

import torch

from .architecture import Architecture, DeepfakeDetector, LinearNormDetector, infer_clip_architecture
from .backbones import DinoV3Detector, PerceptionEncoderDetector, infer_backbone_architecture

NETWORKS: dict[str, type[LinearNormDetector]] = {
    "clip": DeepfakeDetector, "pe": PerceptionEncoderDetector, "dinov3": DinoV3Detector}


def build_network(arch: Architecture) -> LinearNormDetector:
    return NETWORKS[arch.backbone](arch)


def infer_architecture(state_dict: dict[str, torch.Tensor]) -> Architecture:
    """Read the architecture from the tensor shapes of a native-named state dict (any backbone)."""
    if any(k.startswith("backbone.") for k in state_dict):
        return infer_backbone_architecture(state_dict)
    return infer_clip_architecture(state_dict)
