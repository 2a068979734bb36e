"""The alerts this daemon has open, on disk beside the spool (`open-alerts.json`: alert id -> its last event).

A daemon killed outright (SIGKILL, OOM, power loss) never sent the `closed` events of its open alerts; the next
start on the same spool finds them here and closes them (`close_reason` "restart"). The file holds a superset of
what is open: an opening or update is recorded before it is spooled, a close forgotten only after it is, so a
crash in between can at worst close an alert twice (the second close has the same derived event id, and the
sinks drop duplicates), never leave one open.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..logs import get

log = get(__name__)
FILE = "open-alerts.json"


def is_alert_event(event: dict) -> bool:
    return bool(event.get("alert_id")) and event.get("type") in ("opened", "updated", "closed")


class OpenAlerts:
    def __init__(self, folder: str | Path):
        self.path = Path(folder) / FILE
        self._open: dict[str, dict] = {}
        try:
            loaded = json.loads(self.path.read_text())
            if isinstance(loaded, dict):
                self._open = {k: v for k, v in loaded.items() if isinstance(v, dict) and is_alert_event(v)}
        except FileNotFoundError:
            pass
        except (ValueError, OSError) as e:  # written atomically, so only a foreign hand breaks it
            log.warning("open alerts file unreadable; alerts left open by a crash cannot be closed",
                        file=str(self.path), error=str(e))

    def __len__(self) -> int:
        return len(self._open)

    def left_open(self) -> list[dict]:
        """The last event of each alert open when the file was last written (by this run or an earlier one)."""
        return list(self._open.values())

    def before_spooling(self, event: dict) -> None:
        if is_alert_event(event) and event["type"] != "closed":
            self._open[event["alert_id"]] = event
            self._write()

    def after_spooling(self, event: dict) -> None:
        if is_alert_event(event) and event["type"] == "closed" and self._open.pop(event["alert_id"], None):
            self._write()

    def forget(self) -> None:
        self._open.clear()
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self._open, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
