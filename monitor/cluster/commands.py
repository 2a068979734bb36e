"""`monitor streams add|remove|list|import` and `monitor cluster status`: the registry and the fleet, from any
machine that reaches the Redis."""

from __future__ import annotations

import json
import sys
import time

from ..config import load, read_toml
from ..errors import ConfigError, InputError
from ..redact import redact
from ..redis import OUTAGES, RedisSettings, connect, describe_error
from ..redis.leases import Leases
from .registry import RegistryUnavailable, StreamRegistry, has_inline_secret, validate
from .status import fleet, render


def _base(config_path: str | None):
    return load(config_path) if config_path else None


def _warn_inline(raw: dict) -> None:
    if has_inline_secret(raw):
        print(f"monitor: warning: stream {raw['id']!r} has a password or token written out; prefer a reference "
              f"(${{NAME}} or ${{credential:NAME}}), which each daemon resolves itself", file=sys.stderr)


LIVE_WITHIN_S = 30.0  # a daemon heartbeats every few seconds (a third of its lease TTL, at most 100 s)


async def _warn_if_nobody_runs_it(registry: StreamRegistry, settings: RedisSettings, what: str) -> None:
    """The registry is only a list: say so when no cluster daemon heartbeats on it, so nothing will run `what`."""
    now = time.time()
    try:
        live = await registry.client.zrangebyscore(settings.members_key, now - LIVE_WITHIN_S, "+inf")
    except OUTAGES:
        return  # the change itself went through; this is only advice
    if not live:
        print(f"monitor: warning: no cluster daemon is alive on this registry (prefix {settings.prefix!r}, none "
              f"seen in {LIVE_WITHIN_S:.0f} s): nothing runs {what} until one starts with [cluster] enabled = true",
              file=sys.stderr)


async def add(settings: RedisSettings, raw: dict, replace: bool, config_path: str | None) -> str:
    validate(raw, _base(config_path))
    _warn_inline(raw)
    registry = StreamRegistry(settings)
    try:
        if not await registry.add(raw, replace=replace):
            raise InputError(f"stream {raw['id']!r} is already in the registry (--replace to overwrite it)")
        await _warn_if_nobody_runs_it(registry, settings, f"stream {raw['id']!r}")
    finally:
        await registry.close()
    return f"{'replaced' if replace else 'added'} {raw['id']}"


async def remove(settings: RedisSettings, stream_id: str) -> str:
    registry = StreamRegistry(settings)
    try:
        if not await registry.remove(stream_id):
            raise InputError(f"no stream {stream_id!r} in the registry")
    finally:
        await registry.close()
    return f"removed {stream_id}"


def read_streams(path: str) -> list[dict]:
    """The [[streams]] tables of a TOML file, as written (references unresolved)."""
    streams = read_toml(path).get("streams")
    if not isinstance(streams, list) or not streams:
        raise InputError(f"{path}: no [[streams]] tables")
    return streams


async def import_file(settings: RedisSettings, path: str, replace: bool, prune: bool, config_path: str | None) -> str:
    """Every stream of the file into the registry, all checked first (one bad table: nothing is written)."""
    streams = read_streams(path)
    base = _base(config_path)
    seen = set()
    for index, raw in enumerate(streams):
        try:
            validate(raw, base)
        except ConfigError as e:
            raise ConfigError(f"{path}: streams.{index}.{e}") from None
        if raw["id"] in seen:
            raise ConfigError(f"{path}: streams.{index}.id: duplicate stream id {raw['id']!r}")
        seen.add(raw["id"])
        _warn_inline(raw)
    registry = StreamRegistry(settings)
    added = replaced = kept = pruned = 0
    try:
        existing = await registry.streams()
        for raw in streams:
            if raw["id"] in existing and not replace:
                kept += 1
                continue
            await registry.add(raw, replace=True)
            if raw["id"] in existing:
                replaced += 1
            else:
                added += 1
        if prune:
            for stream_id in set(existing) - seen:
                pruned += await registry.remove(stream_id)
        await _warn_if_nobody_runs_it(registry, settings, "these streams")
    finally:
        await registry.close()
    return (f"imported {path}: {added} added, {replaced} replaced, {kept} kept as they were"
            + (" (--replace overwrites them)" if kept else "") + (f", {pruned} removed (--prune)" if prune else ""))


async def listing(settings: RedisSettings, as_json: bool) -> str:
    client = connect(settings)
    try:
        streams = await StreamRegistry(settings, client).streams()
        owners = await Leases(client, settings, "-", 1).owners(list(streams))
    except OUTAGES as e:
        raise RegistryUnavailable(describe_error(e, settings.url)) from None
    finally:
        await client.aclose()
    rows = [{"id": i, "url": redact(str(raw.get("url", ""))), "model": raw.get("model"), "shadow": raw.get("shadow"),
             "owner": owners[i][0] if owners.get(i) else None} for i, raw in streams.items()]
    if as_json:
        return json.dumps({"streams": rows})
    lines = [f"{'id':<24} {'owner':<20} {'model':<10} url"]
    lines += [f"{r['id']:<24} {r['owner'] or '(unowned)':<20} {r['model'] or '-':<10} {r['url']}" for r in rows]
    lines.append(f"{len(rows)} stream(s) in the registry")
    return "\n".join(lines)


async def status(settings: RedisSettings, lease_ttl_s: float, as_json: bool) -> str:
    client = connect(settings)
    try:
        view = await fleet(client, settings, lease_ttl_s)
    except OUTAGES as e:
        raise RegistryUnavailable(describe_error(e, settings.url)) from None
    finally:
        await client.aclose()
    return json.dumps(view) if as_json else render(view)


def stream_table(stream_id: str, url: str, model: str | None, shadow: str | None, token: str | None,
                 record: bool, extra: str | None) -> dict:
    raw: dict = {"id": stream_id, "url": url}
    for key, value in (("model", model), ("shadow", shadow), ("token", token)):
        if value is not None:
            raw[key] = value
    if record:
        raw["record"] = True
    if extra:
        try:
            more = json.loads(extra)
        except json.JSONDecodeError as e:
            raise InputError(f"--table: not JSON: {e}") from None
        if not isinstance(more, dict):
            raise InputError("--table: a JSON object, e.g. '{\"sampling\": {\"sample_fps\": 4}}'")
        raw.update(more)
    return raw

