"""Alert events, their lifecycle, the on-disk spool, the sinks (Redis, webhooks) and the publisher."""

from .events import SCHEMA, AlertEvent, AlertLifecycle, ModelTag
from .publisher import AlertPublisher, PublisherMetrics
from .sinks import RedisAuthError, RedisSettings, connect, describe_error
from .spool import Spool

__all__ = ["SCHEMA", "AlertEvent", "AlertLifecycle", "ModelTag", "AlertPublisher", "PublisherMetrics",
           "RedisAuthError", "RedisSettings", "Spool", "connect", "describe_error"]
