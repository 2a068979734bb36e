"""CLIP ViT (the paper's ViT-L/14, and GenD's CLIP): open_clip's visual tower, QuickGELU, no projection."""

from __future__ import annotations

import math

import torch
from open_clip.transformer import LayerNormFp32, QuickGELU, VisionTransformer
from torch import nn

from ..architecture import HEAD_DIM, Architecture, LinearNormDetector, check_head
from ..errors import CheckpointError


def owns(state_dict: dict[str, torch.Tensor]) -> bool:
    """open_clip names (`visual.*`): everything that is not another backbone's (`backbone.*`)."""
    return not any(k.startswith("backbone.") for k in state_dict)


class DeepfakeDetector(LinearNormDetector):
    """CLIP visual tower (QuickGELU, no projection) -> L2 normalise -> Linear. Class 1 is fake.

    LayerNorms compute in fp32 whatever the tower's precision, as the authors' do under bf16-mixed.
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

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)


NETWORK = DeepfakeDetector


def infer(state_dict: dict[str, torch.Tensor]) -> Architecture:
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
    check_head(state_dict, width)
    if width % HEAD_DIM:
        raise CheckpointError(f"width {width} is not a multiple of the CLIP head size {HEAD_DIM}")
    return Architecture(image_size=grid * patch, patch_size=patch, width=width, layers=len(blocks),
                        mlp_width=mlp_width)
