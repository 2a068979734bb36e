"""Small asyncio helpers shared by the tests."""

from __future__ import annotations

import asyncio
import time


async def collect(source, seconds: float) -> list:
    """Frames a source yields within `seconds`."""
    frames = []

    async def read():
        async for frame in source.frames():
            frames.append(frame)

    task = asyncio.create_task(read())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return frames


async def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    """Poll `predicate()` until it is true or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())
