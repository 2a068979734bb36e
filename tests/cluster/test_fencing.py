"""The delivery script's fencing against a real redis-server, event by event: what a daemon that lost its stream
may still deliver, what is refused, and an alert opened by the previous owner but delivered only after the new
owner looked for open alerts (its spool replayed late): closed with `owner_lost`, once."""

import json
import time
import uuid

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from monitor.alerts.sinks.redis import RedisMetrics, RedisSink
from monitor.redis import RedisSettings
from monitor.redis.leases import Leases

STREAM = "cam"


def event(kind: str, alert_id: str, seq: int, token: int, made_at: float, **extra) -> dict:
    return {"schema": "deepfake-monitor/alert/v1", "event_id": uuid.uuid4().hex, "type": kind, "alert_id": alert_id,
            "seq": seq, "stream_id": STREAM, "track_id": 1, "verdict": "manipulated", "peak_verdict": "manipulated",
            "close_reason": extra.pop("close_reason", None), "statistic": {"value": 0.97}, "instance": "a",
            "times": {"scored_at": made_at}, "_fence": {"token": token, "made_at": made_at}, **extra}


async def logged(client) -> list[dict]:
    return [json.loads(fields["event"]) for _, fields in await client.xrange("deepfake:events")]


async def test_a_late_opening_from_a_lost_owner_is_closed_once_and_later_events_are_dropped(redis_server):
    settings = RedisSettings(url=redis_server.url)
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    sink_a = RedisSink(settings, "a", RedisMetrics(CollectorRegistry()))
    a, b = Leases(client, settings, "a", 3.0), Leases(client, settings, "b", 3.0)
    try:
        token_a = await a.claim(STREAM)
        on_time = event("opened", "on-time", 0, token_a, time.time())
        await sink_a.deliver([on_time])
        # Made under A's lease, but still in A's spool when B takes the stream over (A died or was cut off).
        opened = event("opened", "late", 0, token_a, time.time())
        closed_by_a = event("closed", "late", 1, token_a, time.time(), close_reason="recovered")
        assert await a.release(STREAM, token_a)
        token_b = await b.claim(STREAM)
        assert token_b == token_a + 1
        after_takeover = event("opened", "too-late", 0, token_a, time.time() + 0.01)  # made after B's claim

        await sink_a.deliver([opened, after_takeover])
        events = await logged(client)
        assert [(e["alert_id"], e["type"]) for e in events] == [("on-time", "opened"), ("late", "opened"),
                                                                ("late", "closed")]
        close = events[-1]
        assert close["close_reason"] == "owner_lost" and close["seq"] == 1 and "_fence" not in close
        assert await client.smembers(f"deepfake:open:{STREAM}") == {"on-time"}  # the new owner closes that one
        assert set(await client.hkeys("deepfake:alert:late")) == {"seq:0", "seq:1"}
        assert sink_a.metrics.fenced._value.get() == 1  # the event made after the takeover

        # A's own close arrives after: the alert is closed already, so it is dropped; a resend changes nothing.
        await sink_a.deliver([closed_by_a, opened])
        assert len(await logged(client)) == 3

        # The new owner's sweep makes the same owner_lost close: its derived id makes it a duplicate.
        sink_b = RedisSink(settings, "b", RedisMetrics(CollectorRegistry()))
        try:
            again = {**close, "_fence": {"token": token_b, "made_at": time.time()}}
            await sink_b.deliver([again])
        finally:
            await sink_b.client.aclose()
        assert len(await logged(client)) == 3
    finally:
        await sink_a.client.aclose()
        await client.aclose()


async def test_without_a_takeover_an_opening_stays_open(redis_server):
    settings = RedisSettings(url=redis_server.url)
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    sink = RedisSink(settings, "a", RedisMetrics(CollectorRegistry()))
    leases = Leases(client, settings, "a", 3.0)
    try:
        token = await leases.claim(STREAM)
        await sink.deliver([event("opened", "x", 0, token, time.time())])
        # Renewed by the same owner and delivered late: not a takeover, nothing closes it.
        await sink.deliver([event("opened", "y", 0, token, time.time() - 5)])
        assert [e["type"] for e in await logged(client)] == ["opened", "opened"]
        assert await client.smembers(f"deepfake:open:{STREAM}") == {"x", "y"}
    finally:
        await sink.client.aclose()
        await client.aclose()
