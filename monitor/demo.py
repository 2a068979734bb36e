"""Built-in demo input, generated offline from a public-domain photo (scikit-image's astronaut)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Fallback when the face detector's model is not installed: a fixed box framing the face the way the
# training template does (crop side ~4.1x the eye distance, eyes ~47 % down).
ASTRONAUT_FACE_BOX = (130, 11, 320, 201)
CROP_SIZE = 256


def astronaut_crop(template: str = "deepfakebench") -> Image.Image:
    from skimage import data  # imported here: only the demo needs it

    photo = data.astronaut()
    try:
        from .faces.align import align
        from .faces.detect import FaceDetector

        with FaceDetector() as detector:
            faces = detector.detect(photo)
        if faces:
            return Image.fromarray(align(photo, faces[0].keypoints, template).crop)
    except FileNotFoundError:
        pass
    return Image.fromarray(photo).crop(ASTRONAUT_FACE_BOX).resize((CROP_SIZE, CROP_SIZE), Image.BICUBIC)


def demo_crops(folder: Path, template: str = "deepfakebench") -> list[Path]:
    """Write a few 256x256 aligned face crops of the astronaut into `folder` and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    face = astronaut_crop(template)
    variants = {
        "astronaut.png": face,
        "astronaut-mirrored.png": ImageOps.mirror(face),
        "astronaut-darker.png": Image.fromarray((np.asarray(face) * 0.7).astype(np.uint8)),
    }
    paths = []
    for name, image in variants.items():
        image.save(folder / name)
        paths.append(folder / name)
    return paths
