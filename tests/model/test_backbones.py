"""GenD's Perception Encoder and DINOv3 checkpoints: parity with GenD's reference forward at tiny sizes (built
with the libraries GenD uses, preprocessed by those libraries' own processors), the native round trip, the
worker's tensor path, and clear refusals of bad files."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from monitor.model import CheckpointError, Detector, read_checkpoint, write_native
from monitor.model.preprocess import normalise_uint8_batch, pil_batch
from tests.support.gend_backbones import DINOV3_NAME, PE_NAME, make_gend_backbone

KINDS = ("pe", "dinov3")


@pytest.fixture(scope="module")
def images(face_paths):
    return [Image.open(p).convert("RGB") for p in face_paths]


@pytest.fixture(scope="module", params=KINDS)
def gend(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param) / "model.safetensors"
    return request.param, path, make_gend_backbone(path, request.param, seed=3)


def test_loads_with_gends_scores(gend, images):
    kind, path, reference = gend
    expected = reference.p_fake(reference.preprocess(images)).numpy()
    checkpoint = read_checkpoint(path)
    assert checkpoint.architecture.backbone == kind and checkpoint.face_template == "gend"
    assert checkpoint.backbone == (PE_NAME if kind == "pe" else DINOV3_NAME)
    assert checkpoint.model_id.startswith("yermandy/GenD_PE_L@" if kind == "pe" else "yermandy/GenD_DINOv3_L@")
    detector = Detector.from_checkpoint(checkpoint, device="cpu", precision="fp32")
    got = detector.score_images(images)
    spread = expected.max() - expected.min()
    print(f"\n{kind}: max |dp_fake| vs GenD's reference over 32 crops {np.abs(got - expected).max():.1e} "
          f"(scores spread over {spread:.3f})")
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert spread > 1e-3  # the crops score differently: a check at 1e-5 can tell them apart
    # The check can fail: CLIP's normalisation instead of the backbone's moves the scores well beyond it.
    wrong = detector.p_fake(pil_batch(images, 224, "clip"))
    assert np.abs(wrong - expected).max() > 1e-3


def test_the_workers_tensor_path_is_close_and_measured(gend, images):
    kind, path, _ = gend
    detector = Detector.load(path, device="cpu", precision="fp32")
    crops = np.stack([np.asarray(im) for im in images])
    reference_pixels = pil_batch(images, 224, kind)
    tensor_pixels = normalise_uint8_batch(torch.from_numpy(crops), 224, kind)
    pixel_diff = (tensor_pixels - reference_pixels).abs().max().item()
    score_diff = np.abs(detector.score_uint8(crops) - detector.score_images(images)).max()
    print(f"\n{kind}: tensor vs reference preprocessing: pixels max {pixel_diff:.2e}, p_fake max {score_diff:.2e}")
    # PE resizes like CLIP (bicubic, rounded as PIL rounds); DINOv3's float bilinear is the same maths.
    assert pixel_diff < (0.05 if kind == "pe" else 1e-4)
    assert score_diff < 1e-3
    if kind == "dinov3":  # a uint8 PIL bilinear resize, which DINOv3's processor does not do, differs clearly
        pil_uint8 = torch.from_numpy(np.stack([np.array(im.resize((224, 224), Image.BILINEAR)) for im in images]))
        wrong = normalise_uint8_batch(pil_uint8, 224, "dinov3")
        assert (wrong - reference_pixels).abs().max().item() > 1e-2


def test_native_round_trip_keeps_backbone_and_scores(gend, images, tmp_path):
    kind, path, _ = gend
    checkpoint = read_checkpoint(path)
    native = write_native(checkpoint, tmp_path / "native.safetensors")
    again = read_checkpoint(native)
    assert again.metadata()["backbone"] == checkpoint.backbone and again.architecture == checkpoint.architecture
    assert again.source_format == "gend" and again.model_id == checkpoint.model_id
    assert set(again.state_dict) == set(checkpoint.state_dict)  # stored as read: PE's 24x24 grid is kept
    a = Detector.from_checkpoint(checkpoint, device="cpu").score_images(images[:4])
    b = Detector.load(native, device="cpu").score_images(images[:4])
    np.testing.assert_array_equal(a, b)


def test_dinov3_saved_by_transformers_5_loads_the_same(tmp_path, images):
    old = make_gend_backbone(tmp_path / "v4" / "model.safetensors", "dinov3", seed=5)
    make_gend_backbone(tmp_path / "v5" / "model.safetensors", "dinov3", seed=5, transformers4_names=False)
    assert any(k.startswith("feature_extractor.backbone.model.layer.") for k in load_file(tmp_path / "v5" / "model.safetensors"))
    expected = old.p_fake(old.preprocess(images[:4])).numpy()
    got = Detector.load(tmp_path / "v5" / "model.safetensors", device="cpu").score_images(images[:4])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_bad_files_are_refused_clearly(gend, tmp_path):
    kind, path, _ = gend
    folder = tmp_path / "bad"
    folder.mkdir()
    config = json.loads(path.with_name("config.json").read_text())
    tensors = load_file(path)

    def write(state, cfg):
        save_file(state, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(cfg))
        return folder / "model.safetensors"

    # A truncated file.
    data = path.read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(folder / "model.safetensors")
    # A backbone we do not know (GenD's dispatch would take any "dino" for DINOv3; we name what we support).
    with pytest.raises(CheckpointError, match="unsupported backbone 'facebook/dinov2-large'.*vit_pe_core"):
        read_checkpoint(write(tensors, {**config, "backbone": "facebook/dinov2-large"}))
    # The config names the other supported backbone.
    other = DINOV3_NAME if kind == "pe" else PE_NAME
    with pytest.raises(CheckpointError):
        Detector.load(write(tensors, {**config, "backbone": other}), device="cpu")
    # A missing tensor: named.
    victim = next(k for k in tensors if k.endswith("blocks.1.norm2.weight") or k.endswith("layer.1.norm2.weight"))
    with pytest.raises(CheckpointError, match="norm2.weight"):
        Detector.load(write({k: v for k, v in tensors.items() if k != victim}, config), device="cpu")
    # A stray tensor outside GenD's names.
    with pytest.raises(CheckpointError, match="unexpected tensor 'extra.weight'"):
        read_checkpoint(write({**tensors, "extra.weight": torch.zeros(2)}, config))
    # A head for three classes.
    with pytest.raises(CheckpointError, match="binary"):
        read_checkpoint(write({**tensors, "model.linear.weight": torch.zeros(3, tensors["model.linear.weight"].shape[1]),
                               "model.linear.bias": torch.zeros(3)}, config))
