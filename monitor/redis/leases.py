"""Stream leases with fencing tokens: who runs each stream, proven where the output lands.

A claim is one script: if `<prefix>:lease:<id>` does not exist, `INCR <prefix>:epoch:<id>` gives the next
fencing token, the lease is set to `<instance>:<token>` with a TTL (`PX`), and the token's claim time (Redis's
clock) and claimant are kept in `<prefix>:epochs:<id>` (`<token>`, `owner:<token>`; the last 32): the delivery script compares an event's creation time with it to
refuse what a daemon made after a newer owner took over. Renewal is one script for all of a daemon's leases
(extended only where the value is still its own); release deletes only its own lease and announces it.
"""

from __future__ import annotations

from .connection import RedisSettings

CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', tonumber(ARGV[2]))
local t = redis.call('TIME')
redis.call('HSET', KEYS[3], tostring(token), string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000),
           'owner:' .. token, ARGV[1])
redis.call('HDEL', KEYS[3], tostring(token - 32), 'owner:' .. (token - 32))
return token
"""
RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 2] then
    redis.call('PEXPIRE', key, tonumber(ARGV[1]))
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[2], 'released')
return 1
"""


class Leases:
    def __init__(self, client, settings: RedisSettings, instance: str, ttl_s: float):
        self.client, self.settings, self.instance = client, settings, instance
        self.ttl_ms = int(ttl_s * 1000)
        self._claim = client.register_script(CLAIM)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)

    def value(self, token: int) -> str:
        return f"{self.instance}:{token}"

    async def claim(self, stream_id: str) -> int | None:
        """The new fencing token, or None when another daemon holds the stream."""
        s = self.settings
        token = await self._claim(keys=[s.lease_key(stream_id), s.epoch_key(stream_id), s.epochs_key(stream_id)],
                                  args=[self.instance, self.ttl_ms])
        return int(token) if token else None

    async def renew(self, held: dict[str, int]) -> dict[str, bool]:
        """Extend every lease still this daemon's, in one round trip: stream -> still held."""
        if not held:
            return {}
        ids = list(held)
        results = await self._renew(keys=[self.settings.lease_key(i) for i in ids],
                                    args=[self.ttl_ms, 0, *(self.value(held[i]) for i in ids)])
        return {stream_id: bool(ok) for stream_id, ok in zip(ids, results)}

    async def release(self, stream_id: str, token: int) -> bool:
        return bool(await self._release(keys=[self.settings.lease_key(stream_id), self.settings.cluster_channel],
                                        args=[self.value(token)]))

    async def owners(self, stream_ids: list[str]) -> dict[str, tuple[str, int] | None]:
        """stream -> (instance, token) of its lease holder, or None."""
        if not stream_ids:
            return {}
        values = await self.client.mget([self.settings.lease_key(i) for i in stream_ids])
        return {i: parse_value(v) for i, v in zip(stream_ids, values)}


def parse_value(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    instance, _, token = value.rpartition(":")
    return (instance, int(token)) if token.isdigit() else None
