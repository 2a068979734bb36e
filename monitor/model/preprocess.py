"""Preprocessing of aligned face crops, per backbone, as each was trained.

| backbone | resize (to the network's size) | mean / std |
|---|---|---|
| CLIP (the paper, GenD) | shortest side, bicubic with antialias, centre crop | CLIP's |
| Perception Encoder (GenD) | shortest side, bicubic, centre crop (timm's data config) | 0.5 / 0.5 |
| DINOv3 (GenD) | straight to S x S, bilinear with antialias, on float pixels | ImageNet's |

Two paths per backbone:
- `pil_batch`: the reference. CLIP and PE: PIL bicubic, as open_clip, transformers' CLIPImageProcessor and timm
  do (bit-identical to CLIPImageProcessor). DINOv3: torchvision's float resize, as DINOv3ViTImageProcessorFast
  does (a uint8 PIL bilinear resize would differ by up to 0.017). Used by the offline tools.
- `normalise_uint8_batch`: the batched tensor path of the inference worker, run on the model's device from
  uint8 crops. The measured differences to the reference are in the README and checked by
  tests/model/test_preprocess.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.transform import image_transform
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str  # "shortest-bicubic": shortest side, bicubic, centre crop; "squash-bilinear": straight to S x S


PREPROCESSING = {
    "clip": Preprocessing(CLIP_MEAN, CLIP_STD, "shortest-bicubic"),
    "pe": Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "shortest-bicubic"),
    "dinov3": Preprocessing(IMAGENET_MEAN, IMAGENET_STD, "squash-bilinear"),
}


def clip_transform(image_size: int, spec: Preprocessing = PREPROCESSING["clip"]):
    """PIL image -> normalised float tensor [3, S, S]: shortest side to S (bicubic), centre crop."""
    return image_transform(image_size, is_train=False, mean=spec.mean, std=spec.std,
                           interpolation="bicubic", resize_mode="shortest")


def _squash_transform(image_size: int, spec: Preprocessing):
    from torchvision.transforms import v2

    return v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
                       v2.Resize((image_size, image_size), interpolation=v2.InterpolationMode.BILINEAR,
                                 antialias=True),
                       v2.Normalize(spec.mean, spec.std)])


def pil_batch(images: list[Image.Image], image_size: int, backbone: str = "clip") -> torch.Tensor:
    spec = PREPROCESSING[backbone]
    transform = (clip_transform(image_size, spec) if spec.resize == "shortest-bicubic"
                 else _squash_transform(image_size, spec))
    return torch.stack([transform(image.convert("RGB")) for image in images])


def normalise_uint8_batch(crops: torch.Tensor, image_size: int, backbone: str = "clip") -> torch.Tensor:
    """uint8 crops [N, H, W, 3] (any device) -> normalised float32 [N, 3, S, S] on the same device."""
    if crops.dtype != torch.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"expected uint8 crops [N, H, W, 3], got {crops.dtype} {list(crops.shape)}")
    spec = PREPROCESSING[backbone]
    x = crops.permute(0, 3, 1, 2).float()
    height, width = x.shape[-2:]
    if (height, width) != (image_size, image_size):
        if spec.resize == "squash-bilinear":
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
        else:
            scale = image_size / min(height, width)
            size = (max(image_size, int(height * scale)), max(image_size, int(width * scale)))
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
            # PIL rounds and clamps to uint8 after resizing; doing the same halves the difference to it.
            x = x.round_().clamp_(0, 255)
            top, left = (size[0] - image_size) // 2, (size[1] - image_size) // 2
            x = x[:, :, top:top + image_size, left:left + image_size]
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1) * 255
    return (x - mean) / std
