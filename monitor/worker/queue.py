"""A bounded queue of crops with per-stream fair admission and round-robin batch formation.

Not thread-safe: it lives on the event loop. Eviction policy: a stream may hold at most its share of the
capacity (capacity / streams with queued crops); beyond it, its own oldest crop goes. When the queue is full
of other streams' crops, the oldest crop of the stream holding the most goes. Either way a busy stream
can never push out a quiet one's only crop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from ..contracts import FaceCrop


@dataclass(eq=False)
class Pending:
    crop: FaceCrop
    future: asyncio.Future
    queued_mono: float  # time.monotonic() at submit: for waits
    queued_wall: float  # time.time() at submit: for the Score record


class FairQueue:
    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("queue capacity must be at least 1")
        self.capacity = capacity
        self._streams: dict[str, deque[Pending]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def depth(self, stream_id: str) -> int:
        return len(self._streams.get(stream_id, ()))

    def put(self, item: Pending) -> list[Pending]:
        """Queue `item`; return the crops evicted to make room (to be answered `queue_full`)."""
        stream = item.crop.stream_id
        own = self._streams.setdefault(stream, deque())
        share = max(1, self.capacity // len(self._streams))
        evicted = []
        while len(own) >= share:
            evicted.append(own.popleft())
        self._size -= len(evicted)
        if self._size >= self.capacity:
            largest = max(self._streams, key=lambda s: len(self._streams[s]))
            evicted.append(self._streams[largest].popleft())
            self._size -= 1
            if not self._streams[largest] and largest != stream:
                del self._streams[largest]
        own.append(item)
        self._size += 1
        return evicted

    def oldest_mono(self) -> float | None:
        heads = [q[0].queued_mono for q in self._streams.values() if q]
        return min(heads) if heads else None

    def drop_stale(self, now_wall: float, staleness_s: float) -> list[Pending]:
        """Remove crops whose frame is older than `staleness_s`; return them."""
        stale = []
        for queue in self._streams.values():
            keep = deque(p for p in queue if now_wall - p.crop.frame_time <= staleness_s)
            if len(keep) != len(queue):
                stale.extend(p for p in queue if now_wall - p.crop.frame_time > staleness_s)
                queue.clear()
                queue.extend(keep)
        self._size -= len(stale)
        self._prune()
        return stale

    def take(self, n: int) -> list[Pending]:
        """Up to `n` crops, one per stream per round, streams with the oldest waiting crop first."""
        batch: list[Pending] = []
        while len(batch) < n and self._size:
            for stream in sorted(self._streams, key=lambda s: self._streams[s][0].queued_mono):
                if len(batch) == n:
                    break
                batch.append(self._streams[stream].popleft())
                self._size -= 1
            self._prune()
        return batch

    def drain_all(self) -> list[Pending]:
        items = [p for q in self._streams.values() for p in q]
        self._streams.clear()
        self._size = 0
        return items

    def _prune(self) -> None:
        for stream in [s for s, q in self._streams.items() if not q]:
            del self._streams[stream]
