"""Alert events from the spool to every sink: one task per sink, each at its own cursor and pace.

A sink that is down holds back only itself: the spool keeps an event until every sink has it. A sink's
failure is retried with capped exponential backoff and jitter (or after the destination's Retry-After);
an event the destination rejects, or one still failing after the sink's `max_retry_s`, goes to that sink's
dead-letter file (logged and counted) and the sink moves on.
"""

from __future__ import annotations

import asyncio
import random
import time

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from ..logs import get
from ..tasks import TaskSupervisor
from .sinks import AlertSink, SinkRejected, SinkRetry
from .spool import Spool, Spooled

log = get(__name__)
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.1, 30.0


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        registry = REGISTRY if registry is None else registry
        self.delivered = Counter("deepfake_sink_delivered", "Alert events a sink took", ["sink"], registry=registry)
        self.failures = Counter("deepfake_sink_failures", "Failed deliveries, by kind (retry, rejected)",
                                ["sink", "kind"], registry=registry)
        self.dead_letters = Counter("deepfake_sink_dead_letters", "Events a sink gave up (dead-letter file)",
                                    ["sink"], registry=registry)
        self.skipped = Counter("deepfake_sink_skipped", "Events a sink's filters left out", ["sink"],
                               registry=registry)
        self.pending = Gauge("deepfake_sink_pending_events", "Spooled events a sink does not have yet", ["sink"],
                             registry=registry)
        self.up = Gauge("deepfake_sink_up", "1 when the sink's last delivery worked", ["sink"], registry=registry)


class SinkDispatcher:
    def __init__(self, spool: Spool, sinks: list[AlertSink], metrics: SinkMetrics | None = None):
        names = [s.name for s in sinks]
        if len(set(names)) != len(names) or sorted(names) != sorted(spool.sinks):
            raise ValueError(f"sinks {names} must be unique and match the spool's cursors {spool.sinks}")
        self.spool, self.sinks = spool, sinks
        self.metrics = metrics or SinkMetrics()
        self.tasks = TaskSupervisor()
        self._wake = {s.name: asyncio.Event() for s in sinks}
        self.failing: dict[str, str | None] = {s.name: None for s in sinks}  # the last failure, while failing
        self._closing = False

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()
            self.tasks.spawn(f"sink-{sink.name}", lambda sink=sink: self._run(sink), sink=sink.name)
        self.wake()

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()
        for sink in self.sinks:
            self._update_pending(sink.name)

    def caught_up(self) -> bool:
        return all(self.spool.pending(s.name) == 0 for s in self.sinks)

    async def flush(self, timeout: float) -> bool:
        """Wait until every sink has every event (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while not self.caught_up() and time.monotonic() < deadline:
            self.wake()
            await asyncio.sleep(0.02)
        return self.caught_up()

    async def close(self) -> None:
        self._closing = True
        await self.tasks.close()
        for sink in self.sinks:
            await sink.close()

    async def _run(self, sink: AlertSink) -> None:
        name, wake = sink.name, self._wake[sink.name]
        backoff, failing_since = BACKOFF_FIRST_S, None
        while not self._closing:
            records = self.spool.peek(name, sink.batch_size)
            if not records:
                wake.clear()
                await wake.wait()
                continue
            wanted = 0
            while wanted < len(records) and sink.wants(records[wanted].event):
                wanted += 1
            if not wanted:  # the sink's filters leave the head out: skip it (and whatever follows unwanted)
                skipped = 1
                while skipped < len(records) and not sink.wants(records[skipped].event):
                    skipped += 1
                self.spool.ack(name, records[skipped - 1].seq)
                self.metrics.skipped.labels(name).inc(skipped)
                self._update_pending(name)
                continue
            try:
                await sink.deliver([r.event for r in records[:wanted]])
            except SinkRejected as e:
                self._give_up(sink, records[0], f"rejected: {e}")
                failing_since, backoff = None, BACKOFF_FIRST_S
                continue
            except (SinkRetry, Exception) as e:
                if not isinstance(e, SinkRetry):  # a bug in the sink, not an outage: say so, and retry like one
                    log.error("sink failed unexpectedly", sink=name, error=f"{type(e).__name__}: {e}", exc_info=e)
                now = time.monotonic()
                failing_since = failing_since or now
                self._failed(name, str(e))
                if sink.max_retry_s is not None and now - failing_since > sink.max_retry_s:
                    self._give_up(sink, records[0], f"still failing after {sink.max_retry_s:.0f} s: {e}")
                    failing_since, backoff = None, BACKOFF_FIRST_S
                    continue
                retry_after = getattr(e, "retry_after_s", None)
                delay = min(retry_after, BACKOFF_MAX_S * 10) if retry_after is not None else (
                    backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                await asyncio.sleep(delay)
                continue
            self.spool.ack(name, records[wanted - 1].seq)
            self._delivered(name, wanted)
            failing_since, backoff = None, BACKOFF_FIRST_S

    def _delivered(self, name: str, n: int) -> None:
        if self.failing[name] is not None:
            log.warning("sink delivering again", sink=name, pending=self.spool.pending(name))
        self.failing[name] = None
        self.metrics.delivered.labels(name).inc(n)
        self.metrics.up.labels(name).set(1)
        self._update_pending(name)

    def _update_pending(self, name: str) -> None:
        self.metrics.pending.labels(name).set(self.spool.pending(name))

    def _failed(self, name: str, reason: str) -> None:
        if self.failing[name] is None:
            log.warning("sink failing; its events wait in the spool", sink=name, error=reason,
                        pending=self.spool.pending(name))
        self.failing[name] = reason
        self.metrics.failures.labels(name, "retry").inc()
        self.metrics.up.labels(name).set(0)

    def _give_up(self, sink: AlertSink, record: Spooled, reason: str) -> None:
        event = record.event
        path = self.spool.dead_letter(sink.name, event, reason)
        self.spool.ack(sink.name, record.seq)
        self.metrics.dead_letters.labels(sink.name).inc()
        self._update_pending(sink.name)
        if reason.startswith("rejected"):
            self.metrics.failures.labels(sink.name, "rejected").inc()
        log.error("alert event dead-lettered", sink=sink.name, event_id=event.get("event_id"),
                  alert_id=event.get("alert_id"), stream_id=event.get("stream_id"), reason=reason, file=str(path))
