"""CLIP preprocessing of aligned face crops.

Two paths:
- `clip_transform` (PIL bicubic with antialiasing, as open_clip and transformers' CLIPImageProcessor do):
  the reference, bit-identical to CLIPImageProcessor; used by the offline tools.
- `normalise_uint8_batch`: the batched tensor path for the inference worker, run on the model's device
  from uint8 crops. It differs slightly from PIL's bicubic; the measured difference is in the README and
  checked by tests/model/test_preprocess.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transform import image_transform
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_transform(image_size: int):
    """PIL image -> normalised float tensor [3, S, S]: shortest side to S (bicubic), centre crop."""
    return image_transform(image_size, is_train=False, mean=CLIP_MEAN, std=CLIP_STD,
                           interpolation="bicubic", resize_mode="shortest")


def pil_batch(images: list[Image.Image], image_size: int) -> torch.Tensor:
    transform = clip_transform(image_size)
    return torch.stack([transform(image.convert("RGB")) for image in images])


def normalise_uint8_batch(crops: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 crops [N, H, W, 3] (any device) -> normalised float32 [N, 3, S, S] on the same device."""
    if crops.dtype != torch.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"expected uint8 crops [N, H, W, 3], got {crops.dtype} {list(crops.shape)}")
    x = crops.permute(0, 3, 1, 2).float()
    height, width = x.shape[-2:]
    if (height, width) != (image_size, image_size):
        scale = image_size / min(height, width)
        size = (max(image_size, int(height * scale)), max(image_size, int(width * scale)))
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
        # PIL rounds and clamps to uint8 after resizing; doing the same halves the difference to it.
        x = x.round_().clamp_(0, 255)
        top, left = (size[0] - image_size) // 2, (size[1] - image_size) // 2
        x = x[:, :, top:top + image_size, left:left + image_size]
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1) * 255
    return (x - mean) / std
