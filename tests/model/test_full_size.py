"""The one full-size test: the real ViT-L/14 shapes load, convert and score (random weights)."""

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from monitor.model import VIT_L14, Detector, read_checkpoint, write_native
from tests.support.reference_models import make_gend_full_size


@pytest.mark.full_size
def test_full_size_vit_l14_loads_converts_and_scores(tmp_path, face_paths):
    source = tmp_path / "gend" / "model.safetensors"
    source.parent.mkdir()
    make_gend_full_size(source)
    with safe_open(source, "pt") as f:
        assert len(list(f.keys())) == 394  # the published GenD file's tensor count (MODEL.md)
    checkpoint = read_checkpoint(source)
    assert checkpoint.architecture == VIT_L14
    assert len(checkpoint.state_dict) == 24 * 12 + 9  # open_clip names: 12 per block, 9 outside
    native = write_native(checkpoint, tmp_path / "GenD_CLIP_L_14.safetensors")
    images = [Image.open(p) for p in face_paths[:2]]
    from_source = Detector.from_checkpoint(checkpoint, device="cpu", precision="fp32").score_images(images)
    del checkpoint
    from_native = Detector.load(native, device="cpu", precision="fp32").score_images(images)
    assert from_source.shape == (2,)
    assert np.isfinite(from_source).all()
    np.testing.assert_array_equal(from_source, from_native)


@pytest.mark.full_size
@pytest.mark.parametrize("kind", ["pe", "dinov3"])
def test_full_size_gend_backbones_load_convert_and_score(kind, tmp_path, face_paths):
    from monitor.model.architecture import DINOV3_L16, PE_L14
    from tests.support.gend_backbones import make_gend_backbone

    source = tmp_path / "gend" / "model.safetensors"
    reference = make_gend_backbone(source, kind, full_size=True)
    images = [Image.open(p).convert("RGB") for p in face_paths[:2]]
    expected = reference.p_fake(reference.preprocess(images)).numpy()
    del reference
    with safe_open(source, "pt") as f:
        assert len(list(f.keys())) == {"pe": 310, "dinov3": 417}[kind]  # GEND.md: the published files' counts
    checkpoint = read_checkpoint(source)
    assert checkpoint.architecture == {"pe": PE_L14, "dinov3": DINOV3_L16}[kind]
    native = write_native(checkpoint, tmp_path / f"{kind}.safetensors")
    del checkpoint
    scores = Detector.load(native, device="cpu", precision="fp32").score_images(images)
    print(f"\nfull-size {kind}: p_fake {scores}, reference {expected}")
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0)
