"""Start, stop and list sources at run time; each source's frames go to one sink coroutine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..contracts import Frame
from .base import SourceSettings
from .pyav import PyAVSource

log = logging.getLogger(__name__)

Sink = Callable[[Frame], Awaitable[None]]


class SourceManager:
    def __init__(self, sink: Sink):
        self.sink = sink
        self.sources: dict[str, PyAVSource] = {}
        self._pumps: dict[str, asyncio.Task] = {}

    async def add(self, stream_id: str, url: str, settings: SourceSettings | None = None) -> PyAVSource:
        if stream_id in self.sources:
            raise ValueError(f"stream {stream_id!r} already exists")
        source = PyAVSource(stream_id, url, settings)
        self.sources[stream_id] = source
        source.start()
        self._pumps[stream_id] = asyncio.create_task(self._pump(source), name=f"pump-{stream_id}")
        return source

    async def remove(self, stream_id: str) -> None:
        source = self.sources.pop(stream_id, None)
        if source is None:
            raise KeyError(stream_id)
        await source.stop()
        pump = self._pumps.pop(stream_id)
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)

    def list(self) -> list[dict]:
        return [source.status() for source in self.sources.values()]

    async def close(self) -> None:
        await asyncio.gather(*(self.remove(s) for s in list(self.sources)), return_exceptions=True)

    async def _pump(self, source: PyAVSource) -> None:
        async for frame in source.frames():
            try:
                await self.sink(frame)
            except Exception:  # a failing consumer must not kill the stream
                log.exception("stream %s: frame sink failed", source.stream_id)
