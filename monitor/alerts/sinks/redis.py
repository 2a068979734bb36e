"""The Redis sink: the monitor's core output. Alert events go to the durable log and the Pub/Sub channels; stream
state and the instance heartbeat are latest-value data written beside them.

One Lua script per event does `SET <prefix>:delivered:<event_id> NX EX`, then `XADD` to the durable log and
`PUBLISH` on the global and per-stream channels: the dedupe key makes delivery exactly-once even when a reply
is lost and the events are sent again. Every call has a timeout and is never retried behind our back; an
outage is a `SinkRetry` (the spool keeps the events), wrong credentials are a configuration error.

In cluster mode each event carries the fencing token of the stream's lease it was made under (`_fence`, never
published). The script rejects (`FENCED`) an event made after a newer owner claimed the stream: a daemon that
was paused past its lease cannot publish for a stream it lost, while events it spooled before are still
delivered. It also keeps `<prefix>:open:<stream>`, the stream's open alert ids, from which a new owner closes
a dead owner's alerts; an update or close for an alert that is no longer open is dropped there (`CLOSED`). An
alert opened by the previous owner but delivered only after the takeover (its spool replayed late) is one the
new owner never saw: the script closes it at once with `owner_lost` (`LATE`), with the same derived event id
the new owner would use.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from redis.exceptions import RedisError

from ...evidence import decode_files, is_evidence, meta_json
from ...logs import get
from ...redact import redact
from ...redis import (
    DELIVER,
    FENCED_STATE,
    OUTAGES,
    RedisAuthError,
    RedisSettings,
    connect,
    describe_error,
    is_auth_error,
)
from ...scoring.lifecycle import owner_lost_close
from ...tasks import TaskSupervisor
from .base import SinkRetry

log = get(__name__)


def public(event: dict) -> dict:
    """The event as subscribers get it: without the keys only the monitor uses (`_fence`)."""
    return {k: v for k, v in event.items() if not k.startswith("_")}


RECORD_BUFFER = 50_000  # score records held while Redis is away


class RedisMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        registry = REGISTRY if registry is None else registry
        self.delivered = Counter("deepfake_alerts_delivered", "Alert events delivered to Redis", registry=registry)
        self.redis_up = Gauge("deepfake_redis_up", "1 when the last Redis call succeeded", registry=registry)
        self.fenced = Counter("deepfake_cluster_fenced_events", "Alert events refused at delivery: made after a "
                              "newer owner claimed their stream", registry=registry)


class RedisSink:
    name = "redis"
    batch_size = 64
    max_retry_s = None  # Redis is where every subscriber reads: an outage delays events, never drops them

    def __init__(self, settings: RedisSettings, instance: str, metrics: RedisMetrics | None = None):
        self.settings, self.instance = settings, instance
        self.metrics = metrics or RedisMetrics()
        self.client = connect(settings)
        self._deliver = self.client.register_script(DELIVER)
        self._fenced_state = self.client.register_script(FENCED_STATE)
        self.state_fences: dict[str, str] = {}  # cluster mode: stream -> "<instance>:<token>" its state needs
        self._states: dict[str, dict] = {}  # stream state not yet written
        self._records: deque[dict] = deque(maxlen=RECORD_BUFFER)  # scored crops not yet written ([record])
        self._drift: dict[tuple[str, int], list[int]] = {}  # (stream, hour) -> histogram not yet written
        self.records_dropped = 0
        self.record_maxlen = 1_000_000
        self._states_changed = asyncio.Event()
        self.tasks = TaskSupervisor()
        self._outage_logged = False
        self._closing = False
        self.up = False

    def wants(self, event: dict) -> bool:
        return True

    async def start(self, require_auth_ok: bool = True) -> None:
        """Check credentials (a wrong password is fatal, an outage is not), then keep state and heartbeat."""
        try:
            await self.client.ping()
            self._mark_up()
        except RedisError as e:
            if is_auth_error(e) and require_auth_ok:
                raise RedisAuthError(describe_error(e, self.settings.url)) from None
            self._mark_down(e)
        self.tasks.spawn("redis-state", self._write_states_forever)
        self.tasks.spawn("redis-heartbeat", self._heartbeat_forever)

    async def deliver(self, events: list[dict]) -> None:
        """Alert events (Lua: once each, fenced in cluster mode) and evidence records (the hash replaced whole,
        with its TTL), in order. With `wait_replicas`, they count only once that many replicas have them."""
        s = self.settings
        scripted: list[dict | None] = []  # per pipelined command: the event its script delivers, else None
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for event in events:
                    if is_evidence(event):
                        pipe.delete(event["key"])
                        pipe.hset(event["key"], mapping={"meta": meta_json(event), **decode_files(event)})
                        pipe.expire(event["key"], max(1, int(event["ttl_s"])))
                        scripted += [None, None, None]
                        continue
                    alert = event.get("alert_id") or ""  # drift events belong to no alert
                    fence = event.get("_fence") or {}
                    stream = event["stream_id"]
                    # Cluster mode: an `opened` event goes with its owner_lost close, which the script delivers
                    # only if the event arrives after a newer owner took the stream over.
                    close = (owner_lost_close(public(event), self.instance)
                             if fence and alert and event.get("type") == "opened" else None)
                    await self._deliver(
                        keys=[s.delivered_key(event["event_id"]), s.events_key, s.alert_key(alert or "none"),
                              s.epoch_key(stream), s.epochs_key(stream), s.open_key(stream),
                              s.delivered_key(close["event_id"] if close else "none")],
                        args=[s.dedupe_ttl_s, s.events_maxlen, json.dumps(public(event), separators=(",", ":")),
                              s.channel(), s.channel(stream), f"seq:{event.get('seq', 0)}" if alert else "",
                              s.alert_ttl_s, fence.get("token", ""), fence.get("made_at", 0),
                              event.get("type", ""), alert,
                              json.dumps(close, separators=(",", ":")) if close else "",
                              f"seq:{close['seq']}" if close else ""], client=pipe)
                    scripted.append(event)
                if s.wait_replicas:
                    pipe.execute_command("WAIT", s.wait_replicas, int(s.timeout_s * 1000))
                results = await pipe.execute()
        except OUTAGES as e:
            self._mark_down(e)
            raise SinkRetry(describe_error(e, s.url)) from None
        if s.wait_replicas and results[-1] < s.wait_replicas:
            # Not yet on enough replicas: sent again later (the dedupe keys make that exactly-once).
            raise SinkRetry(f"only {results[-1]} of {s.wait_replicas} replicas acknowledged the events")
        self._mark_up()
        for event, result in zip(scripted, results):
            if event is not None and result == "LATE":
                log.info("alert closed with owner_lost: its daemon lost the stream before delivering its opening",
                         stream_id=event.get("stream_id"), alert_id=event.get("alert_id"))
            if event is not None and result == "FENCED":
                self.metrics.fenced.inc()
                log.warning("alert event fenced: made after another daemon took the stream over", type=event.get("type"),
                            stream_id=event.get("stream_id"), alert_id=event.get("alert_id"),
                            token=event["_fence"].get("token"))
        self.metrics.delivered.inc(sum(1 for e, r in zip(scripted, results) if e is not None and r not in
                                       ("FENCED", "CLOSED")))

    async def test(self, event: dict) -> str:
        """PING, then PUBLISH the event on `<prefix>:sinks:test` (not the alert channels, not the durable log)."""
        try:
            await self.client.ping()
            receivers = await self.client.publish(self.settings.test_channel, json.dumps(event))
        except RedisError as e:
            if is_auth_error(e):
                raise RedisAuthError(describe_error(e, self.settings.url)) from None
            raise SinkRetry(describe_error(e, self.settings.url)) from None
        except OUTAGES as e:
            raise SinkRetry(describe_error(e, self.settings.url)) from None
        return f"PING ok; PUBLISH {self.settings.test_channel}: {receivers} subscriber(s)"

    def set_stream_state(self, stream_id: str, state: dict) -> None:
        """Latest state of a stream, written to its hash as soon as Redis takes it."""
        self._states[stream_id] = {k: (json.dumps(v) if isinstance(v, (dict, list)) else "" if v is None else str(v))
                                   for k, v in state.items()}
        self._states_changed.set()

    def record_score(self, record: dict) -> None:
        """A scored crop for `<prefix>:scores` (latest-value data: an outage longer than the buffer loses the
        oldest, counted; alerts never go this way)."""
        if len(self._records) == self._records.maxlen:
            self.records_dropped += 1
        self._records.append({k: "" if v is None else str(v) for k, v in record.items()})
        self._states_changed.set()

    def save_drift(self, stream_id: str, hour: int, counts: list[int]) -> None:
        self._drift[(stream_id, hour)] = list(counts)
        self._states_changed.set()

    async def load_drift(self, stream_id: str, keep_h: float) -> dict[int, list[int]]:
        try:
            stored = await self.client.hgetall(self.settings.drift_key(stream_id))
        except OUTAGES:
            return {}
        oldest = (time.time() - keep_h * 3600) // 3600
        return {int(h): json.loads(v) for h, v in stored.items() if h.isdigit() and int(h) >= oldest}

    @property
    def states_pending(self) -> bool:
        return bool(self._states or self._records or self._drift)

    async def close(self) -> None:
        self._closing = True
        await self._write_states()  # the last state of each stream, if Redis takes it
        heartbeat = "redis-heartbeat" in self.tasks.running()
        await self.tasks.close(timeout=self.settings.timeout_s + 1)
        if heartbeat:  # only this process's own heartbeat goes (not a running daemon's, after `sinks test`)
            try:
                await self.client.delete(self.settings.instance_key(self.instance))
            except OUTAGES:
                pass
        await self.client.aclose()

    # --- state and heartbeat ---------------------------------------------------------------------------------

    async def _write_states(self) -> bool:
        """Stream states, score records and drift histograms: latest-value data, in one round trip."""
        if not self.states_pending:
            return True
        states, self._states = self._states, {}
        records = list(self._records)
        drift, self._drift = self._drift, {}
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for stream_id, state in states.items():
                    fence = self.state_fences.get(stream_id)
                    if fence is None:
                        pipe.hset(self.settings.stream_key(stream_id), mapping=state)
                    else:  # cluster mode: only while this daemon holds the stream's lease
                        await self._fenced_state(
                            keys=[self.settings.stream_key(stream_id), self.settings.lease_key(stream_id)],
                            args=[fence, *(x for item in state.items() for x in item)], client=pipe)
                for record in records:
                    pipe.xadd(self.settings.scores_key, record, maxlen=self.record_maxlen, approximate=True)
                for (stream_id, hour), counts in drift.items():
                    pipe.hset(self.settings.drift_key(stream_id), str(hour), json.dumps(counts))
                    pipe.expire(self.settings.drift_key(stream_id), 8 * 86400)
                await pipe.execute()
        except OUTAGES as e:
            self._states = {**states, **self._states}  # keep the newest of each for the next try
            self._drift = {**drift, **self._drift}
            self._mark_down(e)
            return False
        written = {id(r) for r in records}  # the buffer may have taken newer ones (and dropped old) meanwhile
        while self._records and id(self._records[0]) in written:
            self._records.popleft()
        self._mark_up()
        return True

    async def _write_states_forever(self) -> None:
        backoff = 0.1
        while not self._closing:
            if not self.states_pending:
                self._states_changed.clear()
                await self._states_changed.wait()
                continue
            if await self._write_states():
                backoff = 0.1
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _heartbeat_forever(self) -> None:
        ttl = self.settings.heartbeat_ttl_s
        while not self._closing:
            try:
                await self.client.set(self.settings.instance_key(self.instance),
                                      json.dumps({"instance": self.instance, "at": time.time()}), ex=max(1, int(ttl)))
                self._mark_up()
            except OUTAGES as e:
                self._mark_down(e)
            await asyncio.sleep(ttl / 3)

    def _mark_up(self) -> None:
        if not self.up and self._outage_logged:
            log.warning("Redis reachable again", redis=redact(self.settings.url))
        self.up, self._outage_logged = True, False
        self.metrics.redis_up.set(1)

    def _mark_down(self, error: BaseException) -> None:
        if not self._outage_logged:
            log.warning("Redis unreachable; alert events are spooled on disk until it returns",
                        error=describe_error(error, self.settings.url))
            self._outage_logged = True
        self.up = False
        self.metrics.redis_up.set(0)
