"""GenD's other backbones (Yermakov et al., WACV 2026), each under the same LinearNorm head as CLIP:

- Perception Encoder core L/14 on timm (`vit_pe_core_large_patch14_336`, an Eva): the feature is its attention
  pool's output, not the CLS token; PE's own 1024->1024 projection is not used. GenD runs it at 224, not its
  native 336: the position embedding (stored for a 24x24 grid) is resampled once, at load, to 16x16, which
  gives the same output as timm's per-forward dynamic resampling (checked by the tests).
- DINOv3 ViT-L/16 on transformers (`DINOv3ViTModel`): the feature is the CLS token after the final norm.

Native tensor names are GenD's without its `feature_extractor.` prefix: `backbone.<timm name>` for PE,
`backbone.<transformers 4.56 name>` for DINOv3 (transformers 5 nests the blocks under `model.`; the module
is renamed to, whichever version is installed).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .architecture import HEAD_DIM, Architecture, LinearNormDetector, check_head
from .errors import CheckpointError

PE_NAME = "vit_pe_core_large_patch14_336"
PE_POOL_HEAD_DIM = 128  # PE's attention pool has 8 heads at width 1024
DINOV3_NAME = "facebook/dinov3-vitl16-pretrain-lvd1689m"


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


def canonical_dinov3_name(name: str) -> str:
    """A DINOv3 tensor name as GenD (transformers 4.56) writes it, whichever transformers saved it."""
    return name.replace("model.layer.", "layer.", 1) if name.startswith("model.layer.") else name


def infer_backbone_architecture(state_dict: dict[str, torch.Tensor]) -> Architecture:
    """PE or DINOv3, from the tensor shapes of a native-named (`backbone.*`, `head.*`) state dict."""
    if "backbone.attn_pool.latent" in state_dict:
        return _infer_pe(state_dict)
    if "backbone.embeddings.register_tokens" in state_dict:
        return _infer_dinov3(state_dict)
    raise CheckpointError("the backbone's tensors are neither Perception Encoder's (backbone.attn_pool.latent) "
                          "nor DINOv3's (backbone.embeddings.register_tokens)")


def _need(state_dict, key: str, what: str) -> torch.Tensor:
    if key not in state_dict:
        raise CheckpointError(f"missing tensor {key!r}: not a {what} deepfake-detector checkpoint")
    return state_dict[key]


def _blocks(state_dict, prefix: str) -> int:
    blocks = {int(k[len(prefix):].split(".")[0]) for k in state_dict if k.startswith(prefix)}
    if not blocks or blocks != set(range(len(blocks))):
        raise CheckpointError(f"transformer blocks are missing or not numbered 0..n-1 (found {sorted(blocks)})")
    return len(blocks)


def _check_width(width: int, what: str) -> None:
    if width % HEAD_DIM:
        raise CheckpointError(f"width {width} is not a multiple of {what}'s head size {HEAD_DIM}")


def _patch_conv(sd, key: str, width: int, what: str):
    """The patch embedding's square RGB convolution: [width, 3, p, p]."""
    conv = _need(sd, key, what)
    if conv.ndim != 4 or conv.shape[:2] != (width, 3) or conv.shape[2] != conv.shape[3]:
        raise CheckpointError(f"patch embedding has shape {list(conv.shape)}, expected [{width}, 3, p, p]")
    return conv


def _infer_pe(sd) -> Architecture:
    what = "Perception Encoder"
    width = _need(sd, "backbone.cls_token", what).shape[-1]
    conv = _patch_conv(sd, "backbone.patch_embed.proj.weight", width, what)
    positions = _need(sd, "backbone.pos_embed", what).shape[1] - 1
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise CheckpointError(f"position embedding has {positions + 1} rows: not 1 + a square patch grid")
    _check_width(width, what)
    check_head(sd, width)
    patch = conv.shape[-1]
    return Architecture(backbone="pe", image_size=224, patch_size=patch, width=width,
                        layers=_blocks(sd, "backbone.blocks."),
                        mlp_width=_need(sd, "backbone.blocks.0.mlp.fc1.weight", what).shape[0],
                        native_image_size=grid * patch)


def _infer_dinov3(sd) -> Architecture:
    what = "DINOv3"
    width = _need(sd, "backbone.embeddings.cls_token", what).shape[-1]
    conv = _patch_conv(sd, "backbone.embeddings.patch_embeddings.weight", width, what)
    _check_width(width, what)
    check_head(sd, width)
    return Architecture(backbone="dinov3", image_size=224, patch_size=conv.shape[-1], width=width,
                        layers=_blocks(sd, "backbone.layer."),
                        mlp_width=_need(sd, "backbone.layer.0.mlp.up_proj.weight", what).shape[0],
                        registers=sd["backbone.embeddings.register_tokens"].shape[1])
