"""Checkpoints in the two published formats, built small by the tests, and the authors' reference forward.

The reference is what the paper's code runs: a transformers `CLIPVisionModel` (QuickGELU) wrapped by peft
LN-tuning, the pooled output (post_layernorm of CLS) L2-normalised, then `model.linear`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LNTuningConfig, get_peft_model
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

LN_TARGETS = ["pre_layrnorm", "layer_norm1", "layer_norm2", "post_layernorm"]
HPARAMS = {
    "backbone": "openai/clip-vit-large-patch14",
    "head": "LinearNorm",
    "num_classes": 2,
    "peft": {"enabled": True, "ln_tuning": {"enabled": True, "target_modules": LN_TARGETS}},
    "precision": "bf16-mixed",
}


def hf_config(width: int = 128, layers: int = 2, patch: int = 14, image: int = 224) -> CLIPVisionConfig:
    return CLIPVisionConfig(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
                            num_attention_heads=width // 64, patch_size=patch, image_size=image,
                            hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=64,
                            attn_implementation="eager")


def _perturb_layernorms(module: torch.nn.Module, names: tuple[str, ...], generator: torch.Generator) -> None:
    """Move LayerNorm parameters away from the (1, 0) init so a mix-up of LayerNorms shows in the output."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if any(n in name for n in names):
                param.add_(0.3 * torch.randn(param.shape, generator=generator))


class ReferenceDetector(torch.nn.Module):
    def __init__(self, tower: torch.nn.Module, width: int, generator: torch.Generator):
        super().__init__()
        self.feature_extractor = tower
        self.model = torch.nn.Module()
        self.model.linear = torch.nn.Linear(width, 2)
        with torch.no_grad():
            self.model.linear.weight.copy_(torch.randn(2, width, generator=generator) * 3)
            self.model.linear.bias.copy_(torch.randn(2, generator=generator) * 0.1)

    @torch.no_grad()
    def p_fake(self, pixels: torch.Tensor) -> torch.Tensor:
        tower = self.feature_extractor
        if isinstance(tower, CLIPVisionModelWithProjection):
            tower = tower.vision_model  # GenD: the projection is not used
        pooled = tower(pixel_values=pixels).pooler_output
        logits = self.model.linear(F.normalize(pooled, dim=-1))
        return torch.softmax(logits, dim=-1)[:, 1]


def make_lightning(path: Path, width: int = 128, layers: int = 2, seed: int = 0,
                   hparams: dict | None = None, patch: int = 14) -> ReferenceDetector:
    """A Lightning `model.ckpt` with the published key names; returns the reference model."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tower = get_peft_model(CLIPVisionModel(hf_config(width, layers, patch=patch)),
                           LNTuningConfig(target_modules=LN_TARGETS))
    # Tuned copies differ from base_layer, so loading the wrong one gives different scores.
    _perturb_layernorms(tower, ("ln_tuning_layers",), generator)
    reference = ReferenceDetector(tower, width, generator).eval()
    # transformers 4.x (the authors') nests the tower under `vision_model.`; 5.x does not.
    state_dict = {}
    for key, value in reference.state_dict().items():
        if key.startswith("feature_extractor.base_model.model.") and ".vision_model." not in key:
            key = key.replace("feature_extractor.base_model.model.", "feature_extractor.base_model.model.vision_model.")
        state_dict[key] = value.clone()
    torch.save({"state_dict": state_dict, "hyper_parameters": dict(hparams or HPARAMS),
                "epoch": 3, "global_step": 1000, "pytorch-lightning_version": "2.4.0"}, path)
    return reference


def make_gend(path: Path, width: int = 128, layers: int = 2, seed: int = 0,
              config: dict | None = None) -> ReferenceDetector:
    """GenD's `model.safetensors` and `config.json`; returns the reference model."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tower = CLIPVisionModelWithProjection(hf_config(width, layers))
    _perturb_layernorms(tower, ("layer_norm", "layrnorm"), generator)
    reference = ReferenceDetector(tower, width, generator).eval()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    path.with_name("config.json").write_text(json.dumps(
        config or {"backbone": "openai/clip-vit-large-patch14", "head": "LinearNorm", "model_type": "GenD"}))
    return reference


def make_gend_full_size(path: Path, seed: int = 0) -> None:
    """A full ViT-L/14 GenD file with random weights, built from the real key names and shapes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in CLIPVisionModelWithProjection(hf_config(1024, 24)).state_dict().items()}
    tensors = {}
    for key, shape in shapes.items():
        if "layer_norm" in key or "layrnorm" in key:
            base = 1.0 if key.endswith("weight") else 0.0
            tensors["feature_extractor." + key] = base + 0.05 * torch.randn(shape, generator=generator)
        else:
            tensors["feature_extractor." + key] = 0.02 * torch.randn(shape, generator=generator)
    tensors["model.linear.weight"] = torch.randn(2, 1024, generator=generator)
    tensors["model.linear.bias"] = torch.zeros(2)
    save_file(tensors, str(path))
    path.with_name("config.json").write_text(json.dumps(
        {"backbone": "openai/clip-vit-large-patch14", "head": "LinearNorm", "model_type": "GenD"}))
