"""Reading alerts back from Redis: recent alerts from the durable log, one alert's events and its evidence.

Any daemon of a fleet reads what any other wrote: everything is in Redis (`<prefix>:events`, the per-alert
hash `<prefix>:alert:<id>` and the evidence hash `<prefix>:evidence:<id>`).
"""

from __future__ import annotations

import json
import re

from ..redis import RedisSettings, connect

ALERT_ID = re.compile(r"^[0-9a-f]{32}$")
FILE = re.compile(r"^(crop-[0-9]{1,2}|frame)\.jpg$")
PAGE = 500


def summary(event: dict, log_id: str | None = None) -> dict:
    """What a list of alerts shows of an alert, from its latest event."""
    times = event.get("times") or {}
    return {"alert_id": event["alert_id"], "stream_id": event["stream_id"], "track_id": event.get("track_id"),
            "status": "closed" if event["type"] == "closed" else "open", "verdict": event.get("verdict"),
            "peak_verdict": event.get("peak_verdict"), "close_reason": event.get("close_reason"),
            "statistic": (event.get("statistic") or {}).get("value"), "opened_at": times.get("opened_at"),
            "updated_at": times.get("published_at"), "model_id": (event.get("model") or {}).get("id"),
            "instance": event.get("instance"), "crops": len((event.get("evidence") or {}).get("crops") or []),
            "log_id": log_id}


class AlertStore:
    def __init__(self, settings: RedisSettings):
        self.settings = settings
        self.text = connect(settings, decode_responses=True)
        self.binary = connect(settings, decode_responses=False)

    async def close(self) -> None:
        await self.text.aclose()
        await self.binary.aclose()

    async def recent(self, stream: str | None = None, verdict: str | None = None, since: float | None = None,
                     cursor: str | None = None, limit: int = 50) -> tuple[list[dict], str | None]:
        """The newest alerts first (each as of its latest event), filtered; `cursor` continues a listing (the
        log id the previous page ended at). Returns (alerts, next cursor or None)."""
        seen: dict[str, dict] = {}
        done: set[str] = set()
        upper = f"({cursor}" if cursor else "+"
        while len(seen) < limit:
            entries = await self.text.xrevrange(self.settings.events_key, max=upper, min="-", count=PAGE)
            if not entries:
                return list(seen.values()), None
            for log_id, fields in entries:
                upper = f"({log_id}"
                event = json.loads(fields["event"])
                alert = event.get("alert_id")
                if not alert or alert in seen or alert in done:  # drift events belong to no alert
                    continue
                done.add(alert)
                if cursor and not await self._is_latest(event):
                    continue  # listed, by its latest event, on an earlier page
                if since is not None and (event.get("times") or {}).get("published_at", 0) < since:
                    return list(seen.values()), None  # older than asked: the rest is older still
                if (stream and event.get("stream_id") != stream) or (
                        verdict and verdict not in (event.get("verdict"), event.get("peak_verdict"))):
                    continue
                seen[alert] = summary(event, log_id)
                if len(seen) == limit:
                    return list(seen.values()), log_id
        return list(seen.values()), None

    async def _is_latest(self, event: dict) -> bool:
        """Whether `event` is its alert's newest (a page that starts below a cursor meets older events of alerts
        whose newest lies above it). An alert whose events expired counts as its own newest."""
        seqs = [int(k.split(":", 1)[1]) for k in await self.text.hkeys(self.settings.alert_key(event["alert_id"]))
                if k.startswith("seq:")]
        return not seqs or int(event.get("seq", 0)) >= max(seqs)

    async def events(self, alert_id: str) -> list[dict]:
        """Every event of one alert, in order ([] when unknown or expired)."""
        if not ALERT_ID.match(alert_id):
            return []
        fields = await self.text.hgetall(self.settings.alert_key(alert_id))
        events = [json.loads(value) for value in fields.values()]
        return sorted(events, key=lambda e: e.get("seq", 0))

    async def evidence(self, alert_id: str) -> dict | None:
        """The evidence's index (crops, frame, timeline, model), or None."""
        if not ALERT_ID.match(alert_id):
            return None
        meta = await self.text.hget(self.settings.evidence_key(alert_id), "meta")
        return json.loads(meta) if meta else None

    async def file(self, alert_id: str, name: str) -> bytes | None:
        """`crop-<n>.jpg` or `frame.jpg` of an alert's evidence."""
        if not ALERT_ID.match(alert_id) or not FILE.match(name):
            return None
        return await self.binary.hget(self.settings.evidence_key(alert_id), name)

    async def files(self, alert_id: str) -> dict[str, bytes]:
        if not ALERT_ID.match(alert_id):
            return {}
        stored = await self.binary.hgetall(self.settings.evidence_key(alert_id))
        return {k.decode(): v for k, v in stored.items() if k != b"meta"}
