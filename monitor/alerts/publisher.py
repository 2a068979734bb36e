"""Publishing alert events and stream state to Redis, never losing an event.

Every event goes through the on-disk spool (the outbox) and a single deliverer sends them to Redis in
order: one Lua script per event does `SET <prefix>:delivered:<event_id> NX EX`, then `XADD` to the durable
log and `PUBLISH` on the global and per-stream channels. The dedupe key makes delivery exactly-once even
when a reply is lost and the event is sent again. Stream state (a hash per stream) and the instance
heartbeat are latest-value data: written directly, retried when Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import time

import redis.asyncio as aioredis
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthenticationWrongNumberOfArgsError, RedisError, ResponseError
from redis.retry import Retry

from ..errors import ConfigError
from ..logs import get
from ..redact import redact
from ..tasks import TaskSupervisor
from .spool import Spool

log = get(__name__)

DELIVER = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[2]), '*', 'event', ARGV[3])
  redis.call('PUBLISH', ARGV[4], ARGV[3])
  redis.call('PUBLISH', ARGV[5], ARGV[3])
  return id
end
return false
"""


class RedisSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field("redis://127.0.0.1:6379/0", description="redis://, rediss:// (TLS) or unix://; "
                     "user and password in the URL for ACLs")
    prefix: str = Field("deepfake", min_length=1, description="prefix of every key and channel")
    events_maxlen: int = Field(100_000, ge=1, description="approximate cap of the durable event stream")
    heartbeat_ttl_s: float = Field(30.0, gt=0, description="TTL of this instance's heartbeat key")
    timeout_s: float = Field(2.0, gt=0, description="timeout of every Redis call")
    dedupe_ttl_s: int = Field(86_400, ge=60, description="how long delivered event ids are remembered")

    def channel(self, stream_id: str | None = None) -> str:
        return f"{self.prefix}:alerts" + (f":{stream_id}" if stream_id else "")

    @property
    def events_key(self) -> str:
        return f"{self.prefix}:events"

    def stream_key(self, stream_id: str) -> str:
        return f"{self.prefix}:stream:{stream_id}"

    def instance_key(self, instance: str) -> str:
        return f"{self.prefix}:instance:{instance}"


class RedisAuthError(ConfigError):
    """Wrong or missing Redis credentials: a configuration error, not an outage."""


def connect(settings: RedisSettings) -> aioredis.Redis:
    """A client whose every call is bounded by `timeout_s` and never retried behind our back."""
    return aioredis.Redis.from_url(
        settings.url, socket_timeout=settings.timeout_s, socket_connect_timeout=settings.timeout_s,
        retry=Retry(NoBackoff(), 0), decode_responses=True)


def describe_error(error: BaseException, url: str) -> str:
    """A one-line reason with no secret in it."""
    if is_auth_error(error):
        return f"Redis authentication failed for {redact(url)}: check the user and password"
    return redact(f"Redis at {url} unreachable: {type(error).__name__}: {error}")


def is_auth_error(error: BaseException) -> bool:
    if isinstance(error, (AuthenticationError, AuthenticationWrongNumberOfArgsError)):
        return True
    text = str(error)
    return isinstance(error, ResponseError) and ("NOAUTH" in text or "WRONGPASS" in text or "NOPERM" in text)


class PublisherMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        registry = REGISTRY if registry is None else registry
        self.delivered = Counter("deepfake_alerts_delivered", "Alert events delivered to Redis", registry=registry)
        self.spool_events = Gauge("deepfake_alert_spool_events", "Alert events waiting in the spool", registry=registry)
        self.spool_age = Gauge("deepfake_alert_spool_oldest_age_seconds", "Age of the oldest spooled event",
                               registry=registry)
        self.spool_dropped = Gauge("deepfake_alert_spool_dropped_events", "Events dropped from a full spool",
                                   registry=registry)
        self.spool_merged = Gauge("deepfake_alert_spool_merged_events", "Updated events merged in a full spool",
                                  registry=registry)
        self.redis_up = Gauge("deepfake_redis_up", "1 when the last Redis call succeeded", registry=registry)


class AlertPublisher:
    def __init__(self, settings: RedisSettings, spool: Spool, instance: str,
                 metrics: PublisherMetrics | None = None, batch: int = 64):
        self.settings, self.spool, self.instance = settings, spool, instance
        self.metrics = metrics or PublisherMetrics()
        self.batch = batch
        self.redis = connect(settings)
        self._deliver = self.redis.register_script(DELIVER)
        self._wake = asyncio.Event()
        self._states: dict[str, dict] = {}  # stream state not yet written
        self.tasks = TaskSupervisor()  # the deliverer and the heartbeat: restarted if they ever fail
        self._outage_logged = False
        self._closing = False
        self.up = False

    async def start(self, require_auth_ok: bool = True) -> None:
        """Check credentials (a wrong password is fatal, an outage is not), then start delivering."""
        try:
            await self.redis.ping()
            self._mark_up()
        except RedisError as e:
            if is_auth_error(e) and require_auth_ok:
                raise RedisAuthError(describe_error(e, self.settings.url)) from None
            self._mark_down(e)
        self.tasks.spawn("alert-deliverer", self._deliver_forever)
        self.tasks.spawn("redis-heartbeat", self._heartbeat_forever)

    async def publish(self, event) -> None:
        """Hand an event over: spooled durably now, delivered in order as soon as Redis takes it."""
        data = event.to_dict() if hasattr(event, "to_dict") else dict(event)
        data["times"] = dict(data.get("times") or {}, published_at=time.time())
        self.spool.put(data)
        self._update_spool_metrics()
        self._wake.set()

    def set_stream_state(self, stream_id: str, state: dict) -> None:
        """Latest state of a stream, written to its hash by the deliverer."""
        self._states[stream_id] = {k: (json.dumps(v) if isinstance(v, (dict, list)) else "" if v is None else str(v))
                                   for k, v in state.items()}
        self._wake.set()

    async def flush(self, timeout: float) -> bool:
        """Wait until every spooled event is delivered (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while (len(self.spool) or self._states) and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.02)
        return not len(self.spool)

    async def close(self, flush_timeout: float = 5.0) -> None:
        await self.flush(flush_timeout)
        # The loops also check the flag: redis-py may turn a cancellation inside a call into its own error.
        self._closing = True
        await self.tasks.close(timeout=self.settings.timeout_s + 1)
        try:
            await self.redis.delete(self.settings.instance_key(self.instance))
        except RedisError:
            pass
        await self.redis.aclose()
        self.spool.close()

    # --- delivery ----------------------------------------------------------------------------------------

    async def _deliver_forever(self) -> None:
        backoff = 0.1
        while not self._closing:
            if not len(self.spool) and not self._states:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._deliver_some()
                backoff = 0.1
            except (RedisError, OSError, asyncio.TimeoutError) as e:
                self._mark_down(e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _deliver_some(self) -> None:
        events = self.spool.peek(self.batch)
        if events:
            s = self.settings
            async with self.redis.pipeline(transaction=False) as pipe:
                for event in events:
                    await self._deliver(
                        keys=[f"{s.prefix}:delivered:{event['event_id']}", s.events_key],
                        args=[s.dedupe_ttl_s, s.events_maxlen, json.dumps(event, separators=(",", ":")),
                              s.channel(), s.channel(event["stream_id"])], client=pipe)
                await pipe.execute()
            self.spool.ack(len(events))
            self.metrics.delivered.inc(len(events))
            self._update_spool_metrics()
        if self._states:
            states, self._states = self._states, {}
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for stream_id, state in states.items():
                        pipe.hset(self.settings.stream_key(stream_id), mapping=state)
                    await pipe.execute()
            except BaseException:
                self._states = {**states, **self._states}  # keep the newest of each for the next try
                raise
        self._mark_up()

    async def _heartbeat_forever(self) -> None:
        ttl = self.settings.heartbeat_ttl_s
        while not self._closing:
            try:
                await self.redis.set(self.settings.instance_key(self.instance),
                                     json.dumps({"instance": self.instance, "at": time.time()}), ex=max(1, int(ttl)))
                self._mark_up()
            except (RedisError, OSError, asyncio.TimeoutError) as e:
                self._mark_down(e)
            await asyncio.sleep(ttl / 3)

    def _mark_up(self) -> None:
        if not self.up and self._outage_logged:
            log.warning("Redis reachable again; delivering spooled events", redis=redact(self.settings.url),
                        events=len(self.spool))
        self.up, self._outage_logged = True, False
        self.metrics.redis_up.set(1)

    def _mark_down(self, error: BaseException) -> None:
        if not self._outage_logged:
            log.warning("Redis unreachable; alert events are spooled on disk until it returns",
                        error=describe_error(error, self.settings.url))
            self._outage_logged = True
        self.up = False
        self.metrics.redis_up.set(0)

    def _update_spool_metrics(self) -> None:
        self.metrics.spool_events.set(len(self.spool))
        self.metrics.spool_age.set(self.spool.oldest_age())
        self.metrics.spool_dropped.set(self.spool.dropped)
        self.metrics.spool_merged.set(self.spool.merged)
