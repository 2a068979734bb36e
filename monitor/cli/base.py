"""What the commands share: their common options and helpers. Each command is one module of this package with
`add_parser(commands)` (its arguments, `handler=run`) and `run(args) -> int`; errors are raised as the
`monitor.errors` hierarchy and become exit codes in one place, `monitor.cli.main`."""

from __future__ import annotations

import argparse
import os

from ..errors import EXIT_FAILURE, ConfigError

EXIT_PARTIAL = EXIT_FAILURE  # some inputs failed, the rest were processed


def redis_default() -> str:
    return os.environ.get("MONITOR_REDIS_URL", "redis://127.0.0.1:6379/0")


def add_model_options(parser: argparse.ArgumentParser, several: bool = False) -> None:
    from ..model import PRECISIONS

    parser.add_argument("--model", required=True, metavar="PATH", action="append" if several else "store",
                        help="checkpoint: a native .safetensors from `monitor model convert/pull`, the published "
                             "Lightning model.ckpt, or GenD's model.safetensors (config.json beside it; CLIP, PE "
                             "or DINOv3 backbone)" + ("; repeat to compare models on the same data" if several else ""))
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="default: bf16-autocast on CUDA (the authors' mode), fp32 on CPU")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the first GPU, else cpu)")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N", help="crops per forward pass (default 16)")


def load_detector(args):
    from ..model import Detector

    return Detector.load(args.model, device=args.device, precision=args.precision)


def open_scoring(args):
    from ..faces.pipeline import FaceCropper, FaceSettings

    if args.frames < 1:
        raise ValueError("--frames must be at least 1")
    detector = load_detector(args)
    return detector, FaceCropper(FaceSettings(), template=detector.info.face_template)


def redis_settings(args):
    from pydantic import ValidationError

    from ..redis import RedisSettings

    try:
        return RedisSettings(url=args.redis, prefix=args.prefix)
    except ValidationError as e:
        error = e.errors()[0]
        raise ConfigError(f"invalid Redis settings: {error['loc'][0]}: {error['msg'].removeprefix('Value error, ')}"
                          ) from None


def redis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis", default=redis_default(),
                   metavar="URL", help="default $MONITOR_REDIS_URL or redis://127.0.0.1:6379/0 (redis+sentinel:// "
                                       "for Sentinel)")
    p.add_argument("--prefix", default="deepfake", help="key prefix (default deepfake)")
