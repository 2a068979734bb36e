"""The re-alignment measurement, shared by tests/faces/test_realign.py and bench/faces.py.

Each aligned sample crop (DeepfakeBench's own output) is placed into a larger frame with a known random
similarity transform; detection + alignment must recover the inverse. The error is measured at the 5
template points: where our crop puts them versus where the original crop had them, in 256-crop pixels.
"""

from __future__ import annotations

import numpy as np

from monitor.faces.align import TEMPLATES_5, align, apply, invert, warp


def random_similarity(rng: np.random.Generator, frame: int) -> np.ndarray:
    """crop -> frame: rotation within +-20 deg, scale 0.5-1.5, the crop's centre somewhere inside the frame."""
    angle = np.deg2rad(rng.uniform(-20, 20))
    scale = rng.uniform(0.5, 1.5)
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = rng.uniform(0.3 * frame, 0.7 * frame, size=2)
    return np.hstack([linear, (centre - linear @ np.array([127.5, 127.5]))[:, None]])


def realign_errors(detector, crops: list[np.ndarray], trials: int, seed: int = 0, frame: int = 640) -> list[float]:
    """Median point error (px at 256) per trial; NaN where no face was found."""
    rng = np.random.default_rng(seed)
    errors = []
    for i in range(trials):
        crop = crops[i % len(crops)]
        to_frame = random_similarity(rng, frame)
        background = rng.integers(40, 90, size=(frame, frame, 3), dtype=np.uint8)
        placed = warp(crop, to_frame, size=frame)
        mask = warp(np.full_like(crop, 255), to_frame, size=frame) > 127
        image = np.where(mask, placed, background)
        faces = detector.detect(image)
        if not faces:
            errors.append(float("nan"))
            continue
        recovered = align(image, faces[0].keypoints, "deepfakebench").matrix  # frame -> our crop
        template = TEMPLATES_5["deepfakebench"]
        ours = apply(recovered, apply(to_frame, template))  # template points of the original, in our crop
        errors.append(float(np.median(np.linalg.norm(ours - template, axis=1))))
    return errors


__all__ = ["realign_errors", "random_similarity", "invert"]
