"""Stream leases and the fencing script against a real redis-server, as a hypothesis state machine.

Three daemons (A, B, C) claim, renew and release one stream's lease; the lease expires (its key goes, as when
its TTL ends while its holder is paused or cut off); each daemon makes alert events under the token it
believes it holds and keeps them in its own outbox, delivering them whenever the machine says (late, after
a takeover, out of step with the others). A reference model keeps who holds the lease, the epoch, and when
each token was claimed. Invariants:
- a claim succeeds only on a free stream, and its token is the epoch + 1 (tokens never go back);
- at most one daemon can renew: no stream has two owners;
- an event made after a newer owner claimed the stream never lands in the durable log;
- an `opened` event made while its daemon held the stream lands exactly once, however often it is sent; one
  made before a takeover but delivered after it lands with its `owner_lost` close;
- every update or close lands only for an alert that is open.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import redis.asyncio as aioredis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from prometheus_client import CollectorRegistry

from monitor.alerts.sinks.redis import RedisMetrics, RedisSink
from monitor.redis import RedisSettings
from monitor.redis.leases import Leases, parse_value

STREAM = "cam"
OWNERS = ("A", "B", "C")
SERVER_URL: str = ""


class LeaseMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.settings = RedisSettings(url=SERVER_URL, timeout_s=2.0)
        self.client = aioredis.Redis.from_url(SERVER_URL, decode_responses=True)
        self.run(self.client.flushall())
        self.leases = {o: Leases(self.client, self.settings, o, ttl_s=30.0) for o in OWNERS}
        self.sinks = {o: RedisSink(self.settings, o, RedisMetrics(CollectorRegistry())) for o in OWNERS}
        self.believed: dict[str, int | None] = {o: None for o in OWNERS}  # token each daemon thinks it holds
        self.outbox: dict[str, list[dict]] = {o: [] for o in OWNERS}  # made, not yet delivered (resent too)
        self.made: dict[str, dict] = {}  # event id -> the event, as made
        self.open_alerts: dict[str, set[str]] = {o: set() for o in OWNERS}  # alerts each daemon thinks it has open
        # The model: the lease holder, the epoch, and when each token was claimed (a bracket of local times).
        self.holder: tuple[str, int] | None = None
        self.epoch = 0
        self.claimed_at: dict[int, tuple[float, float]] = {}
        self.delivered_late: set[str] = set()  # openings delivered after a newer owner claimed the stream

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self):
        async def close():
            for sink in self.sinks.values():
                await sink.client.aclose()
            await self.client.aclose()
        self.run(close())
        self.loop.close()

    # --- lease rules ----------------------------------------------------------------------------------------

    @rule(owner=st.sampled_from(OWNERS))
    def claim(self, owner):
        before = time.time()
        token = self.run(self.leases[owner].claim(STREAM))
        after = time.time()
        if self.holder is not None:
            assert token is None, f"{owner} claimed a stream {self.holder[0]} holds"
            return
        assert token == self.epoch + 1, f"token {token} after epoch {self.epoch}"
        self.epoch, self.holder = token, (owner, token)
        self.claimed_at[token] = (before, after)
        self.believed[owner] = token
        self.open_alerts[owner] = set()

    @rule(owner=st.sampled_from(OWNERS))
    def renew(self, owner):
        token = self.believed[owner]
        if token is None:
            return
        held = self.run(self.leases[owner].renew({STREAM: token}))[STREAM]
        assert held == (self.holder == (owner, token)), f"{owner} renewed {held}, model holder {self.holder}"
        if not held:
            self.believed[owner] = None  # it learns it lost the stream (its events stay fenced)

    @rule()
    def expire(self):
        """The lease's TTL ends (its holder paused, or cut off from Redis): the key goes; the holder does not know."""
        self.run(self.client.delete(self.settings.lease_key(STREAM)))
        self.holder = None

    @rule(owner=st.sampled_from(OWNERS))
    def release(self, owner):
        token = self.believed[owner]
        if token is None:
            return
        released = self.run(self.leases[owner].release(STREAM, token))
        assert released == (self.holder == (owner, token))
        if released:
            self.holder = None
        self.believed[owner] = None

    # --- events ---------------------------------------------------------------------------------------------

    @precondition(lambda self: any(t is not None for t in self.believed.values()))
    @rule(data=st.data(), kind=st.sampled_from(["opened", "opened", "updated", "closed"]))
    def make_event(self, data, kind):
        """A daemon that believes it holds the stream makes an event (kept in its outbox, delivered later)."""
        owner = data.draw(st.sampled_from([o for o in OWNERS if self.believed[o] is not None]))
        if kind == "opened" or not self.open_alerts[owner]:
            alert, kind, seq = uuid.uuid4().hex[:8], "opened", 0
            self.open_alerts[owner].add(alert)
        else:
            alert = data.draw(st.sampled_from(sorted(self.open_alerts[owner])))
            seq = sum(1 for e in self.made.values() if e["alert_id"] == alert)
            if kind == "closed":
                self.open_alerts[owner].discard(alert)
        made_at = time.time()
        event = {"schema": "deepfake-monitor/alert/v1", "event_id": uuid.uuid4().hex, "type": kind,
                 "alert_id": alert, "seq": seq, "stream_id": STREAM, "track_id": 1, "verdict": "suspicious",
                 "peak_verdict": "suspicious", "close_reason": "recovered" if kind == "closed" else None,
                 "instance": owner, "times": {"scored_at": made_at},
                 "_fence": {"token": self.believed[owner], "made_at": made_at}}
        self.made[event["event_id"]] = event
        self.outbox[owner].append(event)

    @rule(owner=st.sampled_from(OWNERS), resend=st.booleans())
    def deliver(self, owner, resend):
        """The daemon's spool delivers everything it has (again, with `resend`: a lost reply)."""
        events = list(self.outbox[owner])
        if not events:
            return
        self.delivered_late |= {e["event_id"] for e in events if e["type"] == "opened" and e["_fence"]["token"] < self.epoch}
        self.run(self.sinks[owner].deliver(events))
        if resend:
            self.run(self.sinks[owner].deliver(events))
        self.outbox[owner] = []
        self._check_log()

    # --- checks ---------------------------------------------------------------------------------------------

    def _fenced(self, event: dict) -> bool | None:
        """True: made after a newer owner's claim; False: made before; None: too close to the claim to say."""
        token, made_at = event["_fence"]["token"], event["_fence"]["made_at"]
        newer = self.claimed_at.get(token + 1)
        if newer is None:
            return False
        before, after = newer
        if made_at >= after:
            return True
        if made_at < before:
            return False
        return None

    def _check_log(self) -> None:
        log = [json.loads(f["event"]) for _, f in self.run(self.client.xrange(self.settings.events_key))]
        ids = [e["event_id"] for e in log]
        assert len(ids) == len(set(ids)), "an event landed twice"
        landed = set(ids)
        open_now: set[str] = set()
        for e in log:
            assert "_fence" not in e
            if e.get("close_reason") == "owner_lost":
                assert e["alert_id"] in open_now, "owner_lost close for an alert that is not open"
                open_now.discard(e["alert_id"])
                continue
            made = self.made[e["event_id"]]
            assert self._fenced(made) is not True, f"an event made after a takeover landed: {e['type']} {e['alert_id']}"
            if e["type"] == "opened":
                open_now.add(e["alert_id"])
            else:
                assert e["alert_id"] in open_now, f"{e['type']} landed for an alert that is not open"
                if e["type"] == "closed":
                    open_now.discard(e["alert_id"])
        # Liveness: every opening delivered and made under a lease nobody had taken over yet has landed; one
        # delivered only after a takeover landed together with its owner_lost close.
        pending = {e["event_id"] for o in OWNERS for e in self.outbox[o]}
        closes = {e["alert_id"] for e in log if e.get("close_reason") == "owner_lost"}
        for event_id, made in self.made.items():
            if event_id in pending or made["type"] != "opened" or self._fenced(made) is not False:
                continue
            assert event_id in landed, "an opening made under a valid lease was lost"
            if event_id in self.delivered_late:
                assert made["alert_id"] in closes, "a late opening was left open"

    @invariant()
    def no_stream_has_two_owners(self):
        value = self.run(self.client.get(self.settings.lease_key(STREAM)))
        assert parse_value(value) == self.holder
        believers = [o for o in OWNERS if self.believed[o] is not None and self.holder == (o, self.believed[o])]
        assert len(believers) <= 1


def test_leases_and_fencing_hold_for_any_interleaving(redis_server):
    global SERVER_URL
    SERVER_URL = redis_server.url
    run_state_machine_as_test(LeaseMachine, settings=settings(max_examples=400, stateful_step_count=40,
                                                                deadline=None))


pytestmark = pytest.mark.timeout(600)
