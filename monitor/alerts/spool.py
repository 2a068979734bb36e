"""A bounded, append-only, fsync'd on-disk outbox of alert events, with one cursor per sink.

Every event is written here (with a sequence number) before any delivery, and each sink (Redis, each
webhook) acknowledges the last event it has, by sequence number: an event stays until every sink is past it,
so events survive an outage of any sink and a daemon restart, and each sink gets them in order, at its own
pace. A sink that gives up on an event (rejected, or retried past its horizon) moves it to its own dead-letter
file.

Files: `events.jsonl` (one record a line: seq, spooled_at, event), `cursors.json` (the next sequence number,
and per sink the seq and `spooled_at` of the last record it acknowledged), `dead-letter-<sink>.jsonl`, and
`lock` (flock'd while a process has the spool open, holding its pid: a second daemon on it is refused).

Sequence numbers never go back, across restarts too: the next one is the highest of the saved next number,
the newest record + 1 and every saved cursor + 1. A cursor skips records at a restart only when the record it
names is in the file, unchanged; files that disagree in any way (cursors missing, corrupt, from an older
version, naming a record that is not there) make the sink get the kept records again (at-least-once; the
sinks deduplicate by event id), never skip them. A sink that is new to the spool gets every record still kept.

When full, the oldest `updated` events and evidence records that a later one of the same alert supersedes are
merged away first; only then is the oldest event dropped (logged and counted).
"""

from __future__ import annotations

import bisect
import fcntl
import json
import os
import time
from pathlib import Path
from typing import NamedTuple

from ..logs import get

log = get(__name__)
EVENTS, CURSORS, LEGACY_OFFSET, LOCK = "events.jsonl", "cursors.json", "delivered", "lock"
CURSORS_VERSION = 2


class SpoolBusy(Exception):
    """Another process holds the spool folder: two daemons on one spool would deliver and trim each other's events."""


def lock_folder(folder: Path):
    """An exclusive lock on `folder` (flock on `<folder>/lock`, which says who holds it), held until the returned
    file is closed or the process ends; SpoolBusy when another process holds it."""
    handle = open(folder / LOCK, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise SpoolBusy(f"{folder} is in use by another monitor (pid {holder})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def check_free(folder: str | Path) -> None:
    """SpoolBusy if another process holds `folder` now (the lock is let go at once)."""
    folder = Path(folder)
    if (folder / LOCK).exists():
        lock_folder(folder).close()


class Spooled(NamedTuple):
    seq: int
    event: dict


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
        self._cursors: dict[str, int] = {}  # sink -> seq of the last record it acknowledged
        self._acked_at: dict[str, float | None] = {}  # sink -> spooled_at of that record (its identity)
        self._next_seq = 0
        self._stale_lines = 0  # lines in the file that no sink needs any more
        self._lock = lock_folder(self.folder)  # one process per spool
        self._load(list(sinks))
        self._file = open(self._log_path, "a", encoding="utf-8")

    @property
    def sinks(self) -> list[str]:
        return list(self._cursors)

    @property
    def next_seq(self) -> int:
        return self._next_seq

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

    def peek(self, sink: str, n: int) -> list[Spooled]:
        """The next `n` records `sink` has not acknowledged, in order."""
        start = self._index_after(self._cursors[sink])
        return [Spooled(r["seq"], r["event"]) for r in self._records[start:start + n]]

    def ack(self, sink: str, seq: int) -> None:
        """`sink` has every record up to and including `seq` (one `peek` gave it). By number, not by count: a
        full spool may merge or drop records while a delivery is under way, and a count would then skip ones
        the sink never got."""
        if seq <= self._cursors[sink]:
            return
        if seq >= self._next_seq:
            raise ValueError(f"sink {sink!r} acknowledged seq {seq}, beyond the newest ({self._next_seq - 1})")
        self._cursors[sink] = seq
        index = self._index_after(seq) - 1
        record = self._records[index] if index >= 0 and self._records[index]["seq"] == seq else None
        self._acked_at[sink] = record["spooled_at"] if record else None
        self._write_cursors()  # durable before the file forgets anything
        self._trim()

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
        self._lock.close()

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
        records = self._read_records()
        saved, saved_next = self._read_cursors(records)
        # Sequence numbers must rise through the file; a file that says otherwise is numbered afresh, after
        # everything any cursor may have seen, so every sink gets all of it again.
        seqs = [r["seq"] for r in records]
        past = max([saved_next - 1, *(c for c, _ in saved.values())], default=-1)
        if any(b <= a for a, b in zip(seqs, seqs[1:])):
            log.warning("spool: records out of order; every sink gets every kept event again", file=str(self._log_path))
            for offset, record in enumerate(records):
                record["seq"] = past + 1 + offset
        self._next_seq = max(past, records[-1]["seq"] if records else -1) + 1
        by_seq = {r["seq"]: r for r in records}
        first = records[0]["seq"] if records else self._next_seq

        def trusted(sink: str, seq: int, acked_at: float | None) -> int:
            if seq < first:
                return seq  # skips nothing that is kept
            record = by_seq.get(seq)
            if record is not None and acked_at is not None and record["spooled_at"] == acked_at:
                return seq
            log.warning("spool: a sink's cursor names no record in the file; it gets every kept event again",
                        sink=sink, seq=seq, file=str(self._log_path))
            return first - 1

        cursors = {sink: trusted(sink, seq, at) for sink, (seq, at) in saved.items()}
        everything = min(cursors.values(), default=first - 1)  # what no sink, configured or not, still needs
        self._cursors = {sink: cursors.get(sink, everything) for sink in sinks}
        self._acked_at = {sink: saved[sink][1] if sink in saved and cursors[sink] == saved[sink][0] else None
                          for sink in sinks}
        self._records = [r for r in records if r["seq"] > min(self._cursors.values())]
        self._rewrite()
        (self.folder / LEGACY_OFFSET).unlink(missing_ok=True)

    def _read_records(self) -> list[dict]:
        records = []
        if not self._log_path.exists():
            return records
        with open(self._log_path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f):
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict) or not isinstance(record.get("event"), dict):
                        raise ValueError("not a spool record")
                except ValueError:  # a torn last line from a crash mid-write: it was never acknowledged
                    log.warning("spool: skipping an unreadable line", file=str(self._log_path), line=number + 1)
                    continue
                record.setdefault("seq", len(records))  # the one-cursor format of earlier versions had none
                record.setdefault("spooled_at", 0.0)
                records.append(record)
        return records

    def _read_cursors(self, records: list[dict]) -> tuple[dict[str, tuple[int, float | None]], int]:
        """(sink -> (seq, spooled_at of that record or None), the saved next seq); empty when nothing can be
        trusted, so every sink gets every kept record."""
        try:
            doc = json.loads(self._cursors_path.read_text())
        except FileNotFoundError:
            legacy = self.folder / LEGACY_OFFSET  # the one-cursor spool of the first version: lines Redis has
            try:
                delivered = int(legacy.read_text().strip() or 0)
            except (OSError, ValueError):
                return {}, 0
            if 0 < delivered <= len(records):  # counted lines of this very file: it names its record
                return {"redis": (delivered - 1, records[delivered - 1]["spooled_at"])}, 0
            return {"redis": (-1, None)}, 0
        except (ValueError, OSError):
            doc = None
        try:
            if isinstance(doc, dict) and doc.get("version") == CURSORS_VERSION:
                cursors = {str(sink): (int(c["seq"]), float(c["spooled_at"]) if c.get("spooled_at") is not None
                                       else None) for sink, c in doc["sinks"].items()}
                return cursors, int(doc["next_seq"])
            if isinstance(doc, dict) and all(isinstance(v, int) for v in doc.values()):
                # Version 1 (sink -> seq) restarted numbering at 0 once its file emptied, so its cursors cannot
                # tell which events they mean: keep its numbers rising past them, but trust none to skip.
                log.warning("spool: cursors of an earlier version; every sink gets every kept event again",
                            file=str(self._cursors_path))
                return {sink: (-1, None) for sink in doc}, max(doc.values(), default=-1) + 1
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
        log.warning("spool: unreadable cursors; every sink gets every kept event again", file=str(self._cursors_path))
        return {}, 0

    def _make_room(self) -> None:
        latest_index, latest_evidence = {}, {}
        for i, record in enumerate(self._records):
            event = record["event"]
            (latest_evidence if event.get("kind") == "evidence" else latest_index)[event.get("alert_id")] = i
        acknowledged = set(self._cursors.values())  # kept so that a restart can check each cursor against its record
        keep = []
        need = len(self._records) - self.max_events + 1
        for i, record in enumerate(self._records):
            event = record["event"]
            superseded = (latest_evidence[event.get("alert_id")] > i if event.get("kind") == "evidence" else
                          event.get("type") == "updated" and latest_index[event.get("alert_id")] > i)
            if need and superseded and record["seq"] not in acknowledged:
                need -= 1  # a later update or evidence of the same alert carries what this one did
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
        doc = {"version": CURSORS_VERSION, "next_seq": self._next_seq,
               "sinks": {sink: {"seq": seq, "spooled_at": self._acked_at.get(sink)}
                         for sink, seq in self._cursors.items()}}
        tmp = self._cursors_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._cursors_path)
