"""FairQueue: admission and batch order, as pure data-structure properties."""

import asyncio
import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.contracts import FaceCrop
from monitor.worker.queue import FairQueue, Pending

IMAGE = np.zeros((1, 1, 3), np.uint8)


def pending(stream, i, t=None):
    future = asyncio.Future(loop=asyncio.new_event_loop())
    crop = FaceCrop(stream, 0, i, time.time(), IMAGE)
    return Pending(crop, future, t if t is not None else time.monotonic(), time.time())


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 20), streams=st.lists(st.sampled_from("abcd"), min_size=1, max_size=200))
def test_capacity_and_shares_hold_for_any_arrival_order(capacity, streams):
    queue, evicted, total = FairQueue(capacity), [], 0
    for i, stream in enumerate(streams):
        evicted += queue.put(pending(stream, i, t=float(i)))
        total += 1
        assert len(queue) <= capacity
        assert len(queue) + len(evicted) == total
        active = {s for s in "abcd" if queue.depth(s)}
        assert queue.depth(stream) >= 1  # the newest crop is always admitted
        assert queue.depth(stream) <= max(1, capacity // len(active))  # the putting stream keeps to its share
    batch = queue.take(capacity)
    assert len(batch) == min(capacity, len(streams) - len(evicted))


def test_take_is_round_robin_oldest_stream_first():
    queue = FairQueue(100)
    for i in range(6):
        queue.put(pending("busy", i, t=float(i)))
    queue.put(pending("quiet", 100, t=2.5))
    order = [(p.crop.stream_id, p.crop.frame_seq) for p in queue.take(4)]
    assert order == [("busy", 0), ("quiet", 100), ("busy", 1), ("busy", 2)]
