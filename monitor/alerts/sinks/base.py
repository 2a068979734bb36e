"""What every alert sink is: a name, a batch size, and `deliver` (raising on failure, saying which kind)."""

from __future__ import annotations

from typing import Protocol


class SinkRetry(Exception):
    """A transient failure (network, 5xx, 429, Redis down): try the same events again later."""

    def __init__(self, reason: str, retry_after_s: float | None = None):
        super().__init__(reason)
        self.retry_after_s = retry_after_s  # what the destination asked for (Retry-After), if anything


class SinkRejected(Exception):
    """The destination refused the event for good (a 4xx): it goes to this sink's dead-letter file."""


class AlertSink(Protocol):
    """A destination of alert events. The dispatcher gives each sink the events of its own cursor in the
    spool, in order; a sink never sees an event again once `deliver` returned for it."""

    name: str  # unique; names the sink's spool cursor, dead-letter file and metrics
    batch_size: int  # events per `deliver` call (1 for sinks that must fail one event at a time)
    max_retry_s: float | None  # give an event up after retrying it this long (None: never)

    def wants(self, event: dict) -> bool:
        """False: this sink skips the event (its filters)."""

    async def start(self) -> None: ...

    async def deliver(self, events: list[dict]) -> None:
        """Deliver all of `events`, in order, or raise SinkRetry / SinkRejected."""

    async def test(self, event: dict) -> str:
        """Send a test event (`monitor sinks test`); returns what the destination answered, raises on failure."""

    async def close(self) -> None: ...
