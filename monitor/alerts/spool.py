"""A bounded, append-only, fsync'd on-disk outbox of alert events.

Every event is written here before delivery and acknowledged after Redis has it, so events survive a
Redis outage and a daemon restart and are delivered in order. Files: `events.jsonl` (one event a line)
and `delivered` (how many lines are acknowledged). When full, the oldest `updated` events that a later
event of the same alert supersedes are merged away first; only then is the oldest event dropped (logged
and counted).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path

from ..logs import get

log = get(__name__)


class Spool:
    def __init__(self, folder: str | Path, max_events: int = 10000):
        if max_events < 1:
            raise ValueError("spool max_events must be at least 1")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_events = max_events
        self._log_path = self.folder / "events.jsonl"
        self._offset_path = self.folder / "delivered"
        self.merged = 0
        self.dropped = 0
        self._pending: deque[dict] = deque()  # {"spooled_at": float, "event": dict}
        self._offset = 0
        self._load()
        self._file = open(self._log_path, "a", encoding="utf-8")

    def __len__(self) -> int:
        return len(self._pending)

    def oldest_age(self, now: float | None = None) -> float:
        if not self._pending:
            return 0.0
        return (time.time() if now is None else now) - self._pending[0]["spooled_at"]

    def put(self, event: dict) -> None:
        """Append an event durably (fsync). Makes room first when full."""
        if len(self._pending) >= self.max_events:
            self._make_room()
        record = {"spooled_at": time.time(), "event": event}
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._pending.append(record)

    def peek(self, n: int) -> list[dict]:
        return [self._pending[i]["event"] for i in range(min(n, len(self._pending)))]

    def ack(self, n: int) -> None:
        """The first `n` pending events are delivered."""
        for _ in range(n):
            self._pending.popleft()
        self._offset += n
        if not self._pending:  # everything delivered: start the files afresh
            self._file.truncate(0)
            self._file.seek(0)
            os.fsync(self._file.fileno())
            self._offset = 0
        self._write_offset()

    def close(self) -> None:
        self._file.close()

    # --- internals ---------------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            self._offset = int(self._offset_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            self._offset = 0
        lines = []
        if self._log_path.exists():
            with open(self._log_path, encoding="utf-8") as f:
                for number, line in enumerate(f):
                    try:
                        lines.append(json.loads(line))
                    except ValueError:  # a torn last line from a crash mid-write: it was never acknowledged
                        log.warning("spool: skipping an unreadable line", file=str(self._log_path), line=number + 1)
        self._pending = deque(lines[self._offset:])
        if self._offset > len(lines):
            self._offset = len(lines)
        if self._offset:  # compact: keep only what is pending
            self._rewrite()

    def _make_room(self) -> None:
        latest_index = {}
        for i, record in enumerate(self._pending):
            latest_index[record["event"]["alert_id"]] = i
        keep = []
        need = len(self._pending) - self.max_events + 1
        for i, record in enumerate(self._pending):
            event = record["event"]
            if need and event["type"] == "updated" and latest_index[event["alert_id"]] > i:
                need -= 1
                self.merged += 1
                continue
            keep.append(record)
        while need and keep:
            lost = keep.pop(0)["event"]
            need -= 1
            self.dropped += 1
            log.error("alert spool full: dropped an event", max_events=self.max_events, type=lost["type"],
                      event_id=lost["event_id"], alert_id=lost["alert_id"])
        self._pending = deque(keep)
        self._rewrite()

    def _rewrite(self) -> None:
        tmp = self._log_path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for record in self._pending:
                f.write(json.dumps(record, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._log_path)
        if hasattr(self, "_file"):
            self._file.close()
            self._file = open(self._log_path, "a", encoding="utf-8")
        self._offset = 0
        self._write_offset()

    def _write_offset(self) -> None:
        tmp = self._offset_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(str(self._offset))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._offset_path)
