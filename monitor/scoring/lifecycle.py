"""Alert events (schema `deepfake-monitor/alert/v1`) and the lifecycle of an alert on one face track.

An alert is an episode with a stable id: `opened` when the track enters suspicious or manipulated,
`updated` when its severity changes (at most once per `update_interval_s`), `closed` when it recovers or
the track or stream ends. Every event carries what is needed to understand and audit it. An alert whose own
close was never made (its daemon lost the stream, or was killed) is closed by a derived event, whose id is
derived from the alert's so that it is delivered once however often it is made.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from ..contracts import ModelTag
from .verdict import ALERTING, VerdictPolicy, severity
from .window import WindowPolicy, WindowStats

SCHEMA = "deepfake-monitor/alert/v1"
OWNER_LOST = uuid.UUID("6f1d7a52-5b8e-4a43-9a57-0c2b8d1f6e11")  # namespace of owner_lost close event ids
RESTART = uuid.UUID("0d6a4f0e-3c2b-4e7a-9b1d-5f8e2a7c4b90")  # namespace of restart close event ids


@dataclass
class AlertEvent:
    type: str  # opened | updated | closed
    alert_id: str
    seq: int
    stream_id: str
    track_id: int
    verdict: str
    peak_verdict: str
    close_reason: str | None
    statistic: dict
    thresholds: dict
    window: dict
    evidence: dict
    model: dict
    times: dict
    instance: str
    shadow: dict | None = None  # the stream's shadow model on this track: statistic, verdict, agreement
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    schema: str = SCHEMA

    def to_dict(self) -> dict:
        return {
            "schema": self.schema, "event_id": self.event_id, "type": self.type, "alert_id": self.alert_id,
            "seq": self.seq, "stream_id": self.stream_id, "track_id": self.track_id, "verdict": self.verdict,
            "peak_verdict": self.peak_verdict, "close_reason": self.close_reason, "statistic": self.statistic,
            "thresholds": self.thresholds, "window": self.window, "evidence": self.evidence, "model": self.model,
            "times": self.times, "instance": self.instance, "shadow": self.shadow,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


class AlertLifecycle:
    """Turns one track's verdicts into alert events."""

    def __init__(self, stream_id: str, track_id: int, window: WindowPolicy, policy: VerdictPolicy, model: ModelTag,
                 instance: str, update_interval_s: float = 5.0):
        self.stream_id, self.track_id = stream_id, track_id
        self.window, self.policy, self.model, self.instance = window, policy, model, instance
        self.update_interval_s = update_interval_s
        self.alert_id: str | None = None
        self._seq = 0
        self._published_verdict: str | None = None
        self._last_update_at = 0.0
        self._peak: str | None = None
        self._opened_at: float | None = None

    @property
    def open(self) -> bool:
        return self.alert_id is not None

    def observe(self, verdict: str, stats: WindowStats, now: float | None = None) -> AlertEvent | None:
        """The track's verdict after an evaluation; returns the event to publish, if any."""
        now = time.time() if now is None else now
        if verdict in ALERTING:
            if not self.open:
                self.alert_id, self._seq, self._opened_at = uuid.uuid4().hex, 0, now
                self._peak = verdict
                return self._emit("opened", verdict, stats, now)
            self._peak = max(self._peak, verdict, key=severity)
            if verdict != self._published_verdict and now - self._last_update_at >= self.update_interval_s:
                return self._emit("updated", verdict, stats, now)
            return None
        if self.open:
            return self._emit("closed", verdict, stats, now, reason="recovered")
        return None

    def end(self, reason: str, stats: WindowStats, now: float | None = None) -> AlertEvent | None:
        """The track or stream ended (or the daemon stops): close an open alert."""
        if not self.open:
            return None
        return self._emit("closed", self._published_verdict, stats, time.time() if now is None else now, reason=reason)

    def _emit(self, kind: str, verdict: str, stats: WindowStats, now: float, reason: str | None = None) -> AlertEvent:
        event = AlertEvent(
            type=kind, alert_id=self.alert_id, seq=self._seq, stream_id=self.stream_id, track_id=self.track_id,
            verdict=verdict, peak_verdict=self._peak, close_reason=reason,
            statistic={"name": self.window.statistic, "value": stats.value},
            thresholds={"suspicious": self.policy.suspicious, "manipulated": self.policy.manipulated,
                        "hysteresis": self.policy.hysteresis, "enter_crops": self.policy.enter_crops,
                        "enter_seconds": self.policy.enter_seconds, "exit_seconds": self.policy.exit_seconds},
            window={"seconds": self.window.seconds, "max_crops": self.window.max_crops,
                    "min_crops": self.window.min_crops},
            evidence={"crops_scored": stats.crops, "crops_skipped": dict(stats.skipped),
                      "window_span_s": round(stats.span_s, 3), "abstain_reason":
                      stats.abstain_reason if stats.crops < self.window.min_crops else None},
            model={"id": self.model.model_id, "name": self.model.name, "backbone": self.model.backbone,
                   "precision": self.model.precision, "untrained": self.model.untrained},
            times={"first_frame": stats.first_frame, "last_frame": stats.last_frame, "scored_at": now,
                   "opened_at": self._opened_at, "published_at": None},
            instance=self.instance,
        )
        self._seq += 1
        self._published_verdict, self._last_update_at = verdict, now
        if kind == "closed":
            self.alert_id = None
        return event


def derived_close(last: dict, reason: str, namespace: uuid.UUID, instance: str) -> dict:
    """The `closed` event of an alert whose own close was never made, built from the alert's last event. Its id is
    derived from the alert id, so however often it is made, it is delivered once."""
    return {**last, "type": "closed", "seq": int(last.get("seq", 0)) + 1, "close_reason": reason,
            "event_id": uuid.uuid5(namespace, last["alert_id"]).hex, "instance": instance,
            "times": {**(last.get("times") or {}), "scored_at": time.time()}}


def owner_lost_close(last: dict, instance: str) -> dict:
    """An alert whose daemon lost its stream (cluster mode)."""
    return derived_close(last, "owner_lost", OWNER_LOST, instance)


def restart_close(last: dict, instance: str) -> dict:
    """An alert open when its daemon was killed outright, closed by the next start on the same spool."""
    return derived_close(last, "restart", RESTART, instance)
