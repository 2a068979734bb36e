"""Reading and writing detector checkpoints.

Three formats load through `read_checkpoint`:
- `lightning`: the Lightning `model.ckpt` of yermandy/deepfake-detection (transformers CLIP names
  wrapped by peft LN-tuning); read with `torch.load(weights_only=True)`, so nothing in it can run code;
- `gend`: GenD's `model.safetensors` with its `config.json` beside it, on any of its three backbones (CLIP
  ViT-L/14, Perception Encoder L/14, DINOv3 ViT-L/16; the config's `backbone` says which);
- `native`: this project's safetensors with metadata (see `write_native`).
All are returned in native naming, every source tensor consumed exactly once: open_clip's (`visual.*`) for
CLIP, `backbone.*` (GenD's names under its `feature_extractor.backbone.`) for PE and DINOv3, and `head.*`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .architecture import Architecture
from .backbones import infer_architecture
from .backbones.dinov3 import DINOV3_NAME, canonical_dinov3_name
from .backbones.pe import PE_NAME
from .errors import CheckpointError

NATIVE_FORMAT = "deepfake-monitor/detector/v1"
CLIP_NAME = "openai/clip-vit-large-patch14"
BACKBONE_KINDS = {CLIP_NAME: "clip", PE_NAME: "pe", DINOV3_NAME: "dinov3"}  # GenD's config `backbone` -> kind
SUPPORTED_BACKBONES = tuple(BACKBONE_KINDS)
GEND_REPOS = {"clip": "yermandy/GenD_CLIP_L_14", "pe": "yermandy/GenD_PE_L", "dinov3": "yermandy/GenD_DINOv3_L"}
SUPPORTED_HEADS = ("LinearNorm",)
FACE_TEMPLATES = ("deepfakebench", "gend")

LIGHTNING_PREFIX = "feature_extractor.base_model.model.vision_model."
GEND_PREFIX = "feature_extractor.vision_model."
GEND_BACKBONE_PREFIX = "feature_extractor.backbone."
GEND_DROPPED = ("feature_extractor.visual_projection.weight",)  # CLIP's projection: the paper does not use it
HEAD_KEYS = {"model.linear.weight": "head.weight", "model.linear.bias": "head.bias"}


@dataclass
class Checkpoint:
    """A detector checkpoint in open_clip naming, wherever it came from."""

    state_dict: dict[str, torch.Tensor]
    architecture: Architecture
    source_format: str  # lightning | gend | native(<original format>)
    source_sha256: str
    face_template: str
    backbone: str
    head: str
    model_id: str
    extra: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, str]:
        return {
            "format": NATIVE_FORMAT,
            "model_id": self.model_id,
            "source_format": self.source_format,
            "source_sha256": self.source_sha256,
            "architecture": self.architecture.to_json(),
            "face_template": self.face_template,
            "backbone": self.backbone,
            "head": self.head,
            **self.extra,
        }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read any supported checkpoint; raise CheckpointError with a clear reason otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: 8-byte little-endian header length, then a JSON header (checked first: the length's
    # first byte can be anything, including the pickle marker 0x80).
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size:
        return _read_safetensors(path)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch zip, or legacy pickle (protocol >= 2)
        return _read_lightning(path)
    raise CheckpointError(f"{path}: not a checkpoint (neither a PyTorch file nor safetensors)")


# --- Lightning model.ckpt ----------------------------------------------------------------------------

def _read_lightning(path: Path) -> Checkpoint:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused: the file needs to unpickle Python objects beyond tensors and plain data, "
            f"and loading it could run code. Only weights-only checkpoints are accepted ({first_line})"
        ) from None
    except Exception as e:  # the zip reader's errors are RuntimeError / EOFError / OSError
        raise CheckpointError(f"{path}: cannot read the PyTorch file: truncated or corrupt ({_short(e)})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(f"{path}: a PyTorch file without a Lightning 'state_dict': not a detector checkpoint")
    hparams = obj.get("hyper_parameters")
    if not isinstance(hparams, dict):
        raise CheckpointError(f"{path}: no 'hyper_parameters' in the checkpoint: cannot tell its backbone and head")
    backbone, head = _check_backbone_and_head(path, hparams)
    if BACKBONE_KINDS[backbone] != "clip":
        raise CheckpointError(f"{path}: a Lightning checkpoint of {backbone}: only CLIP ones are published")
    state_dict = _map_hf_vision(path, obj["state_dict"], LIGHTNING_PREFIX, dropped=())
    sha = sha256_file(path)
    return _finish(state_dict, "lightning", sha, "deepfakebench", backbone, head,
                   model_id=f"yermandy/deepfake-detection@{sha[:12]}")


# --- GenD model.safetensors + config.json, or this project's native file -----------------------------

def _read_safetensors(path: Path) -> Checkpoint:
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read the safetensors file: truncated or corrupt ({_short(e)})") from None
    if metadata.get("format") == NATIVE_FORMAT:
        return _read_native(path, tensors, metadata)
    config_path = path.with_name("config.json")
    if not config_path.is_file():
        raise CheckpointError(f"{path}: a GenD safetensors checkpoint needs its config.json beside it ({config_path})")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{config_path}: not valid JSON ({_short(e)})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object")
    backbone, head = _check_backbone_and_head(config_path, config)
    kind = BACKBONE_KINDS[backbone]
    if kind == "clip":
        state_dict = _map_hf_vision(path, tensors, GEND_PREFIX, dropped=GEND_DROPPED)
    else:
        state_dict = _map_gend_backbone(path, tensors, kind)
    sha = sha256_file(path)
    checkpoint = _finish(state_dict, "gend", sha, "gend", backbone, head, model_id=f"{GEND_REPOS[kind]}@{sha[:12]}")
    if checkpoint.architecture.backbone != kind:
        raise CheckpointError(f"{path}: config.json says {backbone} but the tensors are a "
                              f"{checkpoint.architecture.backbone} backbone's")
    return checkpoint


def _read_native(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Checkpoint:
    missing = [k for k in ("model_id", "source_format", "source_sha256", "architecture", "face_template")
               if k not in metadata]
    if missing:
        raise CheckpointError(f"{path}: native checkpoint metadata lacks {', '.join(missing)}")
    if metadata["face_template"] not in FACE_TEMPLATES:
        raise CheckpointError(f"{path}: unknown face template {metadata['face_template']!r}")
    try:
        declared = Architecture.from_json(metadata["architecture"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable architecture metadata ({_short(e)})") from None
    backbone = metadata.get("backbone", CLIP_NAME)  # files written before other backbones existed: CLIP
    if backbone not in BACKBONE_KINDS:
        raise CheckpointError(f"{path}: unsupported backbone {backbone!r}; supported: {', '.join(SUPPORTED_BACKBONES)}")
    checkpoint = _finish(tensors, metadata["source_format"], metadata["source_sha256"], metadata["face_template"],
                         backbone, metadata.get("head", SUPPORTED_HEADS[0]), model_id=metadata["model_id"])
    if checkpoint.architecture.backbone != BACKBONE_KINDS[backbone]:
        raise CheckpointError(f"{path}: the metadata says {backbone} but the tensors are a "
                              f"{checkpoint.architecture.backbone} backbone's")
    if checkpoint.architecture != declared:
        raise CheckpointError(f"{path}: tensors imply {checkpoint.architecture.describe()} but the metadata "
                              f"says {declared.describe()}")
    checkpoint.extra = {k: v for k, v in metadata.items() if k not in checkpoint.metadata()}
    return checkpoint


def write_native(checkpoint: Checkpoint, dst: str | Path) -> Path:
    """Write `checkpoint` as safetensors in open_clip naming with its metadata."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in checkpoint.state_dict.items()}
    tmp = dst.with_name(dst.name + ".partial")
    save_file(tensors, str(tmp), metadata=checkpoint.metadata())
    tmp.replace(dst)  # never leave a half-written checkpoint under the final name
    return dst


# --- helpers -----------------------------------------------------------------------------------------

def _check_backbone_and_head(where: Path, config: dict) -> tuple[str, str]:
    backbone, head = config.get("backbone"), config.get("head")
    if backbone not in SUPPORTED_BACKBONES:
        raise CheckpointError(f"{where}: unsupported backbone {backbone!r}; supported: {', '.join(SUPPORTED_BACKBONES)}")
    if head not in SUPPORTED_HEADS:
        raise CheckpointError(f"{where}: unsupported head {head!r}; supported: {', '.join(SUPPORTED_HEADS)}")
    num_classes = config.get("num_classes", 2)
    if num_classes != 2:
        raise CheckpointError(f"{where}: num_classes is {num_classes!r}; the detector is binary (real, fake)")
    return backbone, head


_RENAMES = [  # transformers CLIPVisionTransformer -> open_clip VisionTransformer (after the prefix)
    (re.compile(r"embeddings\.patch_embedding\.weight"), "visual.conv1.weight"),
    (re.compile(r"embeddings\.class_embedding"), "visual.class_embedding"),
    (re.compile(r"embeddings\.position_embedding\.weight"), "visual.positional_embedding"),
    (re.compile(r"pre_layrnorm\.(weight|bias)"), r"visual.ln_pre.\1"),
    (re.compile(r"post_layernorm\.(weight|bias)"), r"visual.ln_post.\1"),
    (re.compile(r"encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)"),
     r"visual.transformer.resblocks.\1.attn.out_proj.\2"),
    (re.compile(r"encoder\.layers\.(\d+)\.layer_norm([12])\.(weight|bias)"), r"visual.transformer.resblocks.\1.ln_\2.\3"),
    (re.compile(r"encoder\.layers\.(\d+)\.mlp\.fc1\.(weight|bias)"), r"visual.transformer.resblocks.\1.mlp.c_fc.\2"),
    (re.compile(r"encoder\.layers\.(\d+)\.mlp\.fc2\.(weight|bias)"), r"visual.transformer.resblocks.\1.mlp.c_proj.\2"),
]
_QKV = re.compile(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)")
_PEFT_TUNED = ".ln_tuning_layers.default."
_PEFT_BASE = ".base_layer."


def _map_hf_vision(path: Path, source: dict, prefix: str, dropped: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Map a transformers-named checkpoint to open_clip names, using every tensor exactly once."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in source.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: state entry {key!r} is not a tensor")
        if key in HEAD_KEYS:
            _put(path, out, HEAD_KEYS[key], tensor, key)
            continue
        if key in dropped:
            continue
        if not key.startswith(prefix):
            raise CheckpointError(f"{path}: unexpected tensor {key!r} (expected names under {prefix!r})")
        name = key[len(prefix):]
        if _PEFT_BASE in name:
            continue  # the frozen original LayerNorm; the tuned copy replaces it
        name = name.replace(_PEFT_TUNED, ".")
        if name == "embeddings.position_ids":
            continue  # a buffer some transformers versions save: positions 0..n-1, not a weight
        if m := _QKV.fullmatch(name):
            layer, which, kind = m.groups()
            slot = qkv.setdefault((layer, kind), {})
            if which in slot:
                raise CheckpointError(f"{path}: tensor {key!r} appears twice (tuned and untuned?)")
            slot[which] = tensor
            continue
        for pattern, target in _RENAMES:
            if pattern.fullmatch(name):
                _put(path, out, pattern.sub(target, name), tensor, key)
                break
        else:
            raise CheckpointError(f"{path}: unexpected tensor {key!r}")
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"{path}: layer {layer} attention has only {sorted(parts)} {kind} projections")
        # nn.MultiheadAttention packs the projections as [q; k; v] in that order.
        _put(path, out, f"visual.transformer.resblocks.{layer}.attn.in_proj_{kind}",
             torch.cat([parts["q"], parts["k"], parts["v"]], 0), f"layer {layer} q/k/v {kind}")
    return out


def _map_gend_backbone(path: Path, source: dict, kind: str) -> dict[str, torch.Tensor]:
    """GenD's PE or DINOv3 file: `feature_extractor.backbone.X` -> `backbone.X`, the head -> `head.*`."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: state entry {key!r} is not a tensor")
        if key in HEAD_KEYS:
            _put(path, out, HEAD_KEYS[key], tensor, key)
        elif key.startswith(GEND_BACKBONE_PREFIX):
            name = key[len(GEND_BACKBONE_PREFIX):]
            _put(path, out, "backbone." + (canonical_dinov3_name(name) if kind == "dinov3" else name), tensor, key)
        else:
            raise CheckpointError(f"{path}: unexpected tensor {key!r} (expected names under {GEND_BACKBONE_PREFIX!r})")
    return out


def _put(path: Path, out: dict, name: str, tensor: torch.Tensor, source_key: str) -> None:
    if name in out:
        raise CheckpointError(f"{path}: two tensors map to {name!r} (second: {source_key!r})")
    out[name] = tensor.float() if tensor.is_floating_point() else tensor


def _finish(state_dict, source_format, sha, template, backbone, head, model_id) -> Checkpoint:
    return Checkpoint(state_dict=state_dict, architecture=infer_architecture(state_dict),
                      source_format=source_format, source_sha256=sha, face_template=template,
                      backbone=backbone, head=head, model_id=model_id)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__
