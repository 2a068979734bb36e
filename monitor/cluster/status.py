"""The fleet as Redis sees it: live daemons and who runs each registry stream (`GET /cluster`,
`monitor cluster status`)."""

from __future__ import annotations

import json
import time

from ..redis import OUTAGES, RedisSettings, describe_error
from ..redis.leases import parse_value


async def fleet(client, settings: RedisSettings, lease_ttl_s: float = 10.0) -> dict:
    now = time.time()
    async with client.pipeline(transaction=False) as pipe:
        pipe.zrange(settings.members_key, 0, -1, withscores=True)
        pipe.hgetall(settings.member_info_key)
        pipe.hkeys(settings.registry_key)
        pipe.get(settings.registry_version_key)
        members, infos, stream_ids, version = await pipe.execute()
    stream_ids = sorted(stream_ids)
    async with client.pipeline(transaction=False) as pipe:
        for stream_id in stream_ids:
            pipe.get(settings.lease_key(stream_id))
            pipe.pttl(settings.lease_key(stream_id))
            pipe.scard(settings.open_key(stream_id))
        answers = await pipe.execute()
    streams = []
    for index, stream_id in enumerate(stream_ids):
        value, ttl_ms, open_alerts = answers[3 * index: 3 * index + 3]
        owner = parse_value(value)
        streams.append({"id": stream_id, "owner": owner[0] if owner else None, "token": owner[1] if owner else None,
                        "lease_ms_left": ttl_ms if owner else None, "open_alerts": open_alerts})
    held: dict[str, int] = {}
    for stream in streams:
        if stream["owner"]:
            held[stream["owner"]] = held.get(stream["owner"], 0) + 1
    listed = []
    for instance, seen in members:
        info = json.loads(infos.get(instance, "{}"))
        listed.append({"instance": instance, "live": now - seen <= lease_ttl_s, "last_seen_s": round(now - seen, 2),
                       "capacity": info.get("capacity"), "streams": held.get(instance, 0),
                       "public_url": info.get("public_url"), "version": info.get("version")})
    return {"registry_version": int(version or 0), "members": listed, "streams": streams}


def render(view: dict) -> str:
    """The fleet as two plain tables."""
    lines = [f"{'instance':<24} {'live':<5} {'seen':>7} {'streams':>7} {'capacity':>8}  {'version':<8} public_url"]
    for m in view["members"]:
        lines.append(f"{m['instance']:<24} {'yes' if m['live'] else 'no':<5} {m['last_seen_s']:>6}s {m['streams']:>7} "
                     f"{m['capacity'] if m['capacity'] is not None else '-':>8}  {m['version'] or '-':<8} "
                     f"{m['public_url'] or '-'}")
    lines += ["", f"{'stream':<24} {'owner':<24} {'token':>6} {'lease left':>10} {'open alerts':>11}"]
    for s in view["streams"]:
        left = f"{s['lease_ms_left'] / 1000:.1f}s" if s["lease_ms_left"] is not None else "-"
        lines.append(f"{s['id']:<24} {s['owner'] or '(unowned)':<24} {s['token'] if s['token'] else '-':>6} "
                     f"{left:>10} {s['open_alerts']:>11}")
    lines.append(f"registry version {view['registry_version']}: {len(view['streams'])} stream(s), "
                 f"{sum(1 for s in view['streams'] if s['owner'])} owned")
    return "\n".join(lines)


async def cluster_view(coordinator, config) -> dict:
    """GET /cluster: the fleet (members, each registry stream's owner) and what this daemon holds under a lease it
    trusts. `coordinator` is None while the cluster starts."""
    if coordinator is None:
        return {"enabled": True, "instance": config.instance, "error": "the cluster is still starting"}
    try:
        view = await fleet(coordinator.client, config.redis, config.cluster.lease_ttl_s)
    except OUTAGES as e:
        view = {"error": describe_error(e, config.redis.url)}
    return {"enabled": True, "instance": config.instance, "now": time.time(), "capacity": config.cluster.max_streams,
            "held": coordinator.held_status(), **view}
