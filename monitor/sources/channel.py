"""The hand-over between a source's reader and its consumer: the newest frame wins, markers are never lost."""

from __future__ import annotations

import asyncio
from collections import deque

from ..contracts import Frame, SessionEnded


class FrameChannel:
    """Holds at most one frame after the last marker: a new frame replaces one the consumer has not taken
    (`put` returns True then, for the `stale` counter). `SessionEnded` markers queue in order. Event loop only:
    reader threads hand frames over with `loop.call_soon_threadsafe(channel.put, frame)`."""

    def __init__(self):
        self._items: deque[Frame | SessionEnded] = deque()
        self._ready = asyncio.Event()
        self._finished = False

    def put(self, frame: Frame) -> bool:
        replaced = bool(self._items) and isinstance(self._items[-1], Frame)
        if replaced:
            self._items.pop()
        self._items.append(frame)
        self._ready.set()
        return replaced

    def put_marker(self, marker: SessionEnded) -> None:
        self._items.append(marker)
        self._ready.set()

    def finish(self) -> None:
        """No more items: `items()` ends once what is queued has been taken."""
        self._finished = True
        self._ready.set()

    @property
    def finished(self) -> bool:
        return self._finished

    def qsize(self) -> int:
        return len(self._items)

    async def items(self):
        while True:
            while self._items:
                yield self._items.popleft()
            if self._finished:
                return
            self._ready.clear()
            await self._ready.wait()
