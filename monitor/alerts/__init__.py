"""Alert events, their lifecycle, the on-disk spool, the sinks (Redis, webhooks) and the publisher."""

from ..contracts import ModelTag
from ..scoring.lifecycle import SCHEMA, AlertEvent, AlertLifecycle
from .publisher import AlertPublisher, PublisherMetrics
from .spool import Spool

__all__ = ["SCHEMA", "AlertEvent", "AlertLifecycle", "ModelTag", "AlertPublisher", "PublisherMetrics",
           "Spool"]
