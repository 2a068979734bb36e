"""`monitor demo`: the daemon on the built-in demo stream."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import InputError
from .run import run as run_daemon


def add_parser(commands) -> None:
    demo = commands.add_parser(
        "demo", help="run the daemon on the built-in demo stream (no network needed)",
        description="Run the daemon on config/demo.toml: a built-in demo stream (made offline from a public-domain "
                    "photo, looped in real time), a local redis-server started for it, the pulled checkpoint if "
                    "there is one, else an UNTRAINED network (announced in the log, marked in every alert). "
                    "Watch the alerts with the `monitor subscribe` line it prints. Ctrl-C stops it.")
    demo.add_argument("--config", default=None, metavar="FILE", help="default: the repository's config/demo.toml")
    demo.set_defaults(handler=run)


def run(args) -> int:
    from ..demo import make_demo_video

    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepfake-monitor" / "demo"
    os.environ.setdefault("MONITOR_DEMO_DIR", str(folder))
    os.environ.setdefault("MONITOR_DEMO_VIDEO", str(make_demo_video(folder / "astronaut.mp4")))
    args.config = args.config or str(Path(__file__).resolve().parents[2] / "config" / "demo.toml")
    if not Path(args.config).is_file():
        raise InputError(f"{args.config}: demo config not found (pass --config)")
    print(f"monitor: demo stream {os.environ['MONITOR_DEMO_VIDEO']}", file=sys.stderr)
    return run_daemon(args)
