"""Reading a backbone's architecture from its tensor shapes: the checks PE and DINOv3 share."""

from __future__ import annotations

import torch

from ..architecture import HEAD_DIM
from ..errors import CheckpointError


def need(state_dict, key: str, what: str) -> torch.Tensor:
    if key not in state_dict:
        raise CheckpointError(f"missing tensor {key!r}: not a {what} deepfake-detector checkpoint")
    return state_dict[key]


def blocks(state_dict, prefix: str) -> int:
    blocks = {int(k[len(prefix):].split(".")[0]) for k in state_dict if k.startswith(prefix)}
    if not blocks or blocks != set(range(len(blocks))):
        raise CheckpointError(f"transformer blocks are missing or not numbered 0..n-1 (found {sorted(blocks)})")
    return len(blocks)


def check_width(width: int, what: str) -> None:
    if width % HEAD_DIM:
        raise CheckpointError(f"width {width} is not a multiple of {what}'s head size {HEAD_DIM}")


def patch_conv(sd, key: str, width: int, what: str):
    """The patch embedding's square RGB convolution: [width, 3, p, p]."""
    conv = need(sd, key, what)
    if conv.ndim != 4 or conv.shape[:2] != (width, 3) or conv.shape[2] != conv.shape[3]:
        raise CheckpointError(f"patch embedding has shape {list(conv.shape)}, expected [{width}, 3, p, p]")
    return conv
