"""Redis, as the monitor uses it: the connection and its retry policy, every key name of the schema, the fencing
scripts, and the stream leases of cluster mode. Alerts and cluster both build on this; neither imports the other."""

from .connection import (
    OUTAGES,
    RedisAuthError,
    RedisSettings,
    connect,
    describe_error,
    is_auth_error,
    sentinel_target,
)
from .fencing import DELIVER, FENCED_STATE
from .keys import KeySchema

__all__ = ["OUTAGES", "RedisAuthError", "RedisSettings", "connect", "describe_error", "is_auth_error",
           "sentinel_target", "DELIVER", "FENCED_STATE", "KeySchema"]
