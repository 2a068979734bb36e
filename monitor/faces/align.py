"""Alignment of a detected face onto the checkpoint's training crop.

DeepfakeBench (the paper's data) and GenD warp each face with a least-squares similarity transform
(rotation, uniform scale, translation; Umeyama) from 5 landmarks onto a template, bilinear, black border,
256x256. BlazeFace gives 4 usable points (eyes, nose tip, mouth centre) that do not sit exactly where the
dlib landmarks of the template do, so the fit uses where BlazeFace's keypoints sit *on the training crops*:
measured on DeepfakeBench-aligned sample crops (see tests/faces/test_realign.py, which checks the result on
crops not used for the measurement). Coordinates are pixel indices (pixel i's centre is at i).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

CROP_SIZE = 256

# The dlib 5-point templates in the 256 crop, (x, y), image-left first: eyes, nose tip, mouth corners.
TEMPLATES_5 = {
    "deepfakebench": np.array([[96.87, 120.43], [158.83, 120.09], [128.04, 155.67], [102.59, 191.94],
                               [153.90, 191.66]]),
    "gend": np.array([[96.49, 120.12], [159.51, 120.12], [128.00, 155.57], [102.40, 191.01], [153.60, 191.01]]),
}

# Mean BlazeFace (full-range) keypoints on DeepfakeBench-aligned crops: eye (image-left), eye (image-right),
# nose tip, mouth centre. Measured on 16 sample crops (the even-numbered 4 of the 8 sample videos, sorted by
# path), each placed in frames of 256, 512 and 1024 px (tests/faces/test_realign.py evaluates the other 4).
BLAZEFACE_ON_DEEPFAKEBENCH = np.array([[96.26, 127.80], [156.75, 124.18], [129.71, 158.92], [130.33, 190.65]])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama, no reflection) mapping src points onto dst: a 2x3 matrix."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(sigma) @ sign) / s.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - scale * rotation @ mu_s
    return matrix


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points) @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, -linear @ matrix[:, 2:]])


def keypoint_template(template: str) -> np.ndarray:
    """Where BlazeFace's 4 keypoints should land in a crop made with `template`."""
    if template not in TEMPLATES_5:
        raise ValueError(f"unknown face template {template!r}: use {' or '.join(TEMPLATES_5)}")
    if template == "deepfakebench":
        return BLAZEFACE_ON_DEEPFAKEBENCH
    # Same face, other template: carry the measured points over with the template-to-template similarity.
    return apply(similarity(TEMPLATES_5["deepfakebench"], TEMPLATES_5[template]), BLAZEFACE_ON_DEEPFAKEBENCH)


def warp(image: np.ndarray, matrix: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Warp with `matrix` (frame -> crop, pixel-index coordinates), bilinear, black border."""
    # PIL samples output pixel centres at (x + 0.5) and reads input pixel centres at (i + 0.5): convert.
    inverse = invert(matrix)
    shift = np.array([0.5, 0.5])
    offset = inverse[:, 2] + shift - inverse[:, :2] @ shift
    coefficients = (*inverse[0, :2], offset[0], *inverse[1, :2], offset[1])
    source = Image.fromarray(np.ascontiguousarray(image))
    return np.asarray(source.transform((size, size), Image.AFFINE, coefficients, resample=Image.BILINEAR,
                                       fillcolor=(0, 0, 0)))


@dataclass(frozen=True)
class Alignment:
    crop: np.ndarray  # RGB uint8 [256, 256, 3]
    matrix: np.ndarray  # frame -> crop
    residual: float  # RMS distance of the fitted keypoints from the template, in crop pixels
    interocular_px: float  # eye distance in the frame


def align(image: np.ndarray, keypoints: np.ndarray, template: str = "deepfakebench") -> Alignment:
    """Align a face given BlazeFace's first 4 keypoints (pixel-index coordinates in `image`)."""
    points = np.asarray(keypoints, np.float64)[:4]
    target = keypoint_template(template)
    matrix = similarity(points, target)
    residual = float(np.sqrt(((apply(matrix, points) - target) ** 2).sum(1).mean()))
    return Alignment(warp(image, matrix), matrix, residual, float(np.linalg.norm(points[1] - points[0])))
