"""Built-in demo input, generated offline from a public-domain photo (scikit-image's astronaut)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

# The astronaut's face, boxed the way the training template frames a face (crop side ~4.1x the eye
# distance, eyes ~47 % down). Until face alignment lands this fixed box stands in for it.
ASTRONAUT_FACE_BOX = (130, 11, 320, 201)
CROP_SIZE = 256


def demo_crops(folder: Path) -> list[Path]:
    """Write a few 256x256 face crops of the astronaut into `folder` and return their paths."""
    from skimage import data  # imported here: only the demo needs it

    folder.mkdir(parents=True, exist_ok=True)
    face = Image.fromarray(data.astronaut()).crop(ASTRONAUT_FACE_BOX).resize((CROP_SIZE, CROP_SIZE), Image.BICUBIC)
    variants = {
        "astronaut.png": face,
        "astronaut-mirrored.png": ImageOps.mirror(face),
        "astronaut-tilted.png": face.rotate(8, resample=Image.BILINEAR),
    }
    paths = []
    for name, image in variants.items():
        image.save(folder / name)
        paths.append(folder / name)
    return paths
