"""Offline scoring: the paper's video protocol (`monitor score`) and evaluation (`monitor eval`)."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from .contracts import Frame
from .errors import InputError
from .progress import progress
from .redact import redact

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class VideoError(InputError):
    """A file that cannot be read as video, with the reason."""


def count_frames(path: str) -> int:
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoError(f"{redact(path)}: no video stream")
            stream = container.streams.video[0]
            if stream.frames:
                return stream.frames
            return sum(1 for _ in container.decode(stream))
    except av.FFmpegError as e:
        raise VideoError(f"{redact(path)}: not a readable video ({type(e).__name__}: {redact(e)})") from None


def sample_frames(path: str, count: int):
    """Yield (index, RGB frame) at np.linspace(0, n-1, count) of the decoded frames (the paper's sampling)."""
    import av

    total = count_frames(path)
    if total == 0:
        return
    wanted = sorted(set(np.linspace(0, total - 1, count).round().astype(int).tolist()))
    next_wanted = 0
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if next_wanted < len(wanted) and index == wanted[next_wanted]:
                    next_wanted += 1
                    yield index, frame.to_ndarray(format="rgb24")
                    if next_wanted == len(wanted):
                        return
    except av.FFmpegError as e:
        raise VideoError(f"{redact(path)}: decoding failed at frame {next_wanted} ({type(e).__name__})") from None


def score_video(detector, cropper, path: str, frames: int = 32, per_track: bool = False) -> dict:
    """The paper's protocol: `frames` uniformly spaced frames, the largest face of each (every tracked face
    with `per_track`), video p_fake = mean of frame p_fake."""
    per_frame, tracks, without_face = [], defaultdict(list), 0
    for index, image in progress(sample_frames(path, frames), total=frames, desc="frames", unit="frame"):
        frame = Frame("offline", index, time.time(), None, image)
        result = cropper.process(frame)
        if not result.crops:
            without_face += 1
            continue
        chosen = result.crops if per_track else result.crops[:1]
        scores = detector.score_uint8(np.stack([c.crop for c in chosen]))
        per_frame.append({"index": index, "p_fake": round(float(scores[0]), 6)})
        for crop, score in zip(chosen, scores):
            tracks[crop.track_id].append(float(score))
    report = {
        "video": path,
        "p_fake": round(float(np.mean([f["p_fake"] for f in per_frame])), 6) if per_frame else None,
        "frames_scored": len(per_frame),
        "frames_without_face": without_face,
        "frames": per_frame,
        "model_id": detector.info.model_id,
    }
    if per_track:
        report["tracks"] = [{"track_id": t, "p_fake": round(float(np.mean(s)), 6), "frames_scored": len(s)}
                            for t, s in sorted(tracks.items())]
    if detector.info.untrained:
        report["untrained_model"] = True
    return report


def score_crop_folder(detector, folder: Path) -> list[float]:
    from PIL import Image

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    images = [Image.open(p).convert("RGB") for p in paths]
    return detector.score_images(images).tolist() if images else []


def auroc(labels: list[int], scores: list[float]) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); labels 1 = fake."""
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    positives, negatives = (labels == 1).sum(), (labels == 0).sum()
    if not positives or not negatives:
        return float("nan")
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def threshold_for_fpr(real_scores: list[float], fpr: float) -> float:
    """Smallest threshold that at most `fpr` of the real scores reach."""
    from .scoring.calibrate import threshold_at

    return threshold_at(list(real_scores), fpr)[0]


def agreement(model_ids: list[str], per_video: list[dict[str, float]], thresholds: list[float | None]) -> list[dict]:
    """For each pair of models: on the videos both scored, how often they make the same call (video score at or
    above each model's own threshold), how many each flags alone, and the correlation of their video scores."""
    pairs = []
    for i in range(len(model_ids)):
        for j in range(i + 1, len(model_ids)):
            common = sorted(set(per_video[i]) & set(per_video[j]))
            a = np.array([per_video[i][v] for v in common])
            b = np.array([per_video[j][v] for v in common])
            entry = {"models": [model_ids[i], model_ids[j]], "videos": len(common),
                     "score_correlation": round(float(np.corrcoef(a, b)[0, 1]), 4) if len(common) > 1 else None}
            if thresholds[i] is not None and thresholds[j] is not None and common:
                flag_a, flag_b = a >= thresholds[i], b >= thresholds[j]
                entry.update(same_call=round(float(np.mean(flag_a == flag_b)), 4),
                             both_flagged=int(np.sum(flag_a & flag_b)), only_first=int(np.sum(flag_a & ~flag_b)),
                             only_second=int(np.sum(~flag_a & flag_b)))
            pairs.append(entry)
    return pairs
