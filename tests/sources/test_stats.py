"""A source's state and counters are read on the event loop while its reader thread writes them."""

import asyncio
import sys
import time

import numpy as np
import pytest

from monitor.sources import PyAVSource, SourceSettings
from tests.support.media import write_mp4


def stripes(n, size=(160, 120)):
    for i in range(n):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:, (i * 4) % size[0]:(i * 4) % size[0] + 20] = 255
        yield frame


@pytest.fixture
def fast_switching():
    """Thread switches every microsecond instead of every 5 ms: a race that is rare in production shows here."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


async def test_status_is_safe_while_the_reader_decodes_at_full_speed(tmp_path, fast_switching):
    clip = write_mp4(tmp_path / "stripes.mp4", stripes(100))
    source = PyAVSource("s", str(clip), SourceSettings(realtime=False, loop=True, sample_fps=2))
    source.start()

    async def drain():
        async for _ in source.frames():
            pass

    consumer = asyncio.create_task(drain())
    await asyncio.sleep(0.3)
    # Enough calls overlapping enough decoding, however slow this machine is today: counts, not a rate.
    calls, failures, deadline = 0, [], time.monotonic() + 120
    first = source.stats.frames_decoded
    while (calls < 10_000 or source.stats.frames_decoded - first < 300) and time.monotonic() < deadline:
        try:
            status = source.status()
            assert status["frames_decoded"] >= status["frames_emitted"]
        except RuntimeError as e:  # "deque mutated during iteration", "dictionary changed size..."
            failures.append(str(e))
        calls += 1
        if calls % 100 == 0:
            await asyncio.sleep(0)
    decoded = source.stats.frames_decoded - first
    await source.stop()
    consumer.cancel()
    print(f"{calls} status() calls while {decoded} frames were decoded: {len(failures)} failures")
    assert decoded >= 300 and calls >= 10_000
    assert not failures, failures[:3]


def test_a_state_change_the_table_does_not_allow_is_logged_and_still_made(caplog):
    import logging

    from monitor.sources.base import RUNNING, STOPPED, TRANSITIONS, SourceStats, StreamState

    caplog.set_level(logging.INFO)
    assert TRANSITIONS[STOPPED] == {STOPPED} and set(TRANSITIONS) == set(StreamState)
    stats = SourceStats()
    stats.set_state(RUNNING)
    stats.set_state(STOPPED, "stopped")
    assert not [r for r in caplog.records if "impossible" in r.getMessage()]
    stats.set_state(RUNNING)  # a bug would do this: it is said, and the stream is not broken by it
    said = [r.getMessage() for r in caplog.records if "impossible stream state change" in r.getMessage()]
    assert len(said) == 1 and "stopped" in said[0] and "running" in said[0]
    assert stats.state == RUNNING
    caplog.clear()  # this test's own impossible change is the point, not a failure
