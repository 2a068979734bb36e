"""`monitor sinks test`: a signed test event to every configured sink, and what each answered."""

from __future__ import annotations

import time
import uuid

from ..config import MonitorConfig
from ..errors import MonitorError
from ..scoring.lifecycle import SCHEMA
from .sinks import RedisSink, SinkRejected, SinkRetry, build_sinks


def sample_event(config: MonitorConfig) -> dict:
    now = time.time()
    return {"schema": SCHEMA, "event_id": uuid.uuid4().hex, "type": "test", "alert_id": None, "seq": 0,
            "stream_id": "sinks-test", "track_id": None, "verdict": None, "peak_verdict": None, "close_reason": None,
            "instance": config.instance, "times": {"published_at": now},
            "note": "a test event from `monitor sinks test`; not an alert"}


async def check_sinks(config: MonitorConfig) -> list[dict]:
    """[{"sink", "ok", "answer"}] for Redis and every `[[sinks]]` entry, in order."""
    event, results = sample_event(config), []
    for sink in [RedisSink(config.redis, config.instance), *build_sinks(config.sinks)]:
        try:
            if not isinstance(sink, RedisSink):  # Redis needs no start: PING and PUBLISH only
                await sink.start()
            results.append({"sink": sink.name, "ok": True, "answer": await sink.test(event)})
        except (SinkRetry, SinkRejected, MonitorError) as e:
            results.append({"sink": sink.name, "ok": False, "answer": str(e)})
        finally:
            await sink.close()
    return results
