"""Cheap quality features of a face crop, and the gates that decide whether the detector's score means anything.

A tiny, blurred, blocky, badly lit or turned-away face is outside what the detector was trained on: its score
is noise, so such crops are skipped with a reason instead of scored. Every feature is computed in well under a
millisecond (bench/faces.py) on the stream's own thread:

- `sharpness`: variance of the Laplacian over the face region of the aligned crop (a blurred face: low);
- `blockiness`: mean gradient across the source frame's 8×8 block boundaries over the mean gradient inside
  the blocks, on the face box (heavy compression: high; an unprocessed frame: about 1);
- `brightness` and `clipped`: mean luminance of the face region and the share of its pixels at the ends;
- `yaw_deg`: how far the head is turned, from the foreshortening of the eye distance against the face box
  width (BlazeFace puts the eyes at 0.38-0.40 of the box width on frontal faces); `roll_deg`: the eye line's tilt
  (recorded: alignment removes it);
- plus the detector's confidence, the eye distance in the frame and the alignment residual.
Defaults come from the 32 fixture crops and degraded copies of them (tests/faces/test_quality.py prints the
distributions): blur σ 3 takes sharpness from ≥ 3.9 to ≤ 2.0, JPEG quality 10-30 takes blockiness from ≤ 1.05
to ≥ 1.36, a face on its side takes the eye ratio from ≥ 0.38 to ≤ 0.26.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
FACE_REGION = (slice(88, 200), slice(72, 184))  # eyes to chin, cheek to cheek, in the 256 template crop
FRONTAL_EYE_RATIO = 0.39  # eye distance / box width of BlazeFace on frontal faces (measured: 0.38-0.40)
FEATURES = ("confidence", "interocular_px", "residual_px", "sharpness", "blockiness", "brightness", "clipped",
            "yaw_deg", "roll_deg")  # what features() measures, in the order records and CSVs list them
REASONS = ("low_confidence", "too_small", "profile", "bad_alignment", "exposure", "blurry", "blocky")  # checked in order


class QualitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_sharpness: float = Field(3.0, ge=0, description="Laplacian variance of the face; lower: `blurry`")
    max_blockiness: float = Field(1.25, gt=0, description="8x8 block-edge gradient ratio; higher: `blocky`")
    min_brightness: float = Field(35.0, ge=0, le=255, description="mean face luminance; lower: `exposure`")
    max_brightness: float = Field(225.0, ge=0, le=255, description="mean face luminance; higher: `exposure`")
    max_clipped: float = Field(0.3, ge=0, le=1, description="share of face pixels at 0-5 or 250-255; more: `exposure`")
    max_yaw_deg: float = Field(45.0, gt=0, le=90, description="head turned further: `profile`")


def luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ LUMA


def sharpness(crop: np.ndarray) -> float:
    g = luminance(crop[FACE_REGION])
    laplacian = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(laplacian.var())


def blockiness(frame: np.ndarray, box) -> float:
    """Gradient across 8x8 block boundaries over gradient inside blocks, on the face box of the frame."""
    x, y, w, h = box
    x0, y0 = max(0, int(x)) // 8 * 8, max(0, int(y)) // 8 * 8
    x1, y1 = min(frame.shape[1], int(x + w) + 8), min(frame.shape[0], int(y + h) + 8)
    g = luminance(frame[y0:y1, x0:x1])
    if g.shape[0] < 16 or g.shape[1] < 16:
        return 1.0
    dx, dy = np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0))
    edge_x, edge_y = np.arange(dx.shape[1]) % 8 == 7, np.arange(dy.shape[0]) % 8 == 7
    across = (dx[:, edge_x].mean() + dy[edge_y, :].mean()) / 2
    inside = (dx[:, ~edge_x].mean() + dy[~edge_y, :].mean()) / 2
    return float(across / (inside + 1e-3))


def pose(keypoints: np.ndarray, box) -> tuple[float, float]:
    """(yaw_deg, roll_deg) proxies from BlazeFace's eyes, nose and box."""
    left, right, nose = keypoints[0], keypoints[1], keypoints[2]
    axis = right - left
    eyes = float(np.linalg.norm(axis))
    ratio = eyes / max(box[2], 1e-3)
    yaw = math.degrees(math.acos(min(1.0, ratio / FRONTAL_EYE_RATIO)))
    if eyes > 1e-3 and float(np.dot(nose - (left + right) / 2, axis / eyes)) < 0:
        yaw = -yaw  # turned towards the image's left
    return yaw, math.degrees(math.atan2(axis[1], axis[0]))


def features(frame: np.ndarray, crop: np.ndarray, box, keypoints: np.ndarray, confidence: float,
             interocular_px: float, residual: float) -> dict:
    face = crop[FACE_REGION]
    luma = luminance(face)
    yaw, roll = pose(keypoints, box)
    return {"confidence": round(float(confidence), 4), "interocular_px": round(float(interocular_px), 1),
            "residual_px": round(float(residual), 2), "sharpness": round(sharpness(crop), 2),
            "blockiness": round(blockiness(frame, box), 3), "brightness": round(float(luma.mean()), 1),
            "clipped": round(float(((luma <= 5) | (luma >= 250)).mean()), 3), "yaw_deg": round(yaw, 1),
            "roll_deg": round(roll, 1)}


def verdict(quality: dict, settings: QualitySettings) -> str | None:
    """The reason to skip a crop with these features, or None to score it (`profile` is checked earlier, from the
    keypoints alone: a turned face's foreshortened eyes would otherwise read as `too_small`)."""
    if not settings.min_brightness <= quality["brightness"] <= settings.max_brightness \
            or quality["clipped"] > settings.max_clipped:
        return "exposure"  # first: a dark face also looks blurry (sharpness grows with contrast)
    if quality["sharpness"] < settings.min_sharpness:
        return "blurry"
    if quality["blockiness"] > settings.max_blockiness:
        return "blocky"
    return None
