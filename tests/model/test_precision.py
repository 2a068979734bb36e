"""Precision modes and device selection."""

import numpy as np
import pytest
import torch
from torch import nn

from monitor.model import Detector, resolve_device, resolve_precision
from tests.support.reference_models import make_gend


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("gend") / "model.safetensors"
    make_gend(path)
    return path


@pytest.mark.parametrize("precision,tolerance", [("bf16-autocast", 2e-2), ("bf16", 5e-2), ("fp16", 5e-3)])
def test_reduced_precisions_stay_close_to_fp32(checkpoint_path, precision, tolerance):
    pixels = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    reference = Detector.load(checkpoint_path, device="cpu", precision="fp32").p_fake(pixels)
    detector = Detector.load(checkpoint_path, device="cpu", precision=precision)
    got = detector.p_fake(pixels)
    print(f"{precision}: max |dp_fake| vs fp32 = {np.abs(got - reference).max():.2e}")
    assert np.isfinite(got).all()
    assert np.abs(got - reference).max() < tolerance


def test_half_precisions_keep_layernorm_and_head_in_fp32(checkpoint_path):
    detector = Detector.load(checkpoint_path, device="cpu", precision="bf16")
    norms = [m for m in detector.network.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 + 2 * 2  # ln_pre, ln_post, two per block
    assert all(m.weight.dtype == torch.float32 for m in norms)
    assert detector.network.head.weight.dtype == torch.float32
    assert detector.network.visual.conv1.weight.dtype == torch.bfloat16
    assert detector.logits(torch.randn(1, 3, 224, 224)).dtype == torch.float32


def test_device_and_precision_defaults_and_errors():
    assert resolve_device(None) == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    assert resolve_precision(None, torch.device("cpu")) == "fp32"
    assert resolve_precision(None, torch.device("cuda:0")) == "bf16-autocast"
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        resolve_precision("int8", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown device|unsupported device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:1")


def test_untrained_model_is_marked():
    from monitor.model import Architecture

    detector = Detector.untrained(Architecture(width=64, layers=1, mlp_width=256), device="cpu")
    assert detector.info.untrained
    assert detector.info.model_id == "untrained-random-init"
    scores = detector.p_fake(torch.randn(2, 3, 224, 224))
    assert ((scores > 0) & (scores < 1)).all()
