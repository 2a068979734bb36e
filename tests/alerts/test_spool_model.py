"""The spool against a reference model (hypothesis state machine), on real files.

Random appends, deliveries (some with appends between the peek and the acknowledgement, as when a delivery is
awaited), reopening with sinks added or removed, crashes at any fsync or rename of the spool, torn last lines,
`cursors.json` missing or corrupt, and spools small enough to merge and drop. Invariants:
- sequence numbers only rise, across restarts and crashes too (unless `cursors.json` itself is lost);
- every sink gets its events in append order (counting each event's first arrival);
- every event reaches every sink configured when it was appended, and every sink added while it was still
  being delivered, at least once, unless a full spool merged it (superseded by a later event of its alert that
  the sink got) or dropped it (counted);
- once every sink has everything, the spool keeps nothing, in memory or on disk.
"""

from __future__ import annotations

import json
import os as real_os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import monitor.alerts.spool as spool_module
from monitor.alerts.spool import Spool

SINKS = ("redis", "hook", "audit")
ALERTS = ("a", "b", "c")
KINDS = ("opened", "updated", "updated", "closed", "evidence")


class Crash(Exception):
    """The process died here."""


class _CrashingOs:
    """`os` as the spool sees it, dying at its `at`-th fsync or rename (the points where state becomes durable)."""

    def __init__(self, at: int):
        self.at, self.calls = at, 0

    def _tick(self) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise Crash()

    def fsync(self, fd):
        self._tick()
        return real_os.fsync(fd)

    def replace(self, a, b):
        self._tick()
        return real_os.replace(a, b)

    def __getattr__(self, name):
        return getattr(real_os, name)


@contextmanager
def crash_at(n: int):
    spool_module.os = _CrashingOs(n)
    try:
        yield
    finally:
        spool_module.os = real_os


class SpoolMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.capacity = 1000
        self.configured = ["redis"]
        self.spool: Spool | None = None
        self.order: list[str] = []  # every event that may be in the spool, in append order (crashed puts too)
        self.info: dict[str, tuple[str, str]] = {}  # event id -> (alert, kind)
        self.owed: dict[str, set[str]] = {}  # event id -> sinks that must get it (appended events only)
        self.received: dict[str, list[str]] = {s: [] for s in SINKS}  # every delivery, duplicates included
        self.max_seq = -1
        self.dropped = self.merged = 0  # what full spools of earlier runs merged or dropped
        self.counter = 0

    def teardown(self):
        if self.spool is not None:
            self.spool.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- helpers --------------------------------------------------------------------------------------------

    def _open(self) -> None:
        self.spool = Spool(self.folder, max_events=self.capacity, sinks=self.configured)

    def _abandon(self) -> None:
        """The process died: what is on disk stays as it is, memory is gone."""
        self._count_losses()
        self.spool._file.close()  # the process's files close with it, its lock too
        self.spool._lock.close()
        self.spool = None
        self._open()

    def _count_losses(self) -> None:
        self.dropped += self.spool.dropped
        self.merged += self.spool.merged

    def _new_event(self, alert: str, kind: str) -> dict:
        self.counter += 1
        event_id = f"e{self.counter}"
        self.info[event_id] = (alert, kind)
        self.order.append(event_id)
        if kind == "evidence":
            return {"kind": "evidence", "alert_id": alert, "event_id": event_id}
        return {"event_id": event_id, "alert_id": alert, "type": kind, "stream_id": "s"}

    def _put(self, alert: str, kind: str) -> None:
        event = self._new_event(alert, kind)
        seq = self.spool.put(event)
        assert seq > self.max_seq, f"sequence number went back: {seq} after {self.max_seq}"
        self.max_seq = seq
        self.owed[event["event_id"]] = set(self.configured)

    def _received(self, sink: str, records) -> None:
        self.received[sink].extend(r.event["event_id"] for r in records)

    def _delivered_to_all_continuing(self, event_id: str, continuing: set[str]) -> bool:
        return all(event_id in self.received[s] for s in self.owed[event_id] & continuing)

    # --- rules ----------------------------------------------------------------------------------------------

    @precondition(lambda self: self.spool is None)
    @rule(capacity=st.sampled_from([1000, 1000, 3, 6]), sinks=st.sets(st.sampled_from(SINKS), min_size=1))
    def start(self, capacity, sinks):
        self.capacity, self.configured = capacity, sorted(sinks)
        self._open()

    @precondition(lambda self: self.spool is not None)
    @rule(alert=st.sampled_from(ALERTS), kind=st.sampled_from(KINDS))
    def put(self, alert, kind):
        self._put(alert, kind)

    @precondition(lambda self: self.spool is not None)
    @rule(data=st.data(), n=st.integers(1, 5))
    def deliver(self, data, n):
        sink = data.draw(st.sampled_from(self.configured))
        records = self.spool.peek(sink, n)
        if records:
            self._received(sink, records)
            self.spool.ack(sink, records[-1].seq)

    @precondition(lambda self: self.spool is not None)
    @rule(data=st.data(), n=st.integers(1, 5), puts=st.lists(st.tuples(st.sampled_from(ALERTS),
                                                                       st.sampled_from(KINDS)), min_size=1, max_size=4))
    def deliver_while_more_arrive(self, data, n, puts):
        """New events are spooled while a delivery is awaited: a full spool merges or drops meanwhile."""
        sink = data.draw(st.sampled_from(self.configured))
        records = self.spool.peek(sink, n)
        for alert, kind in puts:
            self._put(alert, kind)
        if records:
            self._received(sink, records)
            self.spool.ack(sink, records[-1].seq)

    @precondition(lambda self: self.spool is not None)
    @rule(sinks=st.sets(st.sampled_from(SINKS), min_size=1), capacity=st.sampled_from([1000, 3, 6]))
    def restart(self, sinks, capacity):
        """A clean stop, then a start with other sinks configured."""
        self._count_losses()
        self.spool.close()
        self._reconfigure(sorted(sinks), capacity)

    def _reconfigure(self, sinks: list[str], capacity: int) -> None:
        continuing = set(self.configured) & set(sinks)
        for event_id, owed in self.owed.items():
            still_delivering = not self._delivered_to_all_continuing(event_id, continuing)
            owed &= set(sinks)
            if still_delivering:
                owed |= set(sinks) - continuing  # added sinks get what is still on its way
        self.configured, self.capacity = sinks, capacity
        self._open()

    @precondition(lambda self: self.spool is not None)
    @rule(alert=st.sampled_from(ALERTS), kind=st.sampled_from(KINDS), at=st.integers(1, 3), torn=st.booleans())
    def crash_during_put(self, alert, kind, at, torn):
        event = self._new_event(alert, kind)  # may or may not be durable: never owed
        try:
            with crash_at(at):
                self.spool.put(event)
        except Crash:
            if torn:
                path = self.folder / "events.jsonl"
                text = path.read_text()
                last = text.splitlines()[-1] if text else ""
                if text.endswith("\n") and event["event_id"] in last:  # the write reached the disk only in part
                    path.write_text(text[: len(text) - 1 - len(last) // 2])
            self._abandon()
            return
        self._abandon()  # the crash came after the put returned: the event is durable and owed
        self.owed[event["event_id"]] = set(self.configured)

    @precondition(lambda self: self.spool is not None)
    @rule(data=st.data(), n=st.integers(1, 5), at=st.integers(1, 4))
    def crash_during_ack(self, data, n, at):
        sink = data.draw(st.sampled_from(self.configured))
        records = self.spool.peek(sink, n)
        if not records:
            return
        self._received(sink, records)  # the sink has them; whether the spool remembers is up to the crash
        try:
            with crash_at(at):
                self.spool.ack(sink, records[-1].seq)
        except Crash:
            pass
        self._abandon()

    @precondition(lambda self: self.spool is not None)
    @rule(damage=st.sampled_from(["missing", "garbage", "truncated", "wrong_types"]))
    def damage_cursors(self, damage):
        self._count_losses()
        self.spool.close()
        path = self.folder / "cursors.json"
        if damage == "missing":
            path.unlink(missing_ok=True)
        elif damage == "garbage":
            path.write_bytes(b"\xff\x00 not json")
        elif damage == "truncated" and path.exists():
            path.write_text(path.read_text()[:7])
        else:
            path.write_text(json.dumps({"version": 2, "next_seq": "x", "sinks": []}))
        # With its cursors gone the spool may number afresh after its newest record (every sink then starts from
        # the oldest kept one, so nothing can be skipped): only this may make numbers go back.
        self.max_seq = -1
        self._reconfigure(self.configured, self.capacity)

    @precondition(lambda self: self.spool is not None)
    @rule()
    def drain(self):
        """Every sink takes everything: each must then have all it is owed, and the spool must be empty."""
        for sink in self.configured:
            while records := self.spool.peek(sink, 7):
                self._received(sink, records)
                self.spool.ack(sink, records[-1].seq)
        for sink in self.configured:
            got = set(self.received[sink])
            missing = [e for e, owed in self.owed.items() if sink in owed and e not in got]
            unexplained = [e for e in missing if not self._superseded(e)]
            dropped, merged = self.dropped + self.spool.dropped, self.merged + self.spool.merged
            assert len(unexplained) <= dropped and len(missing) <= dropped + merged, (
                f"{sink} never got {missing}, of which {unexplained} were superseded by nothing "
                f"(dropped {dropped}, merged {merged})")
        assert len(self.spool) == 0
        assert (self.folder / "events.jsonl").stat().st_size == 0, "acknowledged events kept on disk"

    def _superseded(self, event_id: str) -> bool:
        """A full spool may merge an `updated` or evidence record away when a later one of its alert follows."""
        alert, kind = self.info[event_id]
        if kind not in ("updated", "evidence"):
            return False
        later = self.order[self.order.index(event_id) + 1:]
        same = [e for e in later if self.info[e][0] == alert and (self.info[e][1] == "evidence") == (kind == "evidence")]
        return bool(same)

    # --- invariants -----------------------------------------------------------------------------------------

    @invariant()
    def in_append_order(self):
        position = {e: i for i, e in enumerate(self.order)}
        for sink, got in self.received.items():
            first: list[str] = []
            seen = set()
            for e in got:
                if e not in seen:
                    seen.add(e)
                    first.append(e)
            positions = [position[e] for e in first]
            assert positions == sorted(positions), f"{sink} got events out of order: {first}"


SpoolMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestSpoolModel = SpoolMachine.TestCase
