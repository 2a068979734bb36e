"""The detector's network: a ViT backbone's image feature, L2-normalised, into the paper's linear head.

What every backbone shares: the `Architecture` (read from a checkpoint's tensor shapes), the LinearNorm head and
its checks. The backbones themselves are `backbones/<kind>.py`, one module each, and `backbones/__init__.py` is
their table.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError

# CLIP ViTs use 64-dimensional attention heads at every size.
HEAD_DIM = 64


BACKBONES = ("clip", "pe", "dinov3")  # kinds of backbone: open_clip CLIP ViT, timm PE (Eva), transformers DINOv3


@dataclass(frozen=True)
class Architecture:
    """Everything needed to build the network; the published files only imply it through tensor shapes."""

    backbone: str = "clip"
    image_size: int = 224  # what the network runs at
    patch_size: int = 14
    width: int = 1024
    layers: int = 24
    mlp_width: int = 4096
    num_classes: int = 2
    registers: int = 0  # DINOv3's register tokens
    native_image_size: int = 0  # PE: the size its position embedding was trained at (resampled once at load)

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone kind {self.backbone!r}")

    @property
    def heads(self) -> int:
        return self.width // HEAD_DIM

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        return cls(**json.loads(text))  # files written before other backbones existed say nothing: CLIP

    def describe(self) -> str:
        name = {VIT_L14: "CLIP ViT-L/14", PE_L14: "PE-L/14", DINOV3_L16: "DINOv3 ViT-L/16"}.get(
            self, f"custom {self.backbone} ViT")
        extra = f", {self.registers} registers" if self.registers else ""
        extra += f", position grid of {self.native_image_size}" if self.native_image_size else ""
        return (f"{name} (image {self.image_size}, patch {self.patch_size}, width {self.width}, "
                f"{self.layers} blocks, {self.heads} heads, MLP {self.mlp_width}{extra}, {self.num_classes} classes)")


VIT_L14 = Architecture()
PE_L14 = Architecture(backbone="pe", native_image_size=336)  # GenD runs it at 224
DINOV3_L16 = Architecture(backbone="dinov3", patch_size=16, registers=4)


class LinearNormDetector(nn.Module):
    """backbone feature -> L2 normalise -> Linear; class 1 is fake. The logits are computed in fp32 whatever
    the backbone's precision: the head is tiny, and the authors' softmax also stays in fp32 under bf16-mixed."""

    head: nn.Linear

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The checkpoint's tensors (native naming) as this module names them."""
        return state_dict

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [N, 3, S, S] -> logits [N, num_classes] in fp32."""
        features = self.features(pixels)
        with torch.autocast(device_type=features.device.type, enabled=False):
            unit = F.normalize(features.float(), dim=-1)
            return F.linear(unit, self.head.weight.float(), self.head.bias.float())


def check_head(state_dict: dict[str, torch.Tensor], width: int) -> None:
    head = state_dict.get("head.weight")
    if head is None or "head.bias" not in state_dict:
        raise CheckpointError("missing tensor 'head.weight' or 'head.bias': no LinearNorm head")
    if head.ndim != 2 or head.shape[1] != width:
        raise CheckpointError(f"head weight has shape {list(head.shape)}, expected [2, {width}]")
    if head.shape[0] != 2:
        raise CheckpointError(f"head has {head.shape[0]} classes; the detector is binary (real, fake)")
