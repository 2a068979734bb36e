"""The CLIP ViT-L/14 deepfake detector (Yermakov et al., 2025) on open_clip.

Names are imported lazily: importing torch and open_clip takes seconds, and `monitor --help` or
`monitor model pull` should not pay for it.
"""

import importlib

PRECISIONS = ("fp32", "bf16-autocast", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's

_EXPORTS = {
    "VIT_L14": "architecture", "Architecture": "architecture", "DeepfakeDetector": "backbones.clip",
    "Checkpoint": "checkpoint", "CheckpointError": "errors", "read_checkpoint": "checkpoint",
    "write_native": "checkpoint", "Detector": "detector", "ModelInfo": "detector",
    "resolve_device": "detector", "resolve_precision": "detector",
}
__all__ = ["PRECISIONS", "COMPILE_MODES", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
