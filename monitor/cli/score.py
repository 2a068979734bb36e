"""`monitor score`: a video file scored with the paper's protocol."""

from __future__ import annotations

import contextlib
import json

from ..errors import EXIT_OK, InputError
from .base import add_model_options, open_scoring


def add_parser(commands) -> None:
    score = commands.add_parser(
        "score", help="score a video file with the paper's protocol",
        description="Score a video file as the paper does: --frames uniformly spaced frames, the largest face of "
                    "each, video p_fake = mean of frame p_fake. Prints one JSON object. Crops are aligned with the "
                    "checkpoint's own face template.")
    add_model_options(score)
    score.add_argument("video", metavar="VIDEO")
    score.add_argument("--frames", type=int, default=32, help="frames to sample (default 32)")
    score.add_argument("--per-track", action="store_true", help="score every face track, not only the largest face")
    score.set_defaults(handler=run)


def run(args) -> int:
    from ..offline import score_video

    try:
        detector, cropper = open_scoring(args)
        with contextlib.closing(cropper):
            print(json.dumps(score_video(detector, cropper, args.video, args.frames, args.per_track)))
    except (ValueError, FileNotFoundError) as e:
        raise InputError(str(e)) from None
    return EXIT_OK
