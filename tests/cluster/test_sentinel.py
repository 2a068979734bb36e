"""Redis high availability: the daemon's publisher on a Sentinel-managed Redis (a master, two replicas, three
real Sentinels). The master is killed while alert events flow; after the failover every event published is
in the durable log exactly once: the spool holds them through the outage, WAIT makes a delivery count only
once a replica has it, and the dedupe keys make a repeated delivery a no-op."""

import asyncio
import time
import uuid

import redis
from prometheus_client import CollectorRegistry

from monitor.alerts import AlertPublisher, PublisherMetrics, Spool
from monitor.redis import RedisSettings
from tests.support.servers import SentinelSet


def event(n: int) -> dict:
    alert = uuid.uuid4().hex
    return {"schema": "deepfake-monitor/alert/v1", "event_id": uuid.uuid4().hex, "type": "opened", "alert_id": alert,
            "seq": 0, "stream_id": f"cam-{n % 3}", "track_id": n, "verdict": "suspicious",
            "peak_verdict": "suspicious", "times": {"scored_at": time.time()}, "instance": "ha-test"}


async def test_events_survive_a_master_failover_exactly_once(tmp_path):
    with SentinelSet(tmp_path) as ha:
        settings = RedisSettings(url=ha.url, wait_replicas=1, timeout_s=1.0)
        publisher = AlertPublisher(settings, Spool(tmp_path / "spool"), "ha-test", PublisherMetrics(CollectorRegistry()))
        await publisher.start()
        old_master = ha.master_port()
        published = []
        try:
            for n in range(240):
                item = event(n)
                await publisher.publish(item)
                published.append(item["event_id"])
                if n == 80:
                    ha.master.kill()  # the master dies while events flow
                    killed = time.monotonic()
                await asyncio.sleep(0.025)
            deadline = time.monotonic() + 60
            while publisher.spool.pending("redis") and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert publisher.spool.pending("redis") == 0, "the spool drained after the failover"
            print(f"\nfailover: master {old_master} -> {ha.master_port()}; spool drained "
                  f"{time.monotonic() - killed:.1f} s after the kill")
        finally:
            await publisher.close(flush_timeout=1)
        assert ha.master_port() != old_master
        log = redis.Redis(port=ha.master_port(), decode_responses=True).xrange("deepfake:events")
        import json

        ids = [json.loads(fields["event"])["event_id"] for _, fields in log]
        assert len(ids) == len(set(ids)), "no event twice"
        assert set(ids) == set(published), f"{len(set(published) - set(ids))} events lost"
