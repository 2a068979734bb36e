"""`monitor score-images`: score already-aligned face crops."""

from __future__ import annotations

import json
import sys

from ..errors import EXIT_OK, InputError
from .base import EXIT_PARTIAL, add_model_options, load_detector


def add_parser(commands) -> None:
    score_images = commands.add_parser(
        "score-images", help="score already-aligned face crops",
        description="Score already-aligned face crops (256x256 like the training data). Prints one JSON object "
                    "per line, {\"path\": ..., \"p_fake\": ...}, in input order. Unreadable images are reported "
                    "on stderr and make the exit code 1, after the readable ones are scored.")
    add_model_options(score_images)
    score_images.add_argument("images", nargs="+", metavar="IMAGE")
    score_images.set_defaults(handler=run)


def run(args) -> int:
    try:
        detector = load_detector(args)
        failures = score_paths(detector, args.images, args.batch_size)
    except ValueError as e:
        raise InputError(str(e)) from None
    if failures:
        print(f"monitor: {failures} of {len(args.images)} images could not be read", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def score_paths(detector, paths: list[str], batch_size: int) -> int:
    """Score readable images in input order; report unreadable ones on stderr. Returns the failure count."""
    from PIL import Image, UnidentifiedImageError

    from ..progress import progress

    if batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    failures = 0
    pending: list[tuple[str, Image.Image]] = []

    def flush() -> None:
        scores = detector.score_images([image for _, image in pending], batch_size=batch_size)
        for (path, _), score in zip(pending, scores):
            record = {"path": path, "p_fake": round(float(score), 6)}
            if detector.info.untrained:
                record["untrained_model"] = True
            print(json.dumps(record), flush=True)
        pending.clear()

    for path in progress(paths, desc="scoring", unit="crop"):
        try:
            with Image.open(path) as image:
                pending.append((path, image.convert("RGB")))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            # Keep stdout in input order: score what is pending before reporting the failure.
            flush()
            failures += 1
            reason = "not an image PIL can identify" if isinstance(e, UnidentifiedImageError) else (e.strerror or str(e))
            print(f"monitor: error: {path}: cannot read image: {reason}", file=sys.stderr)
            continue
        if len(pending) >= batch_size:
            flush()
    flush()
    return failures
