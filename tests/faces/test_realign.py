"""Re-alignment against the real training pipeline, on sample crops not used to measure the template."""

import numpy as np
import pytest
from PIL import Image

from monitor.faces.detect import FaceDetector
from tests.support.realign import realign_errors


@pytest.fixture(scope="module")
def held_out(face_paths):
    videos = sorted({p.parent for p in face_paths})
    # The template was measured on the even-numbered videos; evaluate on the odd ones.
    return [np.asarray(Image.open(p).convert("RGB")) for p in face_paths if videos.index(p.parent) % 2 == 1]


def test_realignment_error_on_held_out_crops(held_out):
    with FaceDetector(min_confidence=0.3) as detector:
        errors = np.array(realign_errors(detector, held_out, trials=48))
    found = errors[~np.isnan(errors)]
    print(f"re-alignment: {len(found)}/{len(errors)} faces found; median point error {np.median(found):.2f} px, "
          f"90th percentile {np.percentile(found, 90):.2f} px (256-px crop)")
    assert len(found) >= 0.9 * len(errors)
    # Measured here: median ~2 px. The goal is <= 3 px; 3 px is the bound.
    assert np.median(found) <= 3.0
    assert np.percentile(found, 90) <= 6.0


def test_the_dlib_template_alone_would_be_worse(held_out):
    """The measured BlazeFace template matters: fitting keypoints to the dlib template directly is off."""
    from monitor.faces import align as alignment

    measured = alignment.BLAZEFACE_ON_DEEPFAKEBENCH.copy()
    t = alignment.TEMPLATES_5["deepfakebench"]
    naive = np.array([t[0], t[1], t[2], (t[3] + t[4]) / 2])
    try:
        alignment.BLAZEFACE_ON_DEEPFAKEBENCH[:] = naive
        with FaceDetector(min_confidence=0.3) as detector:
            errors = np.array(realign_errors(detector, held_out, trials=24))
    finally:
        alignment.BLAZEFACE_ON_DEEPFAKEBENCH[:] = measured
    print(f"with the raw dlib template: median point error {np.nanmedian(errors):.2f} px")
    assert np.nanmedian(errors) > 3.0
