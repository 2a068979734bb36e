"""`monitor crop`, `monitor score` and `monitor eval` as real subprocesses on real files."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data
from sklearn.metrics import roc_auc_score

from tests.support.media import face_frames, write_mp4
from tests.support.reference_models import make_lightning

MONITOR = [sys.executable, "-m", "monitor.cli"]


def run(*args, timeout=300):
    return subprocess.run([*MONITOR, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    make_lightning(path, width=64, layers=1)
    return path


@pytest.fixture(scope="module")
def crops(face_paths):
    return [np.asarray(Image.open(p).convert("RGB")) for p in face_paths[::4]]


def test_crop_writes_the_aligned_face_or_exits_2(tmp_path):
    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    result = run("crop", tmp_path / "astronaut.png", "--out", tmp_path / "crop.png")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # LiteRT's banners and warnings (54 lines) go to the log at debug level
    assert Image.open(tmp_path / "crop.png").size == (256, 256)
    assert json.loads(result.stdout)["faces"] == 1
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(tmp_path / "blank.png")
    blank = run("crop", tmp_path / "blank.png", "--out", tmp_path / "none.png")
    assert blank.returncode == 2 and "no face found" in blank.stderr
    assert not (tmp_path / "none.png").exists()


def test_score_counts_sampled_frames_with_a_face(ckpt, crops, tmp_path):
    video = write_mp4(tmp_path / "faces.mp4", face_frames(crops, 100, faces_in=lambda i: i < 60))
    result = run("score", "--model", ckpt, video)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    report = json.loads(result.stdout)
    sampled = np.linspace(0, 99, 32).round().astype(int)
    assert report["frames_scored"] == int((sampled < 60).sum())
    assert report["frames_without_face"] == int((sampled >= 60).sum())
    assert [f["index"] for f in report["frames"]] == [int(i) for i in sampled if i < 60]
    assert report["p_fake"] == pytest.approx(np.mean([f["p_fake"] for f in report["frames"]]), abs=1e-6)
    tracked = json.loads(run("score", "--model", ckpt, video, "--frames", "8", "--per-track").stdout)
    assert tracked["frames_scored"] == 5 and len(tracked["tracks"]) >= 1


def test_score_without_faces_and_on_bad_files(ckpt, tmp_path):
    empty = write_mp4(tmp_path / "empty.mp4", face_frames([np.zeros((256, 256, 3), np.uint8)], 30,
                                                          faces_in=lambda i: False))
    report = json.loads(run("score", "--model", ckpt, empty, "--frames", "8").stdout)
    assert report["frames_scored"] == 0 and report["p_fake"] is None and report["frames_without_face"] == 8
    (tmp_path / "notes.mp4").write_text("not a video at all")
    bad = run("score", "--model", ckpt, tmp_path / "notes.mp4")
    assert bad.returncode == 2 and "not a readable video" in bad.stderr and "Traceback" not in bad.stderr
    good = (tmp_path / "empty.mp4").read_bytes()
    corrupt = good[:2000] + os.urandom(len(good) - 4000) + good[-2000:]
    (tmp_path / "corrupt.mp4").write_bytes(corrupt)
    result = run("score", "--model", ckpt, tmp_path / "corrupt.mp4", "--frames", "8")
    assert "Traceback" not in result.stderr and result.returncode in (0, 2)


def test_eval_auroc_equals_sklearn(ckpt, face_paths, tmp_path):
    folders = sorted({p.parent for p in face_paths})
    rows = [{"path": str(f), "label": "real" if "real" in str(f).lower() else "fake"} for f in folders]
    with open(tmp_path / "list.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    result = run("eval", tmp_path / "list.csv", "--model", ckpt, "--out", tmp_path / "videos.csv",
                 "--frames-out", tmp_path / "frames.csv", "--fpr", "0.25")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    videos = list(csv.DictReader(open(tmp_path / "videos.csv")))
    frames = list(csv.DictReader(open(tmp_path / "frames.csv")))
    assert summary["videos"] == 8 and summary["frames"] == 32
    video_truth = roc_auc_score([v["label"] == "fake" for v in videos], [float(v["p_fake"]) for v in videos])
    frame_truth = roc_auc_score([f["label"] == "fake" for f in frames], [float(f["p_fake"]) for f in frames])
    assert summary["video_auroc"] == pytest.approx(video_truth, abs=1e-6)
    assert summary["frame_auroc"] == pytest.approx(frame_truth, abs=1e-6)
    # The per-frame file feeds calibrate directly.
    assert run("calibrate", tmp_path / "frames.csv", "--window-crops", "4", "--fpr", "0.2").returncode == 0


def test_eval_rejects_bad_lists(ckpt, tmp_path):
    (tmp_path / "bad.csv").write_text("path,label\nx,maybe\n")
    result = run("eval", tmp_path / "bad.csv", "--model", ckpt)
    assert result.returncode == 2 and "label must be real or fake" in result.stderr
    (tmp_path / "nohead.csv").write_text("a,b\n")
    assert run("eval", tmp_path / "nohead.csv", "--model", ckpt).returncode == 2


def test_eval_and_calibrate_compare_models(ckpt, face_paths, tmp_path):
    """Two checkpoints (CLIP and GenD's PE) on the same list: one summary each, their agreement computed from
    the per-video scores they wrote; calibrate then needs --model on the combined frames file."""
    import numpy as np

    from tests.support.gend_backbones import make_gend_backbone

    make_gend_backbone(tmp_path / "pe" / "model.safetensors", "pe", seed=4)
    folders = sorted({p.parent for p in face_paths})
    with open(tmp_path / "list.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows({"path": str(d), "label": "real" if "real" in str(d).lower() else "fake"} for d in folders)
    result = run("eval", tmp_path / "list.csv", "--model", ckpt, "--model", tmp_path / "pe" / "model.safetensors",
                 "--out", tmp_path / "videos.csv", "--frames-out", tmp_path / "frames.csv", "--fpr", "0.25")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    first, second = report["models"]
    assert first["backbone"] == "clip" and second["backbone"] == "pe" and first["videos"] == second["videos"] == 8
    (pair,) = report["agreement"]
    assert pair["models"] == [first["model_id"], second["model_id"]] and pair["videos"] == 8
    videos = list(csv.DictReader(open(tmp_path / "videos.csv")))
    scores = {m: {v["path"]: float(v["p_fake"]) for v in videos if v["model_id"] == m} for m in pair["models"]}
    a = np.array([scores[first["model_id"]][p] for p in sorted(scores[first["model_id"]])])
    b = np.array([scores[second["model_id"]][p] for p in sorted(scores[first["model_id"]])])
    assert pair["score_correlation"] == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-3)
    # At --fpr 0.25 of 4 real videos, a video is flagged when it scores above the second-highest real video.
    labels = {v["path"]: v["label"] for v in videos}

    def flagged(model):
        bar = sorted((s for p, s in scores[model].items() if labels[p] == "real"), reverse=True)[1]
        return np.array([scores[model][p] > bar for p in sorted(scores[first["model_id"]])])

    same = np.mean(flagged(first["model_id"]) == flagged(second["model_id"]))
    assert pair["same_call"] == pytest.approx(same, abs=1e-4)
    # The frames file holds both models' scores: calibrate asks which, and takes several.
    frames = tmp_path / "frames.csv"
    assert "several models" in run("calibrate", frames, "--window-crops", "4", "--fpr", "0.2").stderr
    both = run("calibrate", frames, "--window-crops", "4", "--fpr", "0.2", "--json",
               "--model", first["model_id"], "--model", second["model_id"].split("@")[0])
    assert both.returncode == 0, both.stderr
    assert len(json.loads(both.stdout)["models"]) == 2
