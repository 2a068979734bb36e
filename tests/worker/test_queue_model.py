"""The fair queue against a reference model (hypothesis state machine): random puts from streams of very
different rates, takes of random sizes, stale drops, and draining.

Invariants: the queue never holds more than its capacity; every crop is in exactly one place (queued, evicted,
dropped as stale, taken); each stream's crops leave in the order they came; a take serves first the streams
whose oldest crop has waited longest, one crop per stream per round; so no stream starves: a stream's oldest
crop is passed over by at most as many takes as there were crops queued before it (later crops never jump
ahead of it, and the busy stream's backlog is bounded by its share). A busy stream never pushes out a quiet
stream's only crop while any stream holds more than one.
"""

from __future__ import annotations

import asyncio

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from monitor.contracts import FaceCrop
from monitor.worker.queue import FairQueue, Pending

IMAGE = np.zeros((1, 1, 3), np.uint8)
STREAMS = ("busy", "a", "b", "c", "d")


class QueueMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.queue: FairQueue | None = None
        self.clock = 0.0
        self.counter = 0
        self.model: dict[str, list[Pending]] = {}  # stream -> its queued crops, oldest first
        # stream -> (its oldest crop, takes that passed it over, crops queued before it when first passed over)
        self.passed_over: dict[str, tuple[Pending, int, int]] = {}

    def teardown(self):
        self.loop.close()

    @precondition(lambda self: self.queue is None)
    @rule(capacity=st.integers(1, 12))
    def start(self, capacity):
        self.queue = FairQueue(capacity)

    @precondition(lambda self: self.queue is not None)
    @rule(stream=st.sampled_from(STREAMS), burst=st.integers(1, 8), age=st.floats(0, 5))
    def put(self, stream, burst, age):
        for _ in range(burst if stream == "busy" else 1):
            self.clock += 0.01
            self.counter += 1
            crop = FaceCrop(stream, 0, self.counter, 1000.0 + self.clock - age, IMAGE)
            item = Pending(crop, self.loop.create_future(), self.clock, 1000.0 + self.clock)
            depths = {s: len(q) for s, q in self.model.items() if q}
            evicted = self.queue.put(item)
            self.model.setdefault(stream, []).append(item)
            for gone in evicted:
                owner = gone.crop.stream_id
                assert self.model[owner] and self.model[owner][0] is gone, "evicted a crop that was not its stream's oldest"
                if owner != stream and depths.get(owner, 0) == 1:
                    assert max(depths.values()) == 1, "a busy stream pushed out a quiet stream's only crop"
                self.model[owner].pop(0)
            assert item not in evicted, "the newest crop was not admitted"

    @precondition(lambda self: self.queue is not None and len(self.queue) > 0)
    @rule(n=st.integers(1, 6))
    def take(self, n):
        present = [s for s, q in self.model.items() if q]
        by_wait = sorted(present, key=lambda s: self.model[s][0].queued_mono)
        heads = {s: self.model[s][0] for s in present}
        older_than = {s: sum(p.queued_mono < heads[s].queued_mono for q in self.model.values() for p in q) for s in present}
        batch = self.queue.take(n)
        assert len(batch) == min(n, sum(len(q) for q in self.model.values()))
        # Round one: the streams whose oldest crop waited longest, one each.
        first_round = [p.crop.stream_id for p in batch[: len(present)]]
        assert first_round == by_wait[: len(first_round)], f"served {first_round}, longest waiting {by_wait}"
        for item in batch:
            queue = self.model[item.crop.stream_id]
            assert queue and queue[0] is item, "a stream's crops left out of order"
            queue.pop(0)
        for stream in present:
            if stream in {p.crop.stream_id for p in batch}:
                self.passed_over.pop(stream, None)
                continue
            head = heads[stream]
            seen, takes, ahead = self.passed_over.get(stream, (None, 0, 0))
            if seen is not head:
                takes, ahead = 0, older_than[stream]
            self.passed_over[stream] = (head, takes + 1, ahead)
            assert takes + 1 <= ahead, f"{stream} starves: passed over {takes + 1} times with {ahead} crops before it"

    @precondition(lambda self: self.queue is not None)
    @rule(staleness=st.floats(0.5, 4))
    def drop_stale(self, staleness):
        now_wall = 1000.0 + self.clock
        stale = self.queue.drop_stale(now_wall, staleness)
        expected = {id(p) for q in self.model.values() for p in q if now_wall - p.crop.frame_time > staleness}
        assert {id(p) for p in stale} == expected
        for stream in self.model:
            self.model[stream] = [p for p in self.model[stream] if id(p) not in expected]

    @precondition(lambda self: self.queue is not None)
    @rule()
    def drain_all(self):
        drained = self.queue.drain_all()
        assert sorted(id(p) for p in drained) == sorted(id(p) for q in self.model.values() for p in q)
        self.model = {}
        self.passed_over = {}

    @invariant()
    def capacity_and_contents_hold(self):
        if self.queue is None:
            return
        assert len(self.queue) <= self.queue.capacity
        assert len(self.queue) == sum(len(q) for q in self.model.values())
        for stream in STREAMS:
            assert self.queue.depth(stream) == len(self.model.get(stream, []))


QueueMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestQueueModel = QueueMachine.TestCase
