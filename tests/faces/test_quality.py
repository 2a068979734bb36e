"""Crop quality: the fixture crops pass; blurred, heavily compressed, tiny and turned faces are skipped, each
with its reason; a sparse-sampled moving face stays one track (the demo)."""

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageFilter

from monitor.contracts import Frame
from monitor.faces.pipeline import FaceCropper, FaceSettings
from monitor.faces.quality import QualitySettings
from tests.support.faces import load_crops


def place(crop: np.ndarray, px: int = 200) -> np.ndarray:
    frame = np.full((480, 640, 3), 70, np.uint8)
    frame[140:140 + px, 220:220 + px] = np.asarray(Image.fromarray(crop).resize((px, px), Image.BILINEAR))
    return frame


def blurred(crop):
    return np.asarray(Image.fromarray(place(crop)).filter(ImageFilter.GaussianBlur(3)))


def compressed(crop, quality=10):
    buffer = io.BytesIO()
    Image.fromarray(place(crop)).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


def tiny(crop):
    return place(crop, 24)


def on_its_side(crop):  # BlazeFace's eye keypoints collapse as on a face in profile
    return place(np.asarray(Image.fromarray(crop).rotate(90, fillcolor=(70, 70, 70))))


@pytest.fixture(scope="module")
def cropper():
    cropper = FaceCropper(FaceSettings(min_confidence=0.3), quality=QualitySettings())
    yield cropper
    cropper.close()


def outcome(cropper, frame: np.ndarray, i: int):
    cropper.tracker.forget()
    result = cropper.process(Frame("q", i, float(i), None, frame))
    if result.crops:
        return "scored", result.crops[0].quality()
    return (result.skipped_tracks[0][1] if result.skipped_tracks else "no_face"), None


def test_fixture_crops_are_scored_and_degraded_copies_are_skipped_with_their_reason(cropper, face_paths):
    crops = load_crops(face_paths)
    originals = [outcome(cropper, place(c), i) for i, c in enumerate(crops)]
    features = {k: [q[k] for _, q in originals] for k in originals[0][1]}
    print("features of the 32 fixture crops (min / median / max):")
    for name, values in features.items():
        print(f"  {name:15s} {min(values):8.2f} {np.median(values):8.2f} {max(values):8.2f}")
    assert [o for o, _ in originals] == ["scored"] * 32
    expectations = {"blurred (Gaussian sigma 3)": (blurred, "blurry"), "JPEG quality 10": (compressed, "blocky"),
                    "a 24-pixel face": (tiny, "too_small"), "on its side": (on_its_side, "profile")}
    for name, (degrade, reason) in expectations.items():
        reasons = Counter(outcome(cropper, degrade(c), i)[0] for i, c in enumerate(crops))
        print(f"{name}: {dict(reasons)}")
        found = sum(n for r, n in reasons.items() if r != "no_face")
        assert found >= 24, reasons  # the detector still finds most of them
        assert reasons[reason] == found, reasons  # and every one it finds is skipped for the right reason
        assert reasons["scored"] == 0


def test_jpeg_quality_30_and_exposure_gates(cropper, face_paths):
    crops = load_crops(face_paths[:8])
    assert all(outcome(cropper, compressed(c, 30), i)[0] == "blocky" for i, c in enumerate(crops))
    dark = [outcome(cropper, (place(c) * 0.15).astype(np.uint8), i) for i, c in enumerate(crops)]
    assert all(o in ("exposure", "low_confidence", "no_face") for o, _ in dark) and any(o == "exposure" for o, _ in dark)
