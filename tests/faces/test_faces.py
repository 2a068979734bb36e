"""Detection, alignment gates and tracking on real images."""

import numpy as np
import pytest
from PIL import Image
from skimage import data

from monitor.contracts import Frame
from monitor.faces.align import TEMPLATES_5, align, apply, similarity, warp
from monitor.faces.detect import FaceDetector
from monitor.faces.pipeline import FaceCropper, FaceSettings
from monitor.faces.tracker import FaceTracker


@pytest.fixture(scope="module")
def detector():
    with FaceDetector(min_confidence=0.5) as d:
        yield d


def test_detects_every_fixture_crop_and_the_astronaut(detector, face_paths):
    for path in face_paths:
        canvas = np.zeros((512, 512, 3), np.uint8)
        canvas[128:384, 128:384] = np.asarray(Image.open(path).convert("RGB"))
        faces = detector.detect(canvas)
        assert faces, path
        eyes = faces[0].keypoints[:2]
        assert eyes[0][0] < eyes[1][0]  # image-left eye first
    astronaut = detector.detect(data.astronaut())
    assert len(astronaut) == 1 and astronaut[0].score > 0.8
    x, y, w, h = astronaut[0].box
    assert 150 < x + w / 2 < 300 and 50 < y + h / 2 < 200


def test_no_face_on_blank_or_noise(detector):
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert detector.detect(noise) == []


def test_similarity_fit_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 256, size=(5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -40.0])
    truth = np.hstack([scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]),
                       shift[:, None]])
    np.testing.assert_allclose(similarity(points, apply(truth, points)), truth, atol=1e-9)


def test_warp_puts_template_points_where_the_matrix_says(face_paths):
    crop = np.asarray(Image.open(face_paths[0]).convert("RGB"))
    matrix = similarity(TEMPLATES_5["deepfakebench"], TEMPLATES_5["deepfakebench"])  # identity
    assert np.abs(warp(crop, matrix).astype(int) - crop).max() <= 1
    shifted = warp(crop, np.array([[1.0, 0, 10], [0, 1.0, 0]]))
    assert (shifted[:, :10] == 0).all()  # black border
    assert np.abs(shifted[:, 10:].astype(int) - crop[:, :-10]).max() <= 1


def test_gates_skip_small_and_unsure_faces():
    image = data.astronaut()
    frame = Frame("s", 0, 0.0, None, image)
    cropper = FaceCropper(FaceSettings())
    try:
        result = cropper.process(frame)
        assert len(result.crops) == 1 and result.crops[0].crop.shape == (256, 256, 3)
        crop = result.crops[0]
        print(f"astronaut: confidence {crop.confidence:.2f}, eyes {crop.interocular_px:.1f} px, "
              f"residual {crop.alignment_residual:.2f} px")
        small = np.asarray(Image.fromarray(image).resize((200, 200)))  # eyes ~18 px apart
        canvas = np.full((480, 640, 3), 60, np.uint8)
        canvas[100:300, 200:400] = small
        result = cropper.process(Frame("s", 1, 10.0, None, canvas))
        assert result.crops == [] and result.skipped["too_small"] == 1
    finally:
        cropper.close()
    strict = FaceCropper(FaceSettings(min_confidence=0.99))
    try:
        result = strict.process(frame)
        assert result.crops == [] and result.skipped["low_confidence"] == 1
    finally:
        strict.close()
    with pytest.raises(ValueError):
        align(image, np.zeros((4, 2)), "unknown-template")


def test_tracker_keeps_ids_through_motion_and_renews_after_absence():
    tracker = FaceTracker(max_absence_s=1.0)
    a = tracker.update([(100, 100, 80, 80)], now=0.0)
    moved = tracker.update([(115, 104, 82, 80)], now=0.1)
    two = tracker.update([(130, 108, 80, 80), (400, 100, 90, 90)], now=0.2)
    assert a == moved == [two[0]] and two[1] != two[0]
    swapped = tracker.update([(405, 102, 90, 90), (135, 110, 80, 80)], now=0.3)
    assert swapped == [two[1], two[0]]
    assert tracker.expire(now=0.5) == []
    later = tracker.update([(140, 110, 80, 80)], now=2.0)  # unseen for 1.7 s: a new track
    assert later[0] not in two
