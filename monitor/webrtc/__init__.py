"""WebRTC ingest: a WHIP endpoint on aiortc whose sessions are sources like any other."""

from .source import WebRtcSource
from .whip import IceServer, WhipEndpoint, WhipSettings, restrict_host_addresses

__all__ = ["WebRtcSource", "WhipEndpoint", "WhipSettings", "IceServer", "restrict_host_addresses"]
