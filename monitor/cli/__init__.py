"""The `monitor` command line: one module per command (vLLM's `entrypoints/cli` layout).

Exit codes (`monitor.errors`): 0 success; 1 a runtime failure, or some inputs failed (the rest were
processed); 2 bad invocation, configuration or unusable input (arguments, config, checkpoint); 3 a network
resource a command needs is unreachable (the model hub for `model pull`; Redis for `record export`, `streams`
and `cluster status`). Commands raise the errors; they are mapped to exit codes once, in `main`, as one line on
stderr.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import MonitorError
from ..redact import redact
from . import (
    calibrate,
    check_config,
    cluster,
    crop,
    demo,
    evaluate,
    model,
    record,
    report,
    run,
    score,
    score_images,
    sinks,
    streams,
    subscribe,
)

# In the order `monitor --help` lists them.
COMMANDS = (model, score_images, crop, score, evaluate, subscribe, calibrate, record, run, check_config, report, sinks,
            streams, cluster, demo)
NATIVE_STDERR = ("crop", "score", "eval")  # they run mediapipe: LiteRT's banners go to the log (debug)
DAEMONS = ("run", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitor",
        description="Live deepfake monitor: scores faces in video with the CLIP ViT-L/14 deepfake detector "
                    "(Yermakov et al., 2025).",
        epilog="Exit codes: 0 ok, 1 a runtime failure or some inputs failed, 2 bad invocation, configuration or "
               "input (the message names the key or file), 3 a network resource unreachable (the model hub for "
               "`model pull`; Redis for `record export`, `streams`, `cluster status`).")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def fail(message: str, code: int) -> int:
    print(f"monitor: error: {redact(message)}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in NATIVE_STDERR:
        from ..logs import capture_native_stderr

        capture_native_stderr()
    try:
        code = args.handler(args)
    except MonitorError as e:  # the one place errors become exit codes
        return fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        return 130
    if argv is None and args.command in DAEMONS:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """The daemon has stopped: events delivered or spooled, servers and files closed. What is left is the
    interpreter's finalization (torch, mediapipe and a batch an abandoned device thread may still be running):
    about 2 s on a CPU host, for nothing. The process ends now instead."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
