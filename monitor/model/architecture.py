"""The detector's network: open_clip's CLIP ViT visual tower plus the paper's LinearNorm head."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from open_clip.transformer import LayerNormFp32, QuickGELU, VisionTransformer
from torch import nn

from .errors import CheckpointError

# CLIP ViTs use 64-dimensional attention heads at every size.
HEAD_DIM = 64


@dataclass(frozen=True)
class Architecture:
    """Everything needed to build the network; the published files only imply it through tensor shapes."""

    image_size: int = 224
    patch_size: int = 14
    width: int = 1024
    layers: int = 24
    mlp_width: int = 4096
    num_classes: int = 2

    @property
    def heads(self) -> int:
        return self.width // HEAD_DIM

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        return cls(**json.loads(text))

    def describe(self) -> str:
        name = "ViT-L/14" if self == VIT_L14 else "custom ViT"
        return (f"{name} (image {self.image_size}, patch {self.patch_size}, width {self.width}, "
                f"{self.layers} blocks, {self.heads} heads, MLP {self.mlp_width}, {self.num_classes} classes)")


VIT_L14 = Architecture()


class DeepfakeDetector(nn.Module):
    """CLIP visual tower (QuickGELU, no projection) -> L2 normalise -> Linear. Class 1 is fake.

    The logits are computed in fp32 whatever the tower's precision: the head is tiny, and the
    authors' LayerNorm / softmax also stay in fp32 under bf16-mixed.
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        if arch.width % HEAD_DIM:
            raise ValueError(f"width {arch.width} is not a multiple of the CLIP head size {HEAD_DIM}")
        self.arch = arch
        self.visual = VisionTransformer(
            image_size=arch.image_size,
            patch_size=arch.patch_size,
            width=arch.width,
            layers=arch.layers,
            heads=arch.heads,
            mlp_ratio=arch.mlp_width / arch.width,
            output_dim=arch.width,
            act_layer=QuickGELU,
            # LayerNorm always computes in fp32, so bf16/fp16 weights keep the authors' numerics.
            norm_layer=LayerNormFp32,
            # open_clip's own block with fused q/k/v and F.scaled_dot_product_attention (flash attention on
            # GPUs); same parameter names and outputs as nn.MultiheadAttention, whose fast path autocast disables.
            block_type="custom",
        )
        self.visual.proj = None  # the paper's feature is post_layernorm(CLS), without CLIP's projection
        self.head = nn.Linear(arch.width, arch.num_classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [N, 3, S, S] -> logits [N, num_classes] in fp32."""
        features = self.visual(pixels)
        with torch.autocast(device_type=features.device.type, enabled=False):
            unit = F.normalize(features.float(), dim=-1)
            return F.linear(unit, self.head.weight.float(), self.head.bias.float())


def infer_architecture(state_dict: dict[str, torch.Tensor]) -> Architecture:
    """Read the architecture from tensor shapes of an open_clip-named state dict."""
    def need(key: str) -> torch.Tensor:
        if key not in state_dict:
            raise CheckpointError(f"missing tensor {key!r}: not a CLIP ViT deepfake-detector checkpoint")
        return state_dict[key]

    width = need("visual.class_embedding").shape[0]
    conv = need("visual.conv1.weight")
    if conv.ndim != 4 or conv.shape[0] != width or conv.shape[1] != 3 or conv.shape[2] != conv.shape[3]:
        raise CheckpointError(f"patch embedding has shape {list(conv.shape)}, expected [{width}, 3, p, p]")
    patch = conv.shape[-1]
    positions = need("visual.positional_embedding").shape[0] - 1
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise CheckpointError(f"position embedding has {positions + 1} rows: not 1 + a square patch grid")
    blocks = {int(k.split(".")[3]) for k in state_dict if k.startswith("visual.transformer.resblocks.")}
    if not blocks or blocks != set(range(len(blocks))):
        raise CheckpointError(f"transformer blocks are missing or not numbered 0..n-1 (found {sorted(blocks)})")
    mlp_width = need("visual.transformer.resblocks.0.mlp.c_fc.weight").shape[0]
    head = need("head.weight")
    if head.ndim != 2 or head.shape[1] != width:
        raise CheckpointError(f"head weight has shape {list(head.shape)}, expected [2, {width}]")
    if head.shape[0] != 2:
        raise CheckpointError(f"head has {head.shape[0]} classes; the detector is binary (real, fake)")
    if width % HEAD_DIM:
        raise CheckpointError(f"width {width} is not a multiple of the CLIP head size {HEAD_DIM}")
    return Architecture(image_size=grid * patch, patch_size=patch, width=width, layers=len(blocks),
                        mlp_width=mlp_width, num_classes=head.shape[0])
