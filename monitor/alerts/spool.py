"""A bounded, append-only, fsync'd on-disk outbox of alert events, with one cursor per sink.

Every event is written here (with a sequence number) before any delivery, and each sink (Redis, each
webhook) acknowledges up to the last event it has: an event stays until every sink is past it, so events
survive an outage of any sink and a daemon restart, and each sink gets them in order, at its own pace. A sink
that gives up on an event (rejected, or retried past its horizon) moves it to its own dead-letter file.

Files: `events.jsonl` (one record a line: seq, spooled_at, event), `cursors.json` (sink -> last acknowledged
seq), `dead-letter-<sink>.jsonl`. When full, the oldest `updated` events and evidence records that a
later one of the same alert supersedes are merged away first; only then is the oldest event dropped (logged
and counted).
"""

from __future__ import annotations

import bisect
import json
import os
import time
from pathlib import Path

from ..logs import get

log = get(__name__)
EVENTS, CURSORS, LEGACY_OFFSET = "events.jsonl", "cursors.json", "delivered"


class Spool:
    def __init__(self, folder: str | Path, max_events: int = 10000, sinks: tuple[str, ...] | list[str] = ("redis",)):
        if max_events < 1:
            raise ValueError("spool max_events must be at least 1")
        if not sinks:
            raise ValueError("a spool needs at least one sink")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_events = max_events
        self._log_path, self._cursors_path = self.folder / EVENTS, self.folder / CURSORS
        self.merged = 0
        self.dropped = 0
        self._records: list[dict] = []  # {"seq", "spooled_at", "event"}, by seq: what some sink still needs
        self._cursors: dict[str, int] = {}  # sink -> last acknowledged seq
        self._next_seq = 0
        self._stale_lines = 0  # lines in the file that no sink needs any more
        self._load(list(sinks))
        self._file = open(self._log_path, "a", encoding="utf-8")

    @property
    def sinks(self) -> list[str]:
        return list(self._cursors)

    def __len__(self) -> int:
        """Events kept: those at least one sink has not acknowledged."""
        return len(self._records)

    def pending(self, sink: str) -> int:
        return len(self._records) - self._index_after(self._cursors[sink])

    def oldest_age(self, sink: str | None = None, now: float | None = None) -> float:
        start = 0 if sink is None else self._index_after(self._cursors[sink])
        if start >= len(self._records):
            return 0.0
        return (time.time() if now is None else now) - self._records[start]["spooled_at"]

    def put(self, event: dict) -> int:
        """Append an event durably (fsync); returns its sequence number. Makes room first when full."""
        if len(self._records) >= self.max_events:
            self._make_room()
        record = {"seq": self._next_seq, "spooled_at": time.time(), "event": event}
        self._next_seq += 1
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._records.append(record)
        return record["seq"]

    def peek(self, sink: str, n: int) -> list[dict]:
        """The next `n` events `sink` has not acknowledged, in order."""
        start = self._index_after(self._cursors[sink])
        return [r["event"] for r in self._records[start:start + n]]

    def ack(self, sink: str, n: int) -> None:
        """`sink` has the first `n` of its pending events."""
        if n <= 0:
            return
        start = self._index_after(self._cursors[sink])
        last = self._records[start + n - 1]["seq"]
        self._cursors[sink] = last
        self._trim()
        self._write_cursors()

    def dead_letter(self, sink: str, event: dict, reason: str) -> Path:
        """Keep an event `sink` will never take in its dead-letter file (the caller acknowledges it)."""
        path = self.folder / f"dead-letter-{sink}.jsonl"
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"dead_at": time.time(), "sink": sink, "reason": reason, "event": event},
                               separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return path

    def close(self) -> None:
        self._file.close()

    # --- internals ---------------------------------------------------------------------------------------

    def _index_after(self, seq: int) -> int:
        return bisect.bisect_right(self._records, seq, key=lambda r: r["seq"])

    def _trim(self) -> None:
        """Forget what every sink has; start the file afresh when nothing is left, compact it now and then."""
        done = self._index_after(min(self._cursors.values()))
        if not done:
            return
        del self._records[:done]
        self._stale_lines += done
        if not self._records:
            self._file.truncate(0)
            self._file.seek(0)
            os.fsync(self._file.fileno())
            self._stale_lines = 0
        elif self._stale_lines >= max(256, len(self._records)):
            self._rewrite()

    def _load(self, sinks: list[str]) -> None:
        records, legacy_offset = [], None
        if self._log_path.exists():
            with open(self._log_path, encoding="utf-8") as f:
                for number, line in enumerate(f):
                    try:
                        records.append(json.loads(line))
                    except ValueError:  # a torn last line from a crash mid-write: it was never acknowledged
                        log.warning("spool: skipping an unreadable line", file=str(self._log_path), line=number + 1)
        saved: dict[str, int] = {}
        try:
            saved = json.loads(self._cursors_path.read_text())
        except FileNotFoundError:
            legacy = self.folder / LEGACY_OFFSET  # the one-cursor spool of earlier versions: Redis's offset
            if legacy.exists():
                legacy_offset = int(legacy.read_text().strip() or 0)
        except ValueError:
            log.warning("spool: unreadable cursors; every sink gets every kept event again", file=str(self._cursors_path))
        for index, record in enumerate(records):
            record.setdefault("seq", index)
        if legacy_offset is not None:
            saved = {"redis": legacy_offset - 1}
        newest = records[-1]["seq"] if records else -1
        lowest = (min(saved.values()) if saved else -1)
        # A sink new to this spool starts after the newest event; a sink no longer configured lets go of its own.
        self._cursors = {sink: saved.get(sink, newest if saved else lowest) for sink in sinks}
        self._next_seq = newest + 1
        self._records = [r for r in records if r["seq"] > min(self._cursors.values())]
        self._rewrite()
        if legacy_offset is not None:
            (self.folder / LEGACY_OFFSET).unlink(missing_ok=True)

    def _make_room(self) -> None:
        latest_index, latest_evidence = {}, {}
        for i, record in enumerate(self._records):
            event = record["event"]
            (latest_evidence if event.get("kind") == "evidence" else latest_index)[event.get("alert_id")] = i
        keep = []
        need = len(self._records) - self.max_events + 1
        for i, record in enumerate(self._records):
            event = record["event"]
            superseded = (latest_evidence[event.get("alert_id")] > i if event.get("kind") == "evidence" else
                          event.get("type") == "updated" and latest_index[event.get("alert_id")] > i)
            if need and superseded:  # a later update or evidence of the same alert carries what this one did
                need -= 1
                self.merged += 1
                continue
            keep.append(record)
        while need and keep:
            lost = keep.pop(0)
            need -= 1
            self.dropped += 1
            missed = [s for s, seq in self._cursors.items() if seq < lost["seq"]]
            log.error("alert spool full: dropped an event", max_events=self.max_events, type=lost["event"].get("type"),
                      event_id=lost["event"].get("event_id"), alert_id=lost["event"].get("alert_id"), sinks=missed)
        self._records = keep
        self._rewrite()

    def _rewrite(self) -> None:
        tmp = self._log_path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for record in self._records:
                f.write(json.dumps(record, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._log_path)
        if hasattr(self, "_file"):
            self._file.close()
            self._file = open(self._log_path, "a", encoding="utf-8")
        self._stale_lines = 0
        self._write_cursors()

    def _write_cursors(self) -> None:
        tmp = self._cursors_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self._cursors, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._cursors_path)
