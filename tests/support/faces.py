"""The project's own face crops (tests/fixtures/faces, see its README): real and fake, already aligned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FACES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


def face_paths() -> list[Path]:
    """The 32 crops, sorted by path (CDFv2 first, then FF; 4 frames per video)."""
    paths = sorted(FACES_DIR.rglob("*.png"))
    if len(paths) != 32:
        raise RuntimeError(f"expected the 32 fixture crops under {FACES_DIR}, found {len(paths)}")
    return paths


def load_crops(paths: list[Path]) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]
