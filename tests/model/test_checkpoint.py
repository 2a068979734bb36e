"""Loading the published formats: parity with the authors' reference forward, and refusal of bad files."""

import json
import os
import zipfile

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from monitor.model import Architecture, CheckpointError, Detector, read_checkpoint, write_native
from monitor.model.preprocess import pil_batch
from tests.support.reference_models import HPARAMS, make_gend, make_lightning

torch.manual_seed(0)


@pytest.fixture(scope="module")
def pixels(face_paths):
    """Real crops through the real preprocessing, plus noise images: what the parity check runs on."""
    crops = pil_batch([Image.open(p) for p in face_paths[::8]], 224)
    return torch.cat([crops, torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))])


@pytest.fixture(scope="module")
def lightning(tmp_path_factory):
    path = tmp_path_factory.mktemp("lightning") / "model.ckpt"
    return path, make_lightning(path)


@pytest.fixture(scope="module")
def gend(tmp_path_factory):
    path = tmp_path_factory.mktemp("gend") / "model.safetensors"
    return path, make_gend(path)


def test_lightning_checkpoint_matches_reference(lightning, pixels):
    path, reference = lightning
    detector = Detector.load(path, device="cpu", precision="fp32")
    expected = reference.p_fake(pixels).numpy()
    got = detector.p_fake(pixels)
    print(f"lightning parity: max |dp_fake| = {abs(got - expected).max():.2e}")
    assert abs(got - expected).max() < 1e-5
    assert detector.info.face_template == "deepfakebench"
    assert detector.info.source_format == "lightning"
    # The check can fail: the untuned base_layer LayerNorms give clearly different scores.
    with reference.feature_extractor.disable_adapter():
        untuned = reference.p_fake(pixels).numpy()
    assert abs(untuned - expected).max() > 1e-3


def test_gend_checkpoint_matches_reference(gend, pixels):
    path, reference = gend
    detector = Detector.load(path, device="cpu", precision="fp32")
    got, expected = detector.p_fake(pixels), reference.p_fake(pixels).numpy()
    print(f"gend parity: max |dp_fake| = {abs(got - expected).max():.2e}")
    assert abs(got - expected).max() < 1e-5
    assert detector.info.face_template == "gend"


@pytest.mark.parametrize("width,layers,patch", [(64, 1, 14), (128, 3, 16)])
def test_architecture_is_inferred_from_shapes(tmp_path, width, layers, patch):
    reference = make_lightning(tmp_path / "model.ckpt", width=width, layers=layers, patch=patch)
    checkpoint = read_checkpoint(tmp_path / "model.ckpt")
    assert checkpoint.architecture == Architecture(image_size=224, patch_size=patch, width=width, layers=layers,
                                                   mlp_width=4 * width)
    pixels = torch.randn(2, 3, 224, 224)
    got = Detector.from_checkpoint(checkpoint, device="cpu", precision="fp32").p_fake(pixels)
    assert abs(got - reference.p_fake(pixels).numpy()).max() < 1e-5


def test_native_round_trip_keeps_scores_and_metadata(lightning, pixels, tmp_path):
    path, _ = lightning
    source = read_checkpoint(path)
    native = tmp_path / "detector.safetensors"
    write_native(source, native)
    loaded = read_checkpoint(native)
    assert loaded.source_sha256 == source.source_sha256 != ""
    assert loaded.source_format == "lightning"
    assert loaded.face_template == "deepfakebench"
    assert loaded.architecture == source.architecture
    assert loaded.model_id == source.model_id
    assert set(load_file(native)) == set(source.state_dict)
    assert all(k.startswith(("visual.", "head.")) for k in load_file(native))
    a = Detector.from_checkpoint(source, device="cpu", precision="fp32").p_fake(pixels)
    b = Detector.load(native, device="cpu", precision="fp32").p_fake(pixels)
    assert (a == b).all()


def test_every_tensor_must_be_consumed(lightning, tmp_path):
    path, _ = lightning
    obj = torch.load(path, weights_only=True)
    extra = dict(obj, state_dict={**obj["state_dict"], "model.extra_head.weight": torch.zeros(2, 2)})
    torch.save(extra, tmp_path / "extra.ckpt")
    with pytest.raises(CheckpointError, match="unexpected tensor 'model.extra_head.weight'"):
        read_checkpoint(tmp_path / "extra.ckpt")
    missing = dict(obj["state_dict"])
    del missing["feature_extractor.base_model.model.vision_model.encoder.layers.1.mlp.fc2.bias"]
    torch.save(dict(obj, state_dict=missing), tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match="does not fit.*Missing key.*resblocks.1.mlp.c_proj.bias"):
        Detector.load(tmp_path / "missing.ckpt", device="cpu")
    no_k = {k: v for k, v in obj["state_dict"].items() if "layers.0.self_attn.k_proj.weight" not in k}
    torch.save(dict(obj, state_dict=no_k), tmp_path / "no_k.ckpt")
    with pytest.raises(CheckpointError, match="layer 0 attention has only"):
        read_checkpoint(tmp_path / "no_k.ckpt")


class _Exploit:
    """Unpickling this calls os.mkdir(marker): the side effect that must never happen."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_callable_is_refused_and_never_runs(lightning, tmp_path):
    path, _ = lightning
    obj = torch.load(path, weights_only=True)
    marker = tmp_path / "pwned"
    obj["hyper_parameters"] = dict(obj["hyper_parameters"], payload=_Exploit(marker))
    torch.save(obj, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refused.*unpickle"):
        read_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()
    # The file really does run code when loaded unsafely: the test can fail.
    torch.load(tmp_path / "evil.ckpt", weights_only=False)
    assert marker.exists()


def test_truncated_and_corrupt_files_give_clear_errors(lightning, gend, tmp_path):
    ckpt, _ = lightning
    data = ckpt.read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(tmp_path / "truncated.ckpt")
    corrupt = bytearray(data)
    corrupt[-2000:] = os.urandom(2000)  # the zip's central directory
    (tmp_path / "corrupt.ckpt").write_bytes(bytes(corrupt))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(tmp_path / "corrupt.ckpt")

    safetensors_path, _ = gend
    folder = tmp_path / "gend"
    folder.mkdir()
    blob = safetensors_path.read_bytes()
    (folder / "model.safetensors").write_bytes(blob[: len(blob) - 1000])
    (folder / "config.json").write_text(safetensors_path.with_name("config.json").read_text())
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(folder / "model.safetensors")

    (tmp_path / "notes.txt").write_text("hello, not a model")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        read_checkpoint(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "absent.ckpt")


@pytest.mark.parametrize("change,message", [
    ({"backbone": "openai/clip-vit-base-patch16"}, "unsupported backbone"),
    ({"head": "MLP"}, "unsupported head 'MLP'"),
    ({"num_classes": 3}, "num_classes is 3"),
])
def test_unknown_backbone_or_head_is_refused(tmp_path, change, message):
    make_lightning(tmp_path / "model.ckpt", width=64, layers=1, hparams={**HPARAMS, **change})
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(tmp_path / "model.ckpt")


def test_gend_needs_its_config(gend, tmp_path):
    path, _ = gend
    (tmp_path / "model.safetensors").write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match="needs its config.json"):
        read_checkpoint(tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"backbone": "openai/clip-vit-large-patch14", "head": "Linear"}))
    with pytest.raises(CheckpointError, match="unsupported head 'Linear'"):
        read_checkpoint(tmp_path / "model.safetensors")


def test_wrong_architecture_shapes_are_refused(gend, tmp_path):
    path, _ = gend
    tensors = load_file(path)
    bad_head = dict(tensors, **{"model.linear.weight": torch.zeros(2, 96)})
    save_file(bad_head, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(path.with_name("config.json").read_text())
    with pytest.raises(CheckpointError, match=r"head weight has shape \[2, 96\]"):
        read_checkpoint(tmp_path / "model.safetensors")
    bad_pos = dict(tensors, **{"feature_extractor.vision_model.embeddings.position_embedding.weight": torch.zeros(200, 128)})
    save_file(bad_pos, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="not 1 \\+ a square patch grid"):
        read_checkpoint(tmp_path / "model.safetensors")
    bad_mlp = dict(tensors, **{"feature_extractor.vision_model.encoder.layers.1.mlp.fc1.weight": torch.zeros(300, 128)})
    save_file(bad_mlp, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="does not fit"):
        Detector.load(tmp_path / "model.safetensors", device="cpu")


def test_native_metadata_must_agree_with_tensors(lightning, tmp_path):
    path, _ = lightning
    checkpoint = read_checkpoint(path)
    native = write_native(checkpoint, tmp_path / "native.safetensors")
    tensors = load_file(native)
    with open(native, "rb") as f:
        pass
    from safetensors import safe_open
    with safe_open(native, "pt") as f:
        metadata = f.metadata()
    metadata["architecture"] = Architecture(width=128, layers=5, mlp_width=512).to_json()
    save_file(tensors, str(tmp_path / "lying.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match="metadata says"):
        read_checkpoint(tmp_path / "lying.safetensors")
    assert zipfile.is_zipfile(path)  # the Lightning file is a torch zip, as published
