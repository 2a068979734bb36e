"""GenD's DINOv3 ViT-L/16 on transformers (`DINOv3ViTModel`) under the LinearNorm head.

The feature is the CLS token after the final norm. Tensor names are GenD's without its `feature_extractor.`
prefix: `backbone.<transformers 4.56 name>` (transformers 5 nests the blocks under `model.`; the module is renamed
to, whichever version is installed).
"""

from __future__ import annotations

import torch
from torch import nn

from ..architecture import Architecture, LinearNormDetector, check_head
from .shapes import blocks, check_width, need, patch_conv

DINOV3_NAME = "facebook/dinov3-vitl16-pretrain-lvd1689m"


def owns(state_dict: dict[str, torch.Tensor]) -> bool:
    return "backbone.embeddings.register_tokens" in state_dict


def dinov3_config(arch: Architecture):
    from transformers import DINOv3ViTConfig

    return DINOv3ViTConfig(
        image_size=arch.image_size, patch_size=arch.patch_size, hidden_size=arch.width,
        intermediate_size=arch.mlp_width, num_hidden_layers=arch.layers, num_attention_heads=arch.heads,
        num_register_tokens=arch.registers, layer_norm_eps=1e-5, rope_theta=100.0, key_bias=False, query_bias=True,
        value_bias=True, proj_bias=True, mlp_bias=True, layerscale_value=1.0, use_gated_mlp=False, hidden_act="gelu")


class DinoV3Detector(LinearNormDetector):
    def __init__(self, arch: Architecture):
        super().__init__()
        from transformers import DINOv3ViTModel

        self.arch = arch
        self.backbone = DINOv3ViTModel(dinov3_config(arch))
        self.head = nn.Linear(arch.width, arch.num_classes)
        # transformers 5 names the blocks `model.layer.N`, 4.56 (GenD's) `layer.N`.
        self._nested = any(k.startswith("model.layer.") for k in self.backbone.state_dict())

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixel_values=pixels).last_hidden_state[:, 0]

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self._nested:
            return state_dict
        return {k.replace("backbone.layer.", "backbone.model.layer.", 1): v for k, v in state_dict.items()}


NETWORK = DinoV3Detector


def canonical_dinov3_name(name: str) -> str:
    """A DINOv3 tensor name as GenD (transformers 4.56) writes it, whichever transformers saved it."""
    return name.replace("model.layer.", "layer.", 1) if name.startswith("model.layer.") else name


def infer(sd) -> Architecture:
    what = "DINOv3"
    width = need(sd, "backbone.embeddings.cls_token", what).shape[-1]
    conv = patch_conv(sd, "backbone.embeddings.patch_embeddings.weight", width, what)
    check_width(width, what)
    check_head(sd, width)
    return Architecture(backbone="dinov3", image_size=224, patch_size=conv.shape[-1], width=width,
                        layers=blocks(sd, "backbone.layer."),
                        mlp_width=need(sd, "backbone.layer.0.mlp.up_proj.weight", what).shape[0],
                        registers=sd["backbone.embeddings.register_tokens"].shape[1])
