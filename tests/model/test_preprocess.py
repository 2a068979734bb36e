"""Preprocessing: the PIL path is bit-identical to transformers' CLIP processor; the tensor path is close."""

import numpy as np
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil

from monitor.model import Detector
from monitor.model.preprocess import clip_transform, normalise_uint8_batch


def test_pil_path_is_bit_identical_to_clip_image_processor(face_paths):
    # Defaults are openai/clip-vit-large-patch14's processor config (shortest edge 224, bicubic, CLIP mean/std).
    processor = CLIPImageProcessorPil()
    transform = clip_transform(224)
    for path in face_paths:
        image = Image.open(path).convert("RGB")
        ours = transform(image)
        theirs = torch.from_numpy(processor(images=image, return_tensors="np")["pixel_values"][0])
        assert ours.shape == theirs.shape == (3, 224, 224)
        assert torch.equal(ours, theirs), path


def test_tensor_path_difference_is_small_and_measured(face_paths):
    transform = clip_transform(224)
    images = [Image.open(p).convert("RGB") for p in face_paths]
    reference = torch.stack([transform(im) for im in images])
    crops = torch.from_numpy(np.stack([np.asarray(im) for im in images]))
    ours = normalise_uint8_batch(crops, 224)
    diff = (ours - reference).abs()
    print(f"tensor vs PIL preprocessing on 32 crops: max {diff.max():.4f}, mean {diff.mean():.5f} (normalised units)")
    assert diff.max() < 0.05
    assert diff.mean() < 0.005
    # Already at the model size, the tensor path is exact up to float rounding.
    resized = [im.resize((224, 224), Image.BICUBIC) for im in images[:4]]
    exact = normalise_uint8_batch(torch.from_numpy(np.stack([np.asarray(im) for im in resized])), 224)
    assert (exact - torch.stack([transform(im) for im in resized])).abs().max() < 1e-5


def test_tensor_path_scores_match_pil_path(face_paths, tmp_path):
    from tests.support.reference_models import make_gend

    make_gend(tmp_path / "model.safetensors")
    detector = Detector.load(tmp_path / "model.safetensors", device="cpu", precision="fp32")
    images = [Image.open(p).convert("RGB") for p in face_paths]
    pil_scores = detector.score_images(images)
    tensor_scores = detector.score_uint8(np.stack([np.asarray(im) for im in images]))
    delta = np.abs(pil_scores - tensor_scores).max()
    print(f"tensor vs PIL preprocessing: max |dp_fake| = {delta:.2e}")
    assert delta < 1e-3
