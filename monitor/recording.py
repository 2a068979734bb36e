"""`monitor record export`: the daemon's score records ([record]) out of Redis into the CSV `monitor calibrate`
reads.

The daemon appends one record per scored crop to the capped stream `<prefix>:scores`. Export selects by stream and
by frame time, labels what it writes (`real`: footage known to be authentic, the calibration data; `fake`:
footage known to be manipulated, to measure detection), and can append to an earlier export, so one CSV can
hold a day of real traffic and a labelled red-team session.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .errors import InputError, Unavailable
from .faces.quality import FEATURES
from .redis import OUTAGES, RedisSettings, connect, describe_error

COLUMNS = ["stream_id", "session", "track_id", "frame_time", "evaluated_at", "p_fake", "model", "model_id", "label",
           *(f"q_{name}" for name in FEATURES)]
PAGE = 5000


class ExportError(Unavailable):
    """Redis could not be read; the message says why (no secret in it)."""


def parse_time(text: str) -> float:
    """Seconds since the epoch, or an ISO 8601 date/time (no zone: this machine's local time)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise InputError(f"{text!r} is neither seconds since the epoch nor an ISO 8601 time "
                         f"(e.g. 2026-11-28T09:00 or 2026-11-28T09:00+01:00)") from None


@dataclass
class ExportSummary:
    rows: int = 0
    streams: set[str] = field(default_factory=set)
    tracks: set[tuple[str, str, str]] = field(default_factory=set)
    first: float = math.inf
    last: float = -math.inf
    scanned: int = 0

    def add(self, record: dict) -> None:
        frame_time = float(record["frame_time"])
        self.rows += 1
        self.streams.add(record["stream_id"])
        self.tracks.add((record["stream_id"], record.get("session", ""), record["track_id"]))
        self.first, self.last = min(self.first, frame_time), max(self.last, frame_time)

    def describe(self, out: str, label: str) -> str:
        span = f", frames {_iso(self.first)} to {_iso(self.last)}" if self.rows else ""
        return (f"wrote {self.rows} {label} record(s) of {len(self.tracks)} track(s) on {len(self.streams)} "
                f"stream(s) to {out} ({self.scanned} scanned{span})")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t).isoformat(timespec="seconds")


async def export(settings: RedisSettings, out: str | Path, label: str, streams: list[str] | None = None,
                 since: float | None = None, until: float | None = None, append: bool = False,
                 progress: Callable[[int], None] | None = None) -> ExportSummary:
    """Write the selected records to `out` (appending after an earlier export's rows when `append`)."""
    out = Path(out)
    if append and out.exists() and out.stat().st_size:
        with open(out, newline="") as f:
            header = next(csv.reader(f), [])
        if header != COLUMNS:
            raise InputError(f"{out}: cannot append: its columns are not those `monitor record export` writes")
        mode, write_header = "a", False
    else:
        mode, write_header = "w", True
    summary = ExportSummary()
    # A record is written after its crop was scored: its entry id (write time, ms) is never before its frame.
    lower = f"{int(since * 1000)}-0" if since is not None else "-"
    client = connect(settings)
    try:
        with open(out, mode, newline="") as f:
            writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
            if write_header:
                writer.writeheader()
            while True:
                try:
                    entries = await client.xrange(settings.scores_key, min=lower, max="+", count=PAGE)
                except OUTAGES as e:
                    raise ExportError(describe_error(e, settings.url)) from None
                if not entries:
                    break
                for _, record in entries:
                    summary.scanned += 1
                    if _selected(record, streams, since, until):
                        writer.writerow({**record, "label": label})
                        summary.add(record)
                lower = f"({entries[-1][0]}"
                if progress:
                    progress(summary.scanned)
    finally:
        await client.aclose()
    return summary


def _selected(record: dict, streams: list[str] | None, since: float | None, until: float | None) -> bool:
    if streams and record.get("stream_id") not in streams:
        return False
    try:
        frame_time = float(record["frame_time"])
    except (KeyError, ValueError):
        return False  # not a score record
    return (since is None or frame_time >= since) and (until is None or frame_time < until)


def progress_printer(stream=sys.stderr) -> Callable[[int], None]:
    """A one-line, in-place count on a terminal; nothing when stderr is a file or a pipe."""
    started = time.monotonic()
    if not stream.isatty():
        return lambda scanned: None

    def show(scanned: int) -> None:
        rate = scanned / max(time.monotonic() - started, 1e-6)
        stream.write(f"\rscanned {scanned} records ({rate:,.0f}/s)")
        stream.flush()

    return show
