"""The alert store's listing against a real redis-server (events delivered by the real publisher)."""

from prometheus_client import CollectorRegistry

from monitor.alerts import AlertPublisher, PublisherMetrics, Spool
from monitor.alerts.store import AlertStore
from monitor.redis import RedisSettings


def event(alert: str, kind: str, seq: int, n: int) -> dict:
    return {"event_id": f"e{n}", "alert_id": alert, "type": kind, "seq": seq, "stream_id": "cam", "track_id": 1,
            "verdict": "suspicious", "peak_verdict": "suspicious", "times": {}}


async def test_paging_one_alert_at_a_time_lists_each_alert_once(redis_server, tmp_path):
    """The log holds a.opened, b.opened, c.opened, a.updated, b.closed, a.closed: newest first the alerts are
    a, b, c. With limit=1 each page's cursor lies below a newer event of an alert already listed; its older
    events must not list it again (a came back on the third page)."""
    settings = RedisSettings(url=redis_server.url)
    pub = AlertPublisher(settings, Spool(tmp_path / "spool"), "h", PublisherMetrics(CollectorRegistry()))
    await pub.start()
    for n, (alert, kind, seq) in enumerate([("a", "opened", 0), ("b", "opened", 0), ("c", "opened", 0),
                                            ("a", "updated", 1), ("b", "closed", 1), ("a", "closed", 2)]):
        await pub.publish(event(alert, kind, seq, n))
    assert await pub.flush(5)
    await pub.close()
    store = AlertStore(settings)
    try:
        listed, cursor = [], None
        for _ in range(10):
            page, cursor = await store.recent(cursor=cursor, limit=1)
            listed += [(a["alert_id"], a["status"]) for a in page]
            if cursor is None:
                break
        everything, _ = await store.recent(limit=50)
    finally:
        await store.close()
    assert listed == [("a", "closed"), ("b", "closed"), ("c", "open")], listed
    assert [a["alert_id"] for a in everything] == ["a", "b", "c"]
