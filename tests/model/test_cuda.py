"""GPU behaviour (skipped without CUDA; run on a GPU host): precisions, CUDA graphs, the uint8 upload path."""

import numpy as np
import pytest
import torch

from monitor.model import Detector
from monitor.model.preprocess import normalise_uint8_batch
from tests.support.reference_models import make_gend

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("gend") / "model.safetensors"
    make_gend(path)
    return path


@pytest.fixture(scope="module")
def crops():
    return np.random.default_rng(0).integers(0, 256, size=(24, 256, 256, 3), dtype=np.uint8)


def test_default_precision_on_cuda_is_bf16_autocast(checkpoint_path):
    detector = Detector.load(checkpoint_path)
    assert detector.device.type == "cuda" and detector.precision == "bf16-autocast"


@pytest.mark.parametrize("precision,tolerance", [("fp32", 1e-4), ("bf16-autocast", 2e-2), ("bf16", 5e-2), ("fp16", 5e-3)])
def test_cuda_matches_cpu_fp32(checkpoint_path, crops, precision, tolerance):
    reference = Detector.load(checkpoint_path, device="cpu", precision="fp32").score_uint8(crops)
    got = Detector.load(checkpoint_path, device="cuda", precision=precision).score_uint8(crops)
    print(f"cuda {precision}: max |dp_fake| vs cpu fp32 = {np.abs(got - reference).max():.2e}")
    assert np.abs(got - reference).max() < tolerance


@pytest.mark.parametrize("precision", ["fp32", "bf16-autocast", "bf16"])
def test_cuda_graphs_match_eager(checkpoint_path, crops, precision):
    detector = Detector.load(checkpoint_path, device="cuda", precision=precision)
    pixels = normalise_uint8_batch(torch.from_numpy(crops).cuda(), 224)
    eager = torch.softmax(detector.logits(pixels), -1)[:, 1].cpu()
    detector.enable_cuda_graphs([1, 8, 16])
    assert detector.graph_batch_sizes == (1, 8, 16)
    # 24 crops run as 16 + 8; 5 crops are padded into the bucket of 8.
    graphed = torch.softmax(detector.logits(pixels), -1)[:, 1].cpu()
    padded = torch.softmax(detector.logits(pixels[:5]), -1)[:, 1].cpu()
    assert torch.allclose(eager, graphed, atol=1e-3)
    assert torch.allclose(eager[:5], padded, atol=1e-3)
