"""The stream registry: in cluster mode, the one list of streams every daemon shares.

`<prefix>:registry` holds one entry per stream id: the stream's table as written (`id`, `url`, `model`,
`sampling`, ...), with `${NAME}` / `${credential:NAME}` references left as they are, so no secret is ever
stored resolved: each daemon resolves them from its own environment when it runs the stream.
`<prefix>:registry:version` counts changes; every change is announced on the cluster channel.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..config import _REFERENCE, MonitorConfig, StreamConfig, parse
from ..errors import ConfigError, Unavailable
from ..redis import OUTAGES, RedisSettings, connect, describe_error

WRITE = """
if ARGV[3] == '0' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', KEYS[3], 'registry')
return 1
"""
REMOVE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', KEYS[3], 'registry')
return 1
"""
PLACEHOLDER = "placeholder"


class RegistryUnavailable(Unavailable):
    """Redis could not be reached; the message says why (no secret in it)."""


def validate(raw: Any, base: MonitorConfig | None = None) -> StreamConfig:
    """Check a stream's table as the daemon will (the same model, the same messages, keys relative to the
    stream), without resolving its secrets: references are checked with a placeholder in their place. `base`:
    the config whose defaults and model names apply (None: the built-in defaults, any model name)."""
    if not isinstance(raw, dict):
        raise ConfigError("a stream is a table: {\"id\": ..., \"url\": ...}")
    placeholder = _placeholders(raw)
    data = (base or MonitorConfig()).model_dump(mode="json")
    data.pop("streams", None)
    if base is None:  # any model name will do: each daemon's own file says which it loads
        data["models"] = {name: {"path": "x"} for name in {placeholder.get("model"), placeholder.get("shadow")}
                          if isinstance(name, str)}
    try:
        parse({**data, "streams": [placeholder]})
    except ConfigError as e:
        raise ConfigError(str(e).replace("streams.0.", "")) from None
    return StreamConfig.model_validate(placeholder)


def _placeholders(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _placeholders(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v) for v in value]
    return _REFERENCE.sub(PLACEHOLDER, value) if isinstance(value, str) else value


def has_inline_secret(raw: dict) -> bool:
    """A password or token written out rather than referenced (allowed, but worth a warning)."""
    url = str(raw.get("url", ""))
    inline_password = re.match(r"^[a-z+]+://[^/@:]*:(?!\$\{)[^@]+@", url) is not None
    token = raw.get("token")
    return inline_password or (isinstance(token, str) and not _REFERENCE.fullmatch(token))


class StreamRegistry:
    def __init__(self, settings: RedisSettings, client=None):
        self.settings = settings
        self.client = client or connect(settings)
        self.key, self.version_key = settings.registry_key, settings.registry_version_key
        self.channel = settings.cluster_channel
        self._write = self.client.register_script(WRITE)
        self._remove = self.client.register_script(REMOVE)

    async def close(self) -> None:
        await self.client.aclose()

    async def add(self, raw: dict, replace: bool = False) -> bool:
        """Store a (validated) stream; False when the id exists and `replace` is not set."""
        return bool(await self._call(self._write, [raw["id"], json.dumps(raw, sort_keys=True), "1" if replace else "0"]))

    async def remove(self, stream_id: str) -> bool:
        return bool(await self._call(self._remove, [stream_id]))

    async def streams(self) -> dict[str, dict]:
        try:
            stored = await self.client.hgetall(self.key)
        except OUTAGES as e:
            raise RegistryUnavailable(describe_error(e, self.settings.url)) from None
        return {stream_id: json.loads(value) for stream_id, value in sorted(stored.items())}

    async def version(self) -> int:
        try:
            return int(await self.client.get(self.version_key) or 0)
        except OUTAGES as e:
            raise RegistryUnavailable(describe_error(e, self.settings.url)) from None

    async def _call(self, script, args: list[str]):
        try:
            return await script(keys=[self.key, self.version_key, self.channel], args=args)
        except OUTAGES as e:
            raise RegistryUnavailable(describe_error(e, self.settings.url)) from None
