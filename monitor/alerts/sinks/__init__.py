"""Alert sinks: where alert events go. One module per kind, one line each in `KINDS`.

`redis` (always there: the durable log, Pub/Sub, stream state) and `[[sinks]]` of type `webhook`.
"""

from __future__ import annotations

from .base import AlertSink, SinkRejected, SinkRetry
from .redis import RedisMetrics, RedisSink
from .webhook import WebhookSettings, WebhookSink, sign

KINDS = {"webhook": WebhookSink}  # [[sinks]] type -> implementation
SinkSettings = WebhookSettings  # with a second kind: a union of the kinds' settings, discriminated on `type`


def sink_names(configured: list) -> list[str]:
    """The name of each configured sink: its own, else `<type>-<position>`."""
    return [s.name or f"{s.type}-{i + 1}" for i, s in enumerate(configured)]


def build_sinks(configured: list) -> list[AlertSink]:
    return [KINDS[s.type](s, name) for s, name in zip(configured, sink_names(configured))]


__all__ = ["AlertSink", "SinkRejected", "SinkRetry", "RedisMetrics", "RedisSink",
           "WebhookSettings", "WebhookSink", "sign", "KINDS",
           "SinkSettings", "sink_names", "build_sinks"]
