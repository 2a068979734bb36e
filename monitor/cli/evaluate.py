"""`monitor eval`: AUROC on a labelled list of videos or crop folders."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from ..errors import EXIT_OK, InputError
from .base import EXIT_PARTIAL, add_model_options, open_scoring


def add_parser(commands) -> None:
    evaluate = commands.add_parser(
        "eval", help="AUROC on a labelled list of videos or crop folders",
        description="Evaluate on LIST.csv rows `path,label` (label real/fake; path a video, or a folder of "
                    "already-aligned crops = one video; relative to the CSV). Prints frame- and video-level AUROC "
                    "(the paper's metric) and the threshold for --fpr on the real videos. With --model more than "
                    "once: one summary per model and their agreement (share of videos both call the same at their "
                    "own --fpr thresholds, correlation of video scores); the CSVs then carry a model_id column.")
    add_model_options(evaluate, several=True)
    evaluate.add_argument("list", metavar="LIST.csv")
    evaluate.add_argument("--frames", type=int, default=32, help="frames sampled per video (default 32)")
    evaluate.add_argument("--fpr", type=float, default=0.01, help="target false-positive rate (default 0.01)")
    evaluate.add_argument("--out", metavar="VIDEOS.csv", help="write per-video scores here")
    evaluate.add_argument("--frames-out", metavar="FRAMES.csv", help="write per-frame scores (input for calibrate)")
    evaluate.set_defaults(handler=run)


def run(args) -> int:
    import argparse as _argparse
    import csv

    from ..offline import VideoError, agreement, auroc, score_crop_folder, score_video, threshold_for_fpr

    try:
        with open(args.list, newline="") as f:
            rows = [r for r in csv.DictReader(f)]
    except OSError as e:
        raise InputError(f"{args.list}: {e.strerror}") from None
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise InputError(f"{args.list}: expected a header `path,label` and at least one row")
    for number, row in enumerate(rows, start=2):
        if row["label"] not in ("real", "fake"):
            raise InputError(f"{args.list}: line {number}: label must be real or fake, got {row['label']!r}")
    if not 0 < args.fpr < 1:
        raise InputError("--fpr must be between 0 and 1")
    base = Path(args.list).resolve().parent
    summaries, all_videos, all_frames, failures = [], [], [], 0
    for model_path in args.model:
        try:
            detector, cropper = open_scoring(_argparse.Namespace(**{**vars(args), "model": model_path}))
        except (ValueError, FileNotFoundError) as e:
            raise InputError(str(e)) from None
        videos, frames, failures_before = [], [], failures
        with contextlib.closing(cropper):
            for row in rows:
                path = base / row["path"]
                label = 1 if row["label"] == "fake" else 0
                try:
                    if path.is_dir():
                        scores = score_crop_folder(detector, path)
                        indexed = list(enumerate(scores))
                    else:
                        report = score_video(detector, cropper, str(path), args.frames)
                        indexed = [(f["index"], f["p_fake"]) for f in report["frames"]]
                except VideoError as e:
                    print(f"monitor: error: {e}", file=sys.stderr)
                    failures += 1
                    continue
                if not indexed:
                    print(f"monitor: warning: {row['path']}: no face scored", file=sys.stderr)
                    continue
                videos.append((row["path"], row["label"], label, float(sum(s for _, s in indexed) / len(indexed)),
                               len(indexed)))
                frames += [(row["path"], row["label"], label, i, s) for i, s in indexed]
        real = [v[3] for v in videos if v[2] == 0]
        summaries.append({
            "videos": len(videos), "frames": len(frames), "failed": failures - failures_before,
            "frame_auroc": auroc([f[2] for f in frames], [f[4] for f in frames]),
            "video_auroc": auroc([v[2] for v in videos], [v[3] for v in videos]),
            "fpr": args.fpr, "video_threshold": threshold_for_fpr(real, args.fpr) if real else None,
            "model_id": detector.info.model_id, "backbone": detector.info.architecture.backbone,
        })
        all_videos.append(videos)
        all_frames.append(frames)
        del detector
    several = len(args.model) > 1
    ids = [s["model_id"] for s in summaries]
    if args.out:
        with open(args.out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label", "p_fake", "frames_scored"] + (["model_id"] if several else []))
            for model_id, videos in zip(ids, all_videos):
                writer.writerows([(v[0], v[1], round(v[3], 6), v[4]) + ((model_id,) if several else ()) for v in videos])
    if args.frames_out:
        with open(args.frames_out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["video", "label", "index", "p_fake"] + (["model_id"] if several else []))
            for model_id, frames in zip(ids, all_frames):
                writer.writerows([(fr[0], fr[1], fr[3], round(fr[4], 6)) + ((model_id,) if several else ())
                                  for fr in frames])
    if not several:
        print(json.dumps(summaries[0]))
    else:
        per_video = [{v[0]: v[3] for v in videos} for videos in all_videos]
        thresholds = [s["video_threshold"] for s in summaries]
        print(json.dumps({"models": summaries, "agreement": agreement(ids, per_video, thresholds)}))
    return EXIT_PARTIAL if failures else EXIT_OK
