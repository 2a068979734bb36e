"""Alert lifecycle (pure) and the on-disk spool (real files, reopened as after a restart)."""

import json

import pytest

from monitor.alerts import SCHEMA, AlertLifecycle, ModelTag, Spool
from monitor.scoring import AUTHENTIC, MANIPULATED, SUSPICIOUS, VerdictPolicy, WindowPolicy, WindowStats

STATS = WindowStats(0.93, 12, 100.0, 104.5, {"low_quality": 2})


def lifecycle(interval=5.0):
    return AlertLifecycle("cam1", 3, WindowPolicy(), VerdictPolicy(), ModelTag("m@abc", "fp32"), "host-1", interval)


def test_episode_opened_updated_closed_with_one_id():
    life = lifecycle(interval=5.0)
    assert life.observe(AUTHENTIC, STATS, now=0) is None
    opened = life.observe(SUSPICIOUS, STATS, now=1)
    assert life.observe(SUSPICIOUS, STATS, now=2) is None
    assert life.observe(MANIPULATED, STATS, now=3) is None  # rate-limited: within 5 s of the last event
    updated = life.observe(MANIPULATED, STATS, now=6.5)
    closed = life.observe(AUTHENTIC, STATS, now=20)
    assert [e.type for e in (opened, updated, closed)] == ["opened", "updated", "closed"]
    assert opened.alert_id == updated.alert_id == closed.alert_id
    assert [e.seq for e in (opened, updated, closed)] == [0, 1, 2]
    assert closed.close_reason == "recovered" and closed.peak_verdict == MANIPULATED
    doc = json.loads(opened.to_json())
    assert doc["schema"] == SCHEMA
    assert doc["evidence"] == {"crops_scored": 12, "crops_skipped": {"low_quality": 2}, "window_span_s": 4.5,
                               "abstain_reason": None}
    assert doc["thresholds"]["suspicious"] == 0.9 and doc["model"] == {"id": "m@abc", "name": "default",
                                                                       "backbone": "clip", "precision": "fp32",
                                                                       "untrained": False}
    assert doc["times"]["first_frame"] == 100.0 and doc["times"]["last_frame"] == 104.5
    # A new episode gets a new id.
    again = life.observe(SUSPICIOUS, STATS, now=30)
    assert again.type == "opened" and again.alert_id != opened.alert_id
    ended = life.end("track_ended", STATS, now=31)
    assert ended.type == "closed" and ended.close_reason == "track_ended"
    assert life.end("stream_ended", STATS) is None


def event(alert, kind, n):
    return {"event_id": f"e{n}", "alert_id": alert, "type": kind, "stream_id": "s"}


def ids(records):
    return [r.event["event_id"] for r in records]


def ack(spool, sink, n):
    """`sink` took the next `n` of its pending records."""
    spool.ack(sink, spool.peek(sink, n)[-1].seq)


def test_spool_survives_reopen_and_acknowledges(tmp_path):
    spool = Spool(tmp_path, max_events=100)
    for n in range(5):
        spool.put(event("a", "updated", n))
    ack(spool, "redis", 2)
    spool.close()
    reopened = Spool(tmp_path, max_events=100)
    assert ids(reopened.peek("redis", 10)) == ["e2", "e3", "e4"]
    ack(reopened, "redis", 3)
    assert len(reopened) == 0 and (tmp_path / "events.jsonl").stat().st_size == 0
    reopened.close()
    assert len(Spool(tmp_path)) == 0


def test_each_sink_has_its_own_cursor_and_an_event_stays_until_every_sink_has_it(tmp_path):
    spool = Spool(tmp_path, sinks=("redis", "hook"))
    for n in range(6):
        spool.put(event("a", "updated", n))
    ack(spool, "redis", 6)  # Redis took everything; the webhook is down
    assert spool.pending("redis") == 0 and spool.pending("hook") == 6 and len(spool) == 6
    ack(spool, "hook", 2)
    assert ids(spool.peek("hook", 10)) == ["e2", "e3", "e4", "e5"] and len(spool) == 4
    dead = spool.dead_letter("hook", spool.peek("hook", 1)[0].event, "rejected: HTTP 400")
    ack(spool, "hook", 1)
    spool.close()
    # A restart keeps both cursors; a sink that is new gets every event still kept (they are delivered after
    # it was configured); a sink that is gone no longer holds events back.
    reopened = Spool(tmp_path, sinks=("hook", "new"))
    assert ids(reopened.peek("hook", 10)) == ["e3", "e4", "e5"] == ids(reopened.peek("new", 10))
    reopened.put(event("b", "opened", 9))
    assert ids(reopened.peek("new", 10)) == ["e3", "e4", "e5", "e9"] == ids(reopened.peek("hook", 10))
    lines = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(d["event"]["event_id"], d["reason"], d["sink"]) for d in lines] == [("e2", "rejected: HTTP 400", "hook")]


def test_a_spool_of_the_one_cursor_format_is_taken_over(tmp_path):
    with open(tmp_path / "events.jsonl", "w") as f:  # what earlier versions wrote: no seq, one offset file
        for n in range(4):
            f.write(json.dumps({"spooled_at": 1.0, "event": event("a", "updated", n)}) + "\n")
    (tmp_path / "delivered").write_text("1")
    spool = Spool(tmp_path, sinks=("redis", "hook"))
    assert ids(spool.peek("redis", 10)) == ["e1", "e2", "e3"] == ids(spool.peek("hook", 10))
    assert not (tmp_path / "delivered").exists()


def test_torn_last_line_is_skipped(tmp_path):
    spool = Spool(tmp_path)
    spool.put(event("a", "opened", 1))
    spool.close()
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write('{"spooled_at": 1, "ev')
    assert ids(Spool(tmp_path).peek("redis", 5)) == ["e1"]


def test_full_spool_merges_superseded_updates_before_dropping(tmp_path):
    spool = Spool(tmp_path, max_events=4)
    spool.put(event("a", "opened", 0))
    spool.put(event("a", "updated", 1))
    spool.put(event("a", "updated", 2))
    spool.put(event("b", "opened", 3))
    spool.put(event("a", "closed", 4))  # full: e1 (superseded update) merges away
    assert ids(spool.peek("redis", 10)) == ["e0", "e2", "e3", "e4"]
    spool.put(event("b", "closed", 5))  # e2 merges (a later event of alert a exists)
    assert ids(spool.peek("redis", 10)) == ["e0", "e3", "e4", "e5"]
    assert (spool.merged, spool.dropped) == (2, 0)
    spool.put(event("c", "opened", 6))  # nothing mergeable: the oldest goes, counted
    assert ids(spool.peek("redis", 10)) == ["e3", "e4", "e5", "e6"]
    assert spool.dropped == 1
    spool.close()
    assert ids(Spool(tmp_path, max_events=4).peek("redis", 10)) == ["e3", "e4", "e5", "e6"]


def test_spool_rejects_bad_size(tmp_path):
    with pytest.raises(ValueError):
        Spool(tmp_path, max_events=0)


def test_events_after_a_restart_of_an_emptied_spool_are_delivered(tmp_path):
    """The defect of issue 'Nothing lost': every sink had everything, the file emptied, the daemon restarted, and
    the next events were numbered from 0 again, behind the saved cursor, so no sink ever got them."""
    spool = Spool(tmp_path, sinks=("redis", "hook"))
    seqs = [spool.put(event("a", "opened", n)) for n in range(3)]
    for sink in ("redis", "hook"):
        ack(spool, sink, 3)
    spool.close()
    for restart in range(3):
        spool = Spool(tmp_path, sinks=("redis", "hook"))
        seq = spool.put(event("b", "opened", 10 + restart))
        assert seq > max(seqs)
        seqs.append(seq)
        assert ids(spool.peek("redis", 5)) == [f"e{10 + restart}"] == ids(spool.peek("hook", 5))
        ack(spool, "redis", 1)
        ack(spool, "hook", 1)
        spool.close()


def test_an_ack_names_the_record_it_acknowledges_while_a_full_spool_drops(tmp_path):
    spool = Spool(tmp_path, max_events=2)
    spool.put(event("a", "opened", 0))
    spool.put(event("b", "opened", 1))
    taken = spool.peek("redis", 2)  # a delivery of e0 and e1 is under way ...
    spool.put(event("c", "opened", 2))  # ... while the full spool drops e0 to take e2
    spool.ack("redis", taken[-1].seq)  # by count ("2 taken") this would have acknowledged e2, never delivered
    assert ids(spool.peek("redis", 5)) == ["e2"] and spool.dropped == 1


def test_cursors_of_the_version_that_renumbered_are_not_trusted_to_skip(tmp_path):
    with open(tmp_path / "events.jsonl", "w") as f:  # numbered from 0 again behind a cursor of 7: never delivered
        for n in range(2):
            f.write(json.dumps({"seq": n, "spooled_at": 1.0 + n, "event": event("a", "opened", n)}) + "\n")
    (tmp_path / "cursors.json").write_text(json.dumps({"redis": 7}))
    spool = Spool(tmp_path)
    assert ids(spool.peek("redis", 5)) == ["e0", "e1"]
    assert spool.put(event("a", "closed", 2)) > 7
