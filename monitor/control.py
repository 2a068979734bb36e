"""The one way to change streams from outside: the HTTP API (and the console) say what they want, a
`StreamControl` turns it into a change, and the supervisor alone executes it.

`LocalStreams` changes this daemon's supervisor. `ClusterStreams` writes the fleet's registry: whichever daemon
claims the stream runs it, through its own supervisor (the coordinator turns registry changes into supervisor
changes, as a reload turns the file into them). Both read the running streams the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .config import StreamConfig
from .errors import ConfigError, StreamExists, Unavailable
from .sources.base import is_local, local_path
from .supervisor import API, StreamSupervisor


class StreamControl:
    """Reads of the running streams, and the changes an operator may ask for (`add`, `remove`)."""

    def __init__(self, supervisor: StreamSupervisor, validate: Callable[[dict], StreamConfig]):
        self.supervisor, self.validate = supervisor, validate

    def statuses(self) -> list[dict]:
        return self.supervisor.statuses()

    def status(self, stream_id: str) -> dict | None:
        return self.supervisor.status(stream_id)

    def thresholds(self, stream_id: str) -> dict | None:
        """The verdict thresholds a running stream uses (for the console)."""
        handle = self.supervisor.handles.get(stream_id)
        if handle is None:
            return None
        return {"suspicious": handle.plan.verdict.suspicious, "manipulated": handle.plan.verdict.manipulated}

    def takes_publishers(self, stream_id: str) -> bool:
        """A running stream that publishers push to (WHIP)."""
        return self.supervisor.whip_source(stream_id) is not None

    async def add(self, data: dict) -> dict:
        """Add the stream `data` defines; returns what to answer. Raises ConfigError (a bad definition),
        StreamExists, Unavailable."""
        raise NotImplementedError

    async def remove(self, stream_id: str) -> bool:
        """False: no such stream. Raises Unavailable."""
        raise NotImplementedError


class LocalStreams(StreamControl):
    async def add(self, data: dict) -> dict:
        stream = self.validate(data)
        if stream.id not in self.supervisor.handles and is_local(stream.url) and not Path(local_path(stream.url)).is_file():
            # This daemon would play it: a path it cannot open is the request's fault.
            raise ConfigError(f"url: {local_path(stream.url)}: no such file on this host")
        await self.supervisor.add(stream, API)
        return self.supervisor.status(stream.id)

    async def remove(self, stream_id: str) -> bool:
        return await self.supervisor.remove(stream_id)


class ClusterStreams(StreamControl):
    """The registry is the fleet's list: some daemon will claim what is added (the file may be on that host)."""

    def __init__(self, supervisor: StreamSupervisor, validate: Callable[[dict], StreamConfig], registry: Callable):
        super().__init__(supervisor, validate)
        self._registry = registry  # the coordinator's, once it exists

    def registry(self):
        registry = self._registry()
        if registry is None:
            raise Unavailable("the cluster is still starting: try again in a moment")
        return registry

    async def add(self, data: dict) -> dict:
        stream = self.validate(data)
        if not await self.registry().add(data):
            raise StreamExists(f"stream {stream.id!r} already exists in the registry")
        return {"id": stream.id, "registry": True}

    async def remove(self, stream_id: str) -> bool:
        return await self.registry().remove(stream_id)
