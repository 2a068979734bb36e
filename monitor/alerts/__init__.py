"""Alert events, their lifecycle, the on-disk spool and the Redis publisher."""

from .events import SCHEMA, AlertEvent, AlertLifecycle, ModelTag
from .publisher import AlertPublisher, PublisherMetrics, RedisAuthError, RedisSettings, connect, describe_error
from .spool import Spool

__all__ = ["SCHEMA", "AlertEvent", "AlertLifecycle", "ModelTag", "AlertPublisher", "PublisherMetrics",
           "RedisAuthError", "RedisSettings", "Spool", "connect", "describe_error"]
