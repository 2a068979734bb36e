"""Publishing to a real redis-server: fan-out, durable log, outages, restarts, authentication."""

import asyncio
import json
import subprocess
import sys
import time

import pytest
import redis
from prometheus_client import CollectorRegistry

from monitor.alerts import (
    AlertLifecycle,
    AlertPublisher,
    ModelTag,
    PublisherMetrics,
    Spool,
)
from monitor.redis import RedisAuthError, RedisSettings
from monitor.scoring import AUTHENTIC, MANIPULATED, SUSPICIOUS, VerdictPolicy, WindowPolicy, WindowStats
from tests.support.servers import RedisServer

STATS = WindowStats(0.95, 8, 10.0, 12.0, {})


def publisher(url, spool_dir, **settings):
    return AlertPublisher(RedisSettings(url=url, timeout_s=0.5, **settings), Spool(spool_dir), "test-host",
                          PublisherMetrics(CollectorRegistry()))


def synthetic(n, stream="cam1"):
    return [{"event_id": f"ev{n_:05d}", "alert_id": "a1", "type": "updated", "stream_id": stream, "seq": n_,
             "times": {}} for n_ in range(n)]


def log_ids(url, prefix="deepfake"):
    client = redis.Redis.from_url(url, decode_responses=True)
    return [json.loads(fields["event"])["event_id"] for _, fields in client.xrange(f"{prefix}:events")]


async def test_subscriber_sees_opened_updated_closed(redis_server, tmp_path):
    pub = publisher(redis_server.url, tmp_path)
    await pub.start()
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    pubsub = client.pubsub()
    await pubsub.subscribe("deepfake:alerts", "deepfake:alerts:cam1")
    await pubsub.get_message(timeout=1)
    await pubsub.get_message(timeout=1)
    life = AlertLifecycle("cam1", 7, WindowPolicy(), VerdictPolicy(), ModelTag("m", "fp32"), "test-host", 0.0)
    for verdict, now in [(AUTHENTIC, 1), (SUSPICIOUS, 2), (MANIPULATED, 3), (MANIPULATED, 4), (AUTHENTIC, 5)]:
        if (event := life.observe(verdict, STATS, now=now)) is not None:
            await pub.publish(event)
    assert await pub.flush(5)
    received = []
    deadline = time.monotonic() + 5
    while len(received) < 6 and time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message:
            received.append((message["channel"], json.loads(message["data"])))
    await pubsub.aclose()
    await client.aclose()
    await pub.close()
    global_events = [e for channel, e in received if channel == "deepfake:alerts"]
    stream_events = [e for channel, e in received if channel == "deepfake:alerts:cam1"]
    assert [e["type"] for e in global_events] == ["opened", "updated", "closed"]
    assert [e["event_id"] for e in stream_events] == [e["event_id"] for e in global_events]
    assert len({e["alert_id"] for e in global_events}) == 1
    times = [e["times"] for e in global_events]
    assert all(t["published_at"] >= t["scored_at"] for t in times)
    assert [t["scored_at"] for t in times] == sorted(t["scored_at"] for t in times)
    assert log_ids(redis_server.url) == [e["event_id"] for e in global_events]


async def test_redis_restarts_lose_nothing_and_duplicate_nothing(tmp_path):
    server = RedisServer().start()
    pub = publisher(server.url, tmp_path / "spool")
    await pub.start()
    events = synthetic(150)
    collected = []  # the log does not survive a restart (no persistence): read it before each stop
    for i, event in enumerate(events):
        await pub.publish(event)
        if i in (40, 95):
            await pub.flush(0.2)  # whatever made it before the outage
            collected += log_ids(server.url)
            server.stop()
        if i in (70, 125):
            server.start()
            assert await pub.flush(15), "spool did not drain after Redis came back"
        await asyncio.sleep(0.003)
    assert await pub.flush(15)
    collected += log_ids(server.url)
    assert len(pub.spool) == 0
    await pub.close()
    server.stop()
    assert collected == [e["event_id"] for e in events]  # each exactly once, in order


async def test_spooled_events_are_delivered_after_a_process_restart(tmp_path):
    server = RedisServer()  # not started: Redis is down while the "daemon" runs
    spool_dir = tmp_path / "spool"
    script = f"""
import asyncio
from monitor.alerts import AlertPublisher, Spool, PublisherMetrics
from monitor.redis import RedisSettings
from prometheus_client import CollectorRegistry
async def main():
    pub = AlertPublisher(RedisSettings(url={server.url!r}, timeout_s=0.3), Spool({str(spool_dir)!r}), "h",
                         PublisherMetrics(CollectorRegistry()))
    await pub.start()
    for n in range(20):
        await pub.publish({{"event_id": f"p{{n}}", "alert_id": "a", "type": "updated", "stream_id": "s"}})
    await pub.close(flush_timeout=0.5)
asyncio.run(main())
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert len(Spool(spool_dir)) == 20
    server.start()
    try:
        pub = publisher(server.url, spool_dir)
        await pub.start()
        assert await pub.flush(10)
        await pub.close()
        # Alert `a` was never closed by that process: the start closes it (reason restart) after its events.
        logged = log_ids(server.url)
        assert logged[:20] == [f"p{n}" for n in range(20)] and len(logged) == 21
        assert log_events(server.url)[-1]["close_reason"] == "restart"
    finally:
        server.stop()


def log_events(url, prefix="deepfake"):
    client = redis.Redis.from_url(url, decode_responses=True)
    return [json.loads(fields["event"]) for _, fields in client.xrange(f"{prefix}:events")]


async def test_alerts_open_when_the_process_was_killed_are_closed_by_the_next_start(redis_server, tmp_path):
    """A daemon killed outright (here: os._exit, no clean stop) leaves alert x open and y closed; the next
    start on the same spool closes x once (reason restart, the next seq), and only x; a second start adds
    nothing."""
    spool_dir = tmp_path / "spool"
    script = f"""
import asyncio, os
from monitor.alerts import AlertPublisher, Spool, PublisherMetrics
from monitor.redis import RedisSettings
from prometheus_client import CollectorRegistry
async def main():
    pub = AlertPublisher(RedisSettings(url={redis_server.url!r}, timeout_s=0.5), Spool({str(spool_dir)!r}), "h",
                         PublisherMetrics(CollectorRegistry()))
    await pub.start()
    for n, (alert, kind) in enumerate([("x", "opened"), ("x", "updated"), ("y", "opened"), ("y", "closed")]):
        await pub.publish({{"event_id": f"k{{n}}", "alert_id": alert, "type": kind, "stream_id": "s",
                           "seq": 0 if kind == "opened" else 1, "verdict": "suspicious", "times": {{}}}})
    await pub.flush(5)
    os._exit(9)  # killed: no closed events, nothing cleaned up
asyncio.run(main())
"""
    assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == 9
    for _ in range(2):
        pub = publisher(redis_server.url, spool_dir)
        await pub.start()
        assert await pub.flush(5)
        await pub.close()
    events = log_events(redis_server.url)
    assert [(e["alert_id"], e["type"], e["seq"]) for e in events] == [
        ("x", "opened", 0), ("x", "updated", 1), ("y", "opened", 0), ("y", "closed", 1), ("x", "closed", 2)]
    assert events[-1]["close_reason"] == "restart" and events[-1]["instance"] == "test-host"


async def test_stream_state_and_heartbeat(redis_server, tmp_path):
    pub = publisher(redis_server.url, tmp_path, prefix="df2", heartbeat_ttl_s=5)
    await pub.start()
    pub.set_stream_state("cam1", {"verdict": "authentic", "score": 0.42, "fps": 2.0, "tracks": [1, 2]})
    await pub.flush(5)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    deadline = time.monotonic() + 5
    while not client.hgetall("df2:stream:cam1") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert client.hgetall("df2:stream:cam1") == {"verdict": "authentic", "score": "0.42", "fps": "2.0",
                                                 "tracks": "[1, 2]"}
    assert 0 < client.ttl("df2:instance:test-host") <= 5
    await pub.close()
    assert client.exists("df2:instance:test-host") == 0


async def test_wrong_password_fails_clearly_without_the_secret(tmp_path):
    with RedisServer(password="s3cret-pass") as server:
        good = publisher(server.url, tmp_path / "good")
        await good.start()
        await good.close()
        wrong = server.url.replace("s3cret-pass", "wrong-Pa55")
        with pytest.raises(RedisAuthError) as error:
            await publisher(wrong, tmp_path / "wrong").start()
        assert "authentication failed" in str(error.value)
        assert "wrong-Pa55" not in str(error.value) and "s3cret-pass" not in str(error.value)
        missing = server.url.replace(":s3cret-pass@", "")
        with pytest.raises(RedisAuthError):
            await publisher(missing, tmp_path / "missing").start()
