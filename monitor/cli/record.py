"""`monitor record export`: the daemon's recorded scores as the CSV calibrate reads."""

from __future__ import annotations

import sys

from ..errors import EXIT_OK, InputError
from .base import redis_options, redis_settings


def add_parser(commands) -> None:
    record = commands.add_parser("record", help="the daemon's recorded scores ([record])",
                                 description="Work with the scores the daemon records for calibration ([record]).")
    record_commands = record.add_subparsers(dest="record_command", metavar="ACTION", required=True)
    export = record_commands.add_parser(
        "export", help="write recorded scores to the CSV that `monitor calibrate` reads",
        description="Write the score records of <prefix>:scores (one per scored crop of the streams with "
                    "`record = true`) to a CSV, selected by stream and frame time, each row labelled: `real` for "
                    "footage you know is authentic (what calibration needs), `fake` for a known manipulated "
                    "session (to measure detection). --append adds to an earlier export, so one CSV can hold "
                    "several labelled periods. Times: seconds since the epoch or ISO 8601 (no zone: local time).",
        epilog="Exit codes: 0 written, 2 bad arguments, 3 Redis unreachable.")
    redis_options(export)
    export.add_argument("--stream", action="append", default=None, metavar="ID",
                        help="only this stream (repeat for several; default all)")
    export.add_argument("--since", default=None, metavar="TIME", help="frames at or after this time")
    export.add_argument("--until", default=None, metavar="TIME", help="frames before this time")
    export.add_argument("--label", required=True, choices=("real", "fake"),
                        help="what the selected footage is: real (authentic) or fake (manipulated)")
    export.add_argument("--out", required=True, metavar="SCORES.csv")
    export.add_argument("--append", action="store_true", help="add to SCORES.csv instead of replacing it")
    record.set_defaults(handler=run)


def run(args) -> int:
    import asyncio

    from ..recording import export, parse_time, progress_printer

    settings = redis_settings(args)
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    if since is not None and until is not None and until <= since:
        raise InputError("--until must be after --since")
    try:
        summary = asyncio.run(export(settings, args.out, args.label, args.stream, since, until, args.append,
                                     progress_printer()))
    except ValueError as e:  # e.g. a malformed URL
        raise InputError(f"invalid Redis URL {args.redis}: {e}") from None
    except OSError as e:
        raise InputError(f"{args.out}: {e.strerror or e}") from None
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(summary.describe(args.out, args.label))
    return EXIT_OK
