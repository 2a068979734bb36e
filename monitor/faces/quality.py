"""Cheap quality features of a face crop, and the gates that decide whether the detector's score means anything.

A tiny, blurred, blocky, badly lit or turned-away face is outside what the detector was trained on: its score
is noise, so such crops are skipped with a reason instead of scored. Every feature is computed in well under a
millisecond (bench/faces.py) on the stream's own thread:

- `blur`: the no-reference blur metric of Crété-Roffet et al. (2007) over the face region of the aligned crop,
  brought back to the face's resolution in the frame when the crop enlarged it (so that upscaling a small face is
  not taken for blur; `too_small` judges size): how much of the face's neighbour-pixel variation survives a
  9-pixel box blur, 0 sharp to 1 flat. It is a ratio, so it does not depend on the face's own contrast, and
  compression noise barely moves it. Measured on the 32 fixture faces in H.264 and VP8 video at 300 kbit/s to
  2.5 Mbit/s (faces of 100-300 px): sharp 0.36-0.735 (95th percentile at most 0.73); the whole frame blurred at
  σ 4 before encoding, faces up to 200 px: 0.757-0.86; σ 3: 0.73-0.83. `max_blur` 0.75 sits between (tests/
  faces/test_quality.py checks it on H.264 and VP8). On a 300 px face σ 4 is a mild blur of the crop (the
  crop shrinks the face) and mostly passes;
- `sharpness`: variance of the Laplacian over the face region of the aligned crop. Recorded, not gated by
  default: it depends on the face's contrast and on compression (sharp faces in H.264 measure 5-90, frames
  blurred at σ 4 still 3-6, so no threshold separates them);
- `blockiness`: mean gradient across the source frame's 8×8 block boundaries over the mean gradient inside
  the blocks, on the face box (heavy compression: high; an unprocessed frame: about 1);
- `brightness` and `clipped`: mean luminance of the face region and the share of its pixels at the ends;
- `yaw_deg`: how far the head is turned, from the foreshortening of the eye distance against the face box
  width (BlazeFace puts the eyes at 0.38-0.40 of the box width on frontal faces); `roll_deg`: the eye line's tilt
  (recorded: alignment removes it);
- plus the detector's confidence, the eye distance in the frame and the alignment residual.
The other defaults come from the 32 fixture crops and degraded copies of them (tests/faces/test_quality.py prints
the distributions): JPEG quality 10-30 takes blockiness from ≤ 1.05 to ≥ 1.36, a face on its side takes the eye
ratio from ≥ 0.38 to ≤ 0.26.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
FACE_REGION = (slice(88, 200), slice(72, 184))  # eyes to chin, cheek to cheek, in the 256 template crop
FRONTAL_EYE_RATIO = 0.39  # eye distance / box width of BlazeFace on frontal faces (measured: 0.38-0.40)
TEMPLATE_EYE_PX = 62.0  # eye distance in the 256 px templates (deepfakebench 61.96, gend 63.0)
BLUR_TAPS = 9  # Crété-Roffet's re-blur: a 9-pixel box filter
FEATURES = ("confidence", "interocular_px", "residual_px", "sharpness", "blockiness", "brightness", "clipped",
            "yaw_deg", "roll_deg", "blur")  # what features() measures, in the order records and CSVs list them
REASONS = ("low_confidence", "too_small", "profile", "bad_alignment", "exposure", "blurry", "blocky")  # checked in order


class QualitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_blur: float = Field(0.75, gt=0, le=1, description="Crété-Roffet blur of the face at its own resolution "
                            "(0 sharp .. 1 flat); higher: `blurry`")
    min_sharpness: float = Field(0.0, ge=0, description="Laplacian variance of the face; lower: `blurry` (0: off; "
                                 "it depends on contrast and compression, `max_blur` is the gate)")
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


def blur(crop: np.ndarray, interocular_px: float) -> float:
    """Crété-Roffet's no-reference blur (0 sharp .. 1 flat) of the crop's face region, at the face's resolution in
    the frame: the share of neighbour-pixel variation that a 9-pixel box blur does not remove, the larger of the
    two directions."""
    from scipy.ndimage import uniform_filter1d

    region = luminance(crop[FACE_REGION])
    scale = interocular_px / TEMPLATE_EYE_PX
    if 0 < scale < 1:  # the crop enlarged the face: look at it at the size it had
        size = max(16, round(region.shape[0] * scale))
        region = np.asarray(Image.fromarray(region).resize((size, size), Image.BILINEAR), np.float32)
    worst = 0.0
    for axis in (0, 1):
        reblurred = uniform_filter1d(region, BLUR_TAPS, axis=axis, mode="nearest")
        d_original = np.abs(np.diff(region, axis=axis))[2:-2, 2:-2]
        d_reblurred = np.abs(np.diff(reblurred, axis=axis))[2:-2, 2:-2]
        total = float(d_original.sum())
        lost = float(np.maximum(0.0, d_original - d_reblurred).sum())
        worst = max(worst, (total - lost) / total if total > 0 else 1.0)
    return worst


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
            "roll_deg": round(roll, 1), "blur": round(blur(crop, interocular_px), 3)}


def verdict(quality: dict, settings: QualitySettings) -> str | None:
    """The reason to skip a crop with these features, or None to score it (`profile` is checked earlier, from the
    keypoints alone: a turned face's foreshortened eyes would otherwise read as `too_small`)."""
    if not settings.min_brightness <= quality["brightness"] <= settings.max_brightness \
            or quality["clipped"] > settings.max_clipped:
        return "exposure"  # first: a dark face also looks blurry (sharpness grows with contrast)
    if quality.get("blur", 0.0) > settings.max_blur or quality["sharpness"] < settings.min_sharpness:
        return "blurry"
    if quality["blockiness"] > settings.max_blockiness:
        return "blocky"
    return None
