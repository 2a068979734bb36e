"""`monitor report`: an alert's self-contained HTML report."""

from __future__ import annotations

from pathlib import Path

from ..errors import EXIT_OK, InputError, RuntimeFailure
from ..redact import redact
from .base import redis_options, redis_settings


def add_parser(commands) -> None:
    report = commands.add_parser(
        "report", help="write an alert's self-contained HTML report (and save its crops)",
        description="Write the report of one alert: stream, times, verdict history, thresholds, model id and "
                    "checkpoint sha256, the scored crops, the frame and the score timeline, in one HTML file with "
                    "everything inline (no external requests). --save-crops also writes the crops as stored, "
                    "for `monitor score-images`.")
    report.add_argument("alert_id", metavar="ALERT_ID")
    redis_options(report)
    report.add_argument("--out", default=None, metavar="FILE.html", help="default alert-<ALERT_ID>.html")
    report.add_argument("--save-crops", default=None, metavar="DIR", help="also write crop-<n>.jpg and frame.jpg here")
    report.set_defaults(handler=run)


def run(args) -> int:
    import asyncio

    from ..alerts.store import AlertStore
    from ..report import render

    settings = redis_settings(args)

    async def fetch():
        store = AlertStore(settings)
        try:
            return (await store.events(args.alert_id), await store.evidence(args.alert_id),
                    await store.files(args.alert_id))
        finally:
            await store.close()

    from redis.exceptions import RedisError

    from ..redis import describe_error
    try:
        events, evidence, files = asyncio.run(fetch())
    except RedisError as e:
        raise RuntimeFailure(describe_error(e, args.redis)) from None
    if not events:
        raise InputError(f"no alert {args.alert_id!r} in {redact(args.redis)} (unknown, or older than redis.alert_ttl_s)")
    out = Path(args.out or f"alert-{args.alert_id}.html")
    out.write_text(render(events, evidence, files, source=f" from {redact(args.redis)}"))
    print(f"wrote {out} ({len(files)} images inline)")
    if args.save_crops:
        folder = Path(args.save_crops)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        crops = sorted(n for n in files if n.startswith("crop-"))
        print(f"saved {len(files)} images in {folder}; re-score the crops with:\n  monitor score-images --model "
              f"CHECKPOINT {' '.join(str(folder / n) for n in crops)}")
    return EXIT_OK
