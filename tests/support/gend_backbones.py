"""GenD's Perception Encoder and DINOv3 checkpoints, built small by the tests, and GenD's reference forward.

As GenD builds them (see its src/hf/modeling_gend.py): PE with timm at its native 336 and dynamic image size
(the position embedding resampled on every forward), DINOv3 with transformers' `DINOv3ViTModel`; the feature
(PE: the attention pool; DINOv3: CLS after the final norm) L2-normalised into `model.linear`. Every tensor is
random (default init leaves biases at 0 and layer scales at 1, which a loader dropping them would hide).
Preprocessing is each library's own: timm's data transform for PE, `DINOv3ViTImageProcessor(Fast)` for DINOv3.
Files are what `GenD.save_pretrained()` writes: `model.safetensors` with `feature_extractor.backbone.*` and
`model.linear.*`, and `config.json` naming the backbone.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

PE_NAME = "vit_pe_core_large_patch14_336"
DINOV3_NAME = "facebook/dinov3-vitl16-pretrain-lvd1689m"


def pe_backbone(width: int = 256, layers: int = 2, full_size: bool = False):
    import timm

    size = {} if full_size else dict(embed_dim=width, depth=layers, num_heads=width // 64,
                                     attn_pool_num_heads=max(1, width // 128))
    return timm.create_model(PE_NAME, pretrained=False, dynamic_img_size=True, num_classes=0, **size)


def dinov3_backbone(width: int = 256, layers: int = 2, full_size: bool = False):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    if full_size:
        width, layers = 1024, 24
    return DINOv3ViTModel(DINOv3ViTConfig(
        patch_size=16, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
        num_attention_heads=width // 64, num_register_tokens=4, layer_norm_eps=1e-5, rope_theta=100.0,
        key_bias=False, query_bias=True, value_bias=True, proj_bias=True, mlp_bias=True, layerscale_value=1.0,
        use_gated_mlp=False, hidden_act="gelu"))


class GenDReference(torch.nn.Module):
    def __init__(self, kind: str, backbone: torch.nn.Module, width: int, generator: torch.Generator):
        super().__init__()
        self.kind, self.backbone = kind, backbone
        self.linear = torch.nn.Linear(width, 2)
        with torch.no_grad():
            for name, param in self.named_parameters():
                if param.ndim == 1 and ("norm" in name or name.endswith("lambda1")):
                    param.copy_(1.0 + 0.3 * torch.randn(param.shape, generator=generator))
                elif name.startswith("linear.weight"):
                    param.copy_(torch.randn(param.shape, generator=generator) * 3)
                else:
                    param.copy_(0.05 * torch.randn(param.shape, generator=generator))

    @torch.no_grad()
    def p_fake(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.kind == "pe":
            features = self.backbone(pixels)
        else:
            features = self.backbone(pixel_values=pixels).last_hidden_state[:, 0]
        return torch.softmax(self.linear(F.normalize(features, dim=-1)), dim=-1)[:, 1]

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        if self.kind == "pe":
            import timm.data

            config = timm.data.resolve_data_config({"input_size": (3, 224, 224)}, model=self.backbone)
            transform = timm.data.create_transform(**config)
            return torch.stack([transform(image.convert("RGB")) for image in images])
        try:  # transformers 5 dropped the Fast suffix (its processor is the torchvision one)
            from transformers import DINOv3ViTImageProcessor as Processor
        except ImportError:
            from transformers import DINOv3ViTImageProcessorFast as Processor

        processor = Processor(size={"height": 224, "width": 224})
        return processor([image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]

    def gend_state_dict(self, transformers4_names: bool = True) -> dict[str, torch.Tensor]:
        out = {}
        for key, value in self.backbone.state_dict().items():
            if transformers4_names and key.startswith("model.layer."):
                key = key[len("model."):]  # as transformers 4.56 (the authors') names DINOv3's blocks
            out["feature_extractor.backbone." + key] = value.detach().clone().contiguous()
        out["model.linear.weight"] = self.linear.weight.detach().clone()
        out["model.linear.bias"] = self.linear.bias.detach().clone()
        return out


def make_gend_backbone(path: Path, kind: str, width: int = 256, layers: int = 2, seed: int = 0,
                       full_size: bool = False, config: dict | None = None,
                       transformers4_names: bool = True) -> GenDReference:
    """GenD's `model.safetensors` + `config.json` for `kind` ("pe" or "dinov3"); returns the reference."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    backbone = (pe_backbone if kind == "pe" else dinov3_backbone)(width, layers, full_size)
    reference = GenDReference(kind, backbone, 1024 if full_size else width, generator).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(reference.gend_state_dict(transformers4_names), str(path))
    path.with_name("config.json").write_text(json.dumps(config or {
        "architectures": ["GenD"], "backbone": PE_NAME if kind == "pe" else DINOV3_NAME, "dtype": "float32",
        "head": "LinearNorm", "model_type": "GenD", "transformers_version": "4.56.2"}))
    return reference
