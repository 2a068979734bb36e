"""Stream ingest: RTSP and file sources on PyAV, supervised, sampled, with counters."""

from .base import (
                   ENDED,
                   ERROR,
                   RECONNECTING,
                   RUNNING,
                   STALLED,
                   STARTING,
                   STATES,
                   STOPPED,
                   SourceFailure,
                   SourceSettings,
                   SourceStats,
                   classify,
)
from .manager import SourceManager
from .pyav import PyAVSource, open_containers

__all__ = ["ENDED", "ERROR", "RECONNECTING", "RUNNING", "STALLED", "STARTING", "STATES", "STOPPED",
           "SourceFailure", "SourceSettings", "SourceStats", "classify", "SourceManager", "PyAVSource",
           "open_containers"]
