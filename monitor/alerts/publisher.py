"""Publishing alert events without losing any: the spool (outbox) first, then every sink at its own pace.

`publish(event)` appends the event to the on-disk spool (fsync'd) and wakes the dispatcher, which delivers
it to Redis (always) and to every configured `[[sinks]]` entry, each from its own cursor. Stream state is
latest-value data: it goes to Redis directly, retried while Redis is away.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from ..evidence import is_evidence
from ..logs import get
from ..redis import RedisAuthError, RedisSettings, connect, describe_error
from ..scoring.lifecycle import restart_close
from .dispatcher import SinkDispatcher, SinkMetrics
from .open_alerts import OpenAlerts
from .sinks import AlertSink, RedisMetrics, RedisSink
from .spool import Spool

log = get(__name__)


class PublisherMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        registry = REGISTRY if registry is None else registry
        self.redis = RedisMetrics(registry)
        self.sinks = SinkMetrics(registry)
        self.spool_events = Gauge("deepfake_alert_spool_events", "Alert events waiting in the spool", registry=registry)
        self.spool_age = Gauge("deepfake_alert_spool_oldest_age_seconds", "Age of the oldest spooled event",
                               registry=registry)
        self.spool_dropped = Gauge("deepfake_alert_spool_dropped_events", "Events dropped from a full spool",
                                   registry=registry)
        self.spool_merged = Gauge("deepfake_alert_spool_merged_events", "Updated events merged in a full spool",
                                  registry=registry)


class AlertPublisher:
    def __init__(self, settings: RedisSettings, spool: Spool, instance: str,
                 metrics: PublisherMetrics | None = None, sinks: list[AlertSink] | tuple = ()):
        """`spool` must have one cursor per sink: `redis` and the name of each of `sinks`."""
        self.settings, self.spool, self.instance = settings, spool, instance
        self.metrics = metrics or PublisherMetrics()
        self.redis = RedisSink(settings, instance, self.metrics.redis)
        self.sinks: list[AlertSink] = [self.redis, *sinks]
        self.dispatcher = SinkDispatcher(spool, self.sinks, self.metrics.sinks)
        self.fences: dict[str, int] = {}  # cluster mode: stream -> fencing token of this daemon's lease
        self.open_alerts = OpenAlerts(spool.folder)
        # Read from the spool when scraped: during an outage nothing is published, and the oldest event's age
        # must still grow. (Scrapes run on the event loop, as every spool change does.)
        self.metrics.spool_events.set_function(lambda: len(self.spool))
        self.metrics.spool_age.set_function(lambda: self.spool.oldest_age())
        self.metrics.spool_dropped.set_function(lambda: self.spool.dropped)
        self.metrics.spool_merged.set_function(lambda: self.spool.merged)

    @property
    def up(self) -> bool:
        return self.redis.up

    async def start(self, close_left_open: bool = True) -> None:
        """Start every sink (wrong Redis credentials are fatal: RedisAuthError; an outage is not) and deliver
        what an earlier run left in the spool. Alerts an earlier run left open (it was killed outright) are
        closed now with reason `restart` (`close_left_open`; in cluster mode the stream's next owner closes them
        with `owner_lost` instead)."""
        await self.dispatcher.start()
        left = self.open_alerts.left_open()
        if left and close_left_open:
            log.warning("closing alerts an unclean stop left open", reason="restart", alerts=len(left),
                        alert_ids=[e["alert_id"] for e in left])
            for last in left:
                close = restart_close(last, self.instance)
                await self.publish(close)
                log.info("alert", stream_id=close.get("stream_id"), alert_id=close["alert_id"], type="closed",
                         seq=close["seq"], event_id=close["event_id"], close_reason="restart")
        elif left:
            self.open_alerts.forget()

    async def publish(self, event) -> None:
        """Hand an event (or an evidence record) over: spooled durably now, delivered in order as soon as each sink
        takes it."""
        data = event.to_dict() if hasattr(event, "to_dict") else dict(event)
        if not is_evidence(data):
            data["times"] = dict(data.get("times") or {}, published_at=time.time())
            token = self.fences.get(data.get("stream_id"))
            if token is not None:  # cluster mode: the lease it was made under, checked where it lands
                data["_fence"] = {"token": token, "made_at": time.time()}
        self.open_alerts.before_spooling(data)
        self.spool.put(data)
        self.open_alerts.after_spooling(data)
        self.dispatcher.wake()

    def evidence_key(self, alert_id: str) -> str:
        return self.settings.evidence_key(alert_id)

    def set_stream_state(self, stream_id: str, state: dict) -> None:
        self.redis.set_stream_state(stream_id, state)

    def fence(self, stream_id: str, token: int) -> None:
        """Cluster mode: this daemon claimed the stream's lease with `token`. Its events and state writes carry
        it from now on, and Redis refuses those a newer owner made void. (Kept after the lease is lost or
        released: whatever this daemon still makes for the stream stays fenced.)"""
        self.fences[stream_id] = token
        self.redis.state_fences[stream_id] = f"{self.instance}:{token}"

    def record_score(self, record: dict) -> None:
        """A scored crop for calibration ([record]): latest-value data, straight to Redis, buffered while it is
        away."""
        self.redis.record_score(record)

    def save_drift(self, stream_id: str, hour: int, counts: list[int]) -> None:
        self.redis.save_drift(stream_id, hour, counts)

    async def load_drift(self, stream_id: str, keep_h: float) -> dict[int, list[int]]:
        return await self.redis.load_drift(stream_id, keep_h)

    async def flush(self, timeout: float) -> bool:
        """Wait until every sink has every spooled event and the stream state is written (True), or until
        `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        delivered = await self.dispatcher.flush(timeout)
        while self.redis.states_pending and self.redis.up and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return delivered

    async def close(self, flush_timeout: float = 5.0) -> None:
        await self.flush(flush_timeout)
        await self.dispatcher.close()
        self.spool.close()


__all__ = ["AlertPublisher", "PublisherMetrics", "RedisAuthError", "RedisSettings", "connect", "describe_error"]
