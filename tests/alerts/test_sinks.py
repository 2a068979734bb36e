"""Alert sinks behind one dispatcher: a real Redis and real webhook receivers (aiohttp) on 127.0.0.1."""

import asyncio
import json
import logging
import time

import redis
from prometheus_client import CollectorRegistry

from monitor.alerts import AlertPublisher, PublisherMetrics, Spool
from monitor.alerts.sinks import WebhookSettings, WebhookSink, sign
from monitor.redis import RedisSettings
from tests.support.aio import wait_for
from tests.support.servers import RedisServer
from tests.support.webhook_receiver import WebhookReceiver, verify

SECRET = "hook-S3cret@x/y:z"


def events(n, alert="a1", stream="cam1", peak="suspicious"):
    types = ["opened"] + ["updated"] * (n - 2) + ["closed"]
    return [{"event_id": f"{alert}-{i}", "alert_id": alert, "type": t, "seq": i, "stream_id": stream,
             "peak_verdict": peak, "times": {}} for i, t in enumerate(types)]


def publisher(redis_url, folder, *hooks: WebhookSettings):
    sinks = [WebhookSink(h, h.name or f"webhook-{i + 1}") for i, h in enumerate(hooks)]
    spool = Spool(folder, sinks=["redis", *(s.name for s in sinks)])
    return AlertPublisher(RedisSettings(url=redis_url, timeout_s=0.5), spool, "test-host",
                          PublisherMetrics(CollectorRegistry()), sinks)


def redis_ids(url):
    client = redis.Redis.from_url(url, decode_responses=True)
    return [json.loads(f["event"])["event_id"] for _, f in client.xrange("deepfake:events")]


async def test_signed_posts_arrive_in_order_and_a_rejected_event_goes_to_the_dead_letter(redis_server, tmp_path,
                                                                                         caplog):
    caplog.set_level(logging.INFO)
    receiver = await WebhookReceiver(SECRET).start()
    receiver.answer = lambda event: 400 if event["event_id"] == "a1-2" else 200
    hook = WebhookSettings(url=receiver.url.replace("http://", "http://user:Basic-Pw9@"), secret=SECRET,
                           headers={"X-Team": "soc"})
    pub = publisher(redis_server.url, tmp_path, hook)
    await pub.start()
    sent = events(5)
    for event in sent:
        await pub.publish(event)
    assert await pub.flush(10)
    await pub.close()
    await receiver.stop()
    assert receiver.ids() == ["a1-0", "a1-1", "a1-3", "a1-4"] and receiver.bad_signatures == 0
    assert redis_ids(redis_server.url) == [e["event_id"] for e in sent]  # Redis has all of them
    dead = [json.loads(line) for line in (tmp_path / "dead-letter-webhook-1.jsonl").read_text().splitlines()]
    assert [(d["event"]["event_id"], d["sink"]) for d in dead] == [("a1-2", "webhook-1")]
    assert "HTTP 400" in dead[0]["reason"]
    headers = receiver.headers[0]
    assert headers["Content-Type"] == "application/json" and headers["X-Team"] == "soc"
    assert headers["Authorization"].startswith("Basic ")  # credentials in the URL: basic auth
    assert "Basic-Pw9" not in caplog.text and SECRET not in caplog.text


async def test_retry_after_is_honoured_and_a_slow_sink_never_delays_another(redis_server, tmp_path):
    slow, limited = await WebhookReceiver().start(), await WebhookReceiver().start()
    seen_at = {}

    def rate_limited(event):  # 429 with Retry-After: 1 the first time each event comes
        if event["event_id"] not in seen_at:
            seen_at[event["event_id"]] = time.monotonic()
            return 429
        return 200

    limited.answer = rate_limited

    async def hang(event):  # longer than the sink's 2 s timeout, every time
        await asyncio.sleep(4)
        return 200

    slow.answer = hang
    pub = publisher(redis_server.url, tmp_path, WebhookSettings(name="slow", url=slow.url, timeout_s=2),
                    WebhookSettings(name="limited", url=limited.url))
    await pub.start()
    started = time.monotonic()
    for event in events(3):
        await pub.publish(event)
    assert await wait_for(lambda: len(redis_ids(redis_server.url)) == 3, 5)
    redis_s = time.monotonic() - started
    accepted_at = {}
    while len(accepted_at) < 3 and time.monotonic() - started < 15:
        for event in limited.accepted:
            accepted_at.setdefault(event["event_id"], time.monotonic())
        await asyncio.sleep(0.01)
    waits = [accepted_at[i] - seen_at[i] for i in accepted_at]
    print(f"Redis had all 3 events after {redis_s:.2f} s while one webhook hung and one asked to wait "
          f"(waited {min(waits):.2f}-{max(waits):.2f} s after each 429 with Retry-After: 1)")
    assert redis_s < 1.0
    assert limited.ids() == ["a1-0", "a1-1", "a1-2"] and limited.requests == 6  # each once refused, once taken
    assert min(waits) >= 0.9  # Retry-After: 1 was honoured
    assert pub.spool.pending("slow") == 3 and pub.dispatcher.failing["slow"]
    await pub.close(flush_timeout=0)
    await slow.stop()
    await limited.stop()


async def test_filters_choose_the_streams_and_verdicts_a_webhook_gets(redis_server, tmp_path):
    receiver = await WebhookReceiver().start()
    pub = publisher(redis_server.url, tmp_path, WebhookSettings(url=receiver.url, streams=["lobby"],
                                                                verdicts=["manipulated"]))
    await pub.start()
    for batch in (events(3, "x", "cam1", "manipulated"), events(3, "y", "lobby", "suspicious"),
                  events(3, "z", "lobby", "manipulated")):
        for event in batch:
            await pub.publish(event)
    assert await pub.flush(10)
    await pub.close()
    await receiver.stop()
    assert receiver.ids() == ["z-0", "z-1", "z-2"] and len(redis_ids(redis_server.url)) == 9


def test_the_signature_is_what_a_receiver_recomputes():
    body, timestamp = b'{"event_id":"e1"}', str(int(time.time()))
    assert verify("k", timestamp, body, sign("k", timestamp, body))
    assert not verify("other", timestamp, body, sign("k", timestamp, body))
    assert not verify("k", timestamp, body + b" ", sign("k", timestamp, body))


async def test_pending_goes_to_zero_for_events_a_sink_filters_out_or_dead_letters(redis_server, tmp_path):
    """The last events of the spool are left out by one webhook's filter and rejected by another: neither holds
    them, so neither's pending gauge may stay up (it did: only a delivery updated it)."""
    receiver = await WebhookReceiver().start()
    receiver.answer = lambda event: 422 if event["event_id"].startswith("b") else 200
    registry = CollectorRegistry()
    filtered = WebhookSettings(url=receiver.url, name="lobby-only", streams=["lobby"])
    rejecting = WebhookSettings(url=receiver.url, name="rejecting")
    sinks = [WebhookSink(h, h.name) for h in (filtered, rejecting)]
    spool = Spool(tmp_path, sinks=["redis", *(s.name for s in sinks)])
    pub = AlertPublisher(RedisSettings(url=redis_server.url, timeout_s=0.5), spool, "test-host",
                         PublisherMetrics(registry), sinks)
    await pub.start()
    for event in events(3, "a", "lobby") + events(3, "b", "cam1"):
        await pub.publish(event)
    assert await pub.flush(10)
    pending = {name: registry.get_sample_value("deepfake_sink_pending_events", {"sink": name})
               for name in ("redis", "lobby-only", "rejecting")}
    await pub.close()
    await receiver.stop()
    assert pending == {"redis": 0, "lobby-only": 0, "rejecting": 0}, pending
    assert registry.get_sample_value("deepfake_sink_skipped_total", {"sink": "lobby-only"}) == 3
    assert registry.get_sample_value("deepfake_sink_dead_letters_total", {"sink": "rejecting"}) == 3


async def test_the_spool_gauges_move_during_an_outage_without_new_events(tmp_path):
    """Redis is down: the events wait, and the oldest one's age grows at each scrape though nothing new is
    published (the gauges used to change only when an event was published)."""
    down = RedisServer()  # never started
    registry = CollectorRegistry()
    pub = AlertPublisher(RedisSettings(url=down.url, timeout_s=0.3), Spool(tmp_path), "test-host",
                         PublisherMetrics(registry))
    await pub.start()
    for event in events(3):
        await pub.publish(event)
    first = registry.get_sample_value("deepfake_alert_spool_oldest_age_seconds")
    await asyncio.sleep(1.2)
    later = registry.get_sample_value("deepfake_alert_spool_oldest_age_seconds")
    kept = registry.get_sample_value("deepfake_alert_spool_events")
    await pub.close(flush_timeout=0)
    assert kept == 3 and later >= first + 1.0, (first, later)
