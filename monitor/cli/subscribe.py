"""`monitor subscribe`: alert events as JSON lines (catch up, then follow)."""

from __future__ import annotations

from ..errors import EXIT_OK, InputError
from .base import redis_options, redis_settings


def add_parser(commands) -> None:
    subscribe = commands.add_parser(
        "subscribe", help="print alert events as JSON lines (catch up, then follow)",
        description="Print alert events from Redis as JSON lines: first those in the durable log after --since "
                    "(or all with --from-start), then new ones as they arrive. Each line carries `log_id`, the "
                    "entry id to pass to --since to resume without gaps. Rides out Redis outages.")
    redis_options(subscribe)
    subscribe.add_argument("--stream", default=None, metavar="ID", help="only this stream's events")
    start = subscribe.add_mutually_exclusive_group()
    start.add_argument("--since", default=None, metavar="LOG_ID", help="events after this log id")
    start.add_argument("--from-start", action="store_true", help="every event still in the log")
    subscribe.add_argument("--count", type=int, default=None, metavar="N", help="exit after N events")
    subscribe.add_argument("--timeout", type=float, default=None, metavar="S", help="exit after S seconds")
    subscribe.set_defaults(handler=run)


def run(args) -> int:
    import asyncio

    from ..alerts.subscribe import subscribe

    settings = redis_settings(args)
    since = "0" if args.from_start else args.since
    try:
        asyncio.run(subscribe(settings, args.stream, since, args.count, args.timeout))
    except ValueError as e:  # e.g. a malformed URL
        raise InputError(f"invalid Redis URL {args.redis}: {e}") from None
    except BrokenPipeError:
        pass
    return EXIT_OK
