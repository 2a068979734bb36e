#!/usr/bin/env python3
"""Alert publishing against a local redis-server (started here on a free loopback port).

Measures: events/s through the whole path (fsync'd spool + one Lua script doing SET NX, XADD, 2x PUBLISH,
plus an HSET of stream state per event); publish latency from `publish()` to a Pub/Sub subscriber; the
spool's write rate; the replay rate of a spool filled while Redis was down; and Redis plus a signed webhook
together (an aiohttp receiver on 127.0.0.1 that verifies each signature): events/s the webhook takes in a
burst, and publish-to-receiver latency at 200 events/s.
Last line: `RESULT events_per_s=... p99_publish_ms=... spool_replay_events_per_s=... webhook_events_per_s=...
webhook_p99_ms=...`.

  python bench/alerts.py --quick
"""

from __future__ import annotations

import os
import sys

# Run as a file (`python bench/NAME.py`)? Re-run as `python -m bench.NAME` from the repository root, so that the
# helpers shared with the tests import as the package `tests.support`.
if __name__ == "__main__" and not __package__:
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.execv(sys.executable, [sys.executable, "-m", "bench." + os.path.basename(__file__)[:-3], *sys.argv[1:]])

import argparse
import asyncio
import json
import socket
import subprocess
import tempfile
import time

import numpy as np
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from monitor.alerts import AlertPublisher, PublisherMetrics, Spool
from monitor.alerts.sinks import WebhookSettings, WebhookSink
from monitor.redis import RedisSettings
from tests.support.webhook_receiver import WebhookReceiver


def start_redis(port: int) -> subprocess.Popen:
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


def event(n: int) -> dict:
    return {"event_id": f"b{n}-{time.time_ns()}", "alert_id": f"a{n % 10}", "type": "updated", "stream_id": f"s{n % 10}",
            "verdict": "suspicious", "statistic": {"name": "mean", "value": 0.93}, "times": {}}


def new_publisher(url: str, folder: str, webhook: str | None = None) -> AlertPublisher:
    sinks = [WebhookSink(WebhookSettings(url=webhook, secret="bench-secret"), "hook")] if webhook else []
    spool = Spool(folder, max_events=1_000_000, sinks=["redis", *(s.name for s in sinks)])
    return AlertPublisher(RedisSettings(url=url, timeout_s=1.0), spool, "bench", PublisherMetrics(CollectorRegistry()),
                          sinks)


async def webhook_figures(url: str, folder: str, n: int) -> tuple[float, float]:
    """Redis and a webhook together: the webhook's events/s in a burst, and its p99 latency at 200 events/s."""
    receiver = await WebhookReceiver("bench-secret").start()
    arrived: dict[str, float] = {}

    def take(event: dict) -> int:
        arrived.setdefault(event["event_id"], time.time())
        return 200

    receiver.answer = take
    pub = new_publisher(url, folder, receiver.url)
    await pub.start()
    burst = [event(i) for i in range(n)]
    start = time.perf_counter()
    for i, e in enumerate(burst):
        await pub.publish(e)
        if i % 16 == 0:
            await asyncio.sleep(0)
    await pub.flush(120)
    rate = n / (time.perf_counter() - start)
    paced, published = [event(i) for i in range(n // 4)], {}
    for e in paced:
        await pub.publish(e)
        published[e["event_id"]] = time.time()
        await asyncio.sleep(1 / 200)
    await pub.flush(60)
    await pub.close()
    await receiver.stop()
    latencies = [(arrived[i] - t) * 1e3 for i, t in published.items()]
    assert receiver.bad_signatures == 0 and len(arrived) == n + n // 4
    return rate, float(np.percentile(latencies, 99))


async def main_async(n: int) -> None:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()
    url = f"redis://127.0.0.1:{number}/0"
    server = start_redis(number)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            # 1. Throughput and latency with Redis up.
            pub = new_publisher(url, f"{tmp}/live")
            await pub.start()
            listener = aioredis.Redis.from_url(url, decode_responses=True)
            pubsub = listener.pubsub()
            await pubsub.subscribe("deepfake:alerts")
            latencies: list[float] = []

            async def listen(count: int):
                while len(latencies) < count:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message:
                        latencies.append(time.time() - json.loads(message["data"])["times"]["published_at"])

            listening = asyncio.create_task(listen(n))
            start = time.perf_counter()
            for i in range(n):  # a burst: throughput
                await pub.publish(event(i))
                pub.set_stream_state(f"s{i % 10}", {"verdict": "suspicious", "score": 0.93})
                if i % 16 == 0:
                    await asyncio.sleep(0)  # let the deliverer run, as the daemon's loop would
            await pub.flush(60)
            events_per_s = n / (time.perf_counter() - start)
            await asyncio.wait_for(listening, 30)
            # Latency at a steady rate (an alert storm of `rate` events/s), not queueing behind a burst.
            latencies.clear()
            paced, rate = n // 4, 200.0
            listening = asyncio.create_task(listen(paced))
            for i in range(paced):
                await pub.publish(event(i))
                pub.set_stream_state(f"s{i % 10}", {"verdict": "suspicious", "score": 0.93})
                await asyncio.sleep(1 / rate)
            await asyncio.wait_for(listening, 30)
            await pubsub.aclose()
            await listener.aclose()
            await pub.close()
            p50, p99 = np.percentile(np.array(latencies) * 1e3, [50, 99])
            print(f"publish path: {events_per_s:.0f} events/s in a burst; publish->subscriber latency at {rate:.0f} "
                  f"events/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms")

            # 2. Spool writes (fsync each), then replay once Redis is back.
            server.terminate()
            server.wait()
            spool = Spool(f"{tmp}/outage", max_events=1_000_000)
            start = time.perf_counter()
            for i in range(n):
                spool.put(event(i))
            write_rate = n / (time.perf_counter() - start)
            spool.close()
            server = start_redis(number)
            pub = new_publisher(url, f"{tmp}/outage")
            start = time.perf_counter()
            await pub.start()
            assert await pub.flush(120)
            replay_rate = n / (time.perf_counter() - start)
            await pub.close()
            print(f"spool: writes {write_rate:.0f} events/s (fsync each); replay {replay_rate:.0f} events/s")

            # 3. Redis and a signed webhook together.
            webhook_rate, webhook_p99 = await webhook_figures(url, f"{tmp}/webhook", n)
            print(f"Redis + webhook: the webhook took {webhook_rate:.0f} events/s in a burst; publish->receiver "
                  f"p99 {webhook_p99:.1f} ms at 200 events/s")
        finally:
            server.terminate()
            server.wait()
    print(f"RESULT events_per_s={events_per_s:.0f} p99_publish_ms={p99:.2f} spool_replay_events_per_s={replay_rate:.0f} "
          f"p50_publish_ms={p50:.2f} spool_write_events_per_s={write_rate:.0f} webhook_events_per_s={webhook_rate:.0f} "
          f"webhook_p99_ms={webhook_p99:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=None, help="events per phase (default 5000; 1000 with --quick)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    asyncio.run(main_async(args.events or (1000 if args.quick else 5000)))


if __name__ == "__main__":
    main()
