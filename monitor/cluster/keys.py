"""Redis keys of cluster mode (besides the per-stream lease, epoch and open-alert keys of `RedisSettings`)."""

from __future__ import annotations


def registry(prefix: str) -> str:
    """Hash: stream id -> the stream's table as JSON (secrets as ${...} references)."""
    return f"{prefix}:registry"


def registry_version(prefix: str) -> str:
    """Counter: bumped by every registry change, so daemons notice without reading everything."""
    return f"{prefix}:registry:version"


def members(prefix: str) -> str:
    """Sorted set: daemon instance -> the time of its last heartbeat."""
    return f"{prefix}:cluster:members"


def member_info(prefix: str) -> str:
    """Hash: daemon instance -> JSON (capacity, streams held, public URL, version)."""
    return f"{prefix}:cluster:info"


def events(prefix: str) -> str:
    """Pub/Sub channel: `registry`, `released`, `joined`, `left`: a daemon looks again at once."""
    return f"{prefix}:cluster:events"
