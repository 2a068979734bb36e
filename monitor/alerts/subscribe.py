"""`monitor subscribe`: alert events as JSON lines, from the durable log first, then live.

Following uses the durable stream (XRANGE to catch up, then blocking XREAD from the last id), not Pub/Sub:
there is no gap between catching up and following, and a subscriber that restarts with `--since ID`
misses nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from redis.exceptions import RedisError

from ..redis import RedisAuthError, RedisSettings, connect, describe_error, is_auth_error

PAGE = 500
BLOCK_MS = 1000


async def subscribe(settings: RedisSettings, stream: str | None, since: str | None, count: int | None,
                    timeout: float | None, out=sys.stdout) -> int:
    """Print events; return how many were printed. `since`: an entry id (exclusive), "0" for all, None for new."""
    client = connect(settings, timeout_s=settings.timeout_s + BLOCK_MS / 1000)
    deadline = None if timeout is None else time.monotonic() + timeout
    printed, last_id, warned = 0, since, False
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                if last_id is None:  # only new events: start after the current last entry
                    newest = await client.xrevrange(settings.events_key, count=1)
                    last_id = newest[0][0] if newest else "0-0"
                    continue
                entries = await client.xrange(settings.events_key, min=f"({last_id}" if last_id != "0" else "-",
                                              count=PAGE)
                if not entries:
                    block = BLOCK_MS if deadline is None else max(1, min(BLOCK_MS, int((deadline - time.monotonic()) * 1000)))
                    reply = await client.xread({settings.events_key: last_id if last_id != "0" else "0-0"}, block=block)
                    entries = reply[0][1] if reply else []
                if warned:
                    print("monitor: Redis reachable again", file=sys.stderr)
                    warned = False
            except RedisError as e:
                if is_auth_error(e):
                    raise RedisAuthError(describe_error(e, settings.url)) from None
                if not warned:
                    print(f"monitor: {describe_error(e, settings.url)}; retrying", file=sys.stderr)
                    warned = True
                await asyncio.sleep(0.5)
                continue
            for entry_id, fields in entries:
                last_id = entry_id
                event = json.loads(fields["event"])
                if stream is not None and event.get("stream_id") != stream:
                    continue
                event["log_id"] = entry_id  # resume point for --since
                out.write(json.dumps(event) + "\n")
                out.flush()
                printed += 1
                if count is not None and printed >= count:
                    return printed
        return printed
    finally:
        await client.aclose()
