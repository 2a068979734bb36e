"""Stream ingest: every kind of source behind one protocol (`Source`), chosen by URL (`registry`).

`pyav`: RTSP, files, HTTP and RTMP on PyAV, one reader thread per stream. `whip`: WebRTC publishers (aiortc),
pushed to the daemon's WHIP endpoint. Both sample frames the same way, count the same things, and report the
same states and reasons.
"""

from .base import (
    ENDED,
    ERROR,
    RECONNECTING,
    RUNNING,
    STALLED,
    STARTING,
    STATES,
    STOPPED,
    WAITING,
    Backoff,
    Source,
    SourceFailure,
    SourceSettings,
    SourceStats,
    StreamState,
    classify,
)
from .pyav import PyAVSource
from .registry import check_url, create_source, kind_of

__all__ = ["ENDED", "ERROR", "RECONNECTING", "RUNNING", "STALLED", "STARTING", "STATES", "STOPPED", "WAITING",
           "Backoff", "Source", "StreamState", "SourceFailure", "SourceSettings", "SourceStats", "classify", "check_url",
           "create_source", "kind_of", "PyAVSource"]
