"""The newest-frame slot between a reader and its consumer, shared by every kind of source."""

from __future__ import annotations

import asyncio

from ..contracts import Frame


class FrameSlot:
    """Holds at most one frame: a new frame replaces one the consumer has not taken (returns True then)."""

    def __init__(self):
        self._queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize=1)
        self.finished = asyncio.Event()

    def put(self, frame: Frame) -> bool:
        replaced = self._queue.full()
        if replaced:
            self._queue.get_nowait()
        self._queue.put_nowait(frame)
        return replaced

    def qsize(self) -> int:
        return self._queue.qsize()

    async def frames(self):
        """Frames as they come, until `finished` is set (the last frame is still delivered)."""
        while True:
            getter = asyncio.ensure_future(self._queue.get())
            finished = asyncio.ensure_future(self.finished.wait())
            try:
                done, _ = await asyncio.wait({getter, finished}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (getter, finished):
                    if not task.done():
                        task.cancel()
            if getter in done:
                yield getter.result()
                continue
            if not self._queue.empty():
                yield self._queue.get_nowait()
            return
