"""GenD's Perception Encoder core L/14 on timm (`vit_pe_core_large_patch14_336`, an Eva) under the LinearNorm head.

The feature is its attention pool's output, not the CLS token; PE's own 1024->1024 projection is not used. GenD
runs it at 224, not its native 336: the position embedding (stored for a 24x24 grid) is resampled once, at load,
to 16x16, which gives the same output as timm's per-forward dynamic resampling (checked by the tests). Tensor
names are GenD's without its `feature_extractor.` prefix: `backbone.<timm name>`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..architecture import Architecture, LinearNormDetector, check_head
from ..errors import CheckpointError
from .shapes import blocks, check_width, need, patch_conv

PE_NAME = "vit_pe_core_large_patch14_336"
PE_POOL_HEAD_DIM = 128  # PE's attention pool has 8 heads at width 1024


def owns(state_dict: dict[str, torch.Tensor]) -> bool:
    return "backbone.attn_pool.latent" in state_dict


class PerceptionEncoderDetector(LinearNormDetector):
    def __init__(self, arch: Architecture):
        super().__init__()
        import timm

        self.arch = arch
        self.backbone = timm.create_model(
            PE_NAME, pretrained=False, num_classes=0, img_size=arch.image_size, embed_dim=arch.width,
            depth=arch.layers, num_heads=arch.heads, mlp_ratio=arch.mlp_width / arch.width,
            attn_pool_num_heads=max(1, arch.width // PE_POOL_HEAD_DIM))
        self.head = nn.Linear(arch.width, arch.num_classes)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixels)  # the attention pool's output (num_classes=0: no projection)

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from timm.layers import resample_abs_pos_embed

        key = "backbone.pos_embed"
        grid = self.arch.image_size // self.arch.patch_size
        stored = math.isqrt(state_dict[key].shape[1] - 1)
        if stored == grid:
            return state_dict
        resampled = resample_abs_pos_embed(state_dict[key], (grid, grid), old_size=(stored, stored),
                                           num_prefix_tokens=1)
        return {**state_dict, key: resampled}


NETWORK = PerceptionEncoderDetector


def infer(sd) -> Architecture:
    what = "Perception Encoder"
    width = need(sd, "backbone.cls_token", what).shape[-1]
    conv = patch_conv(sd, "backbone.patch_embed.proj.weight", width, what)
    positions = need(sd, "backbone.pos_embed", what).shape[1] - 1
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise CheckpointError(f"position embedding has {positions + 1} rows: not 1 + a square patch grid")
    check_width(width, what)
    check_head(sd, width)
    patch = conv.shape[-1]
    return Architecture(backbone="pe", image_size=224, patch_size=patch, width=width,
                        layers=blocks(sd, "backbone.blocks."),
                        mlp_width=need(sd, "backbone.blocks.0.mlp.fc1.weight", what).shape[0],
                        native_image_size=grid * patch)
