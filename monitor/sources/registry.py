"""Which `Source` reads a stream, chosen by its URL: one line per implementation."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .base import Source, SourceSettings


@dataclass(frozen=True)
class SourceKind:
    name: str
    matches: Callable[[str], bool]
    create: Callable[[str, str, SourceSettings], Source]  # (stream id, url, settings) -> source
    pushed: bool = False  # publishers come to us (WHIP): nothing to open


def _whip(stream_id: str, url: str, settings: SourceSettings) -> Source:
    from .whip import WhipSource

    return WhipSource(stream_id, settings.sample_fps)


def _pyav(stream_id: str, url: str, settings: SourceSettings) -> Source:
    from .pyav import PyAVSource

    return PyAVSource(stream_id, url, settings)


PYAV_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "rtmps", "udp", "tcp", "file")
KINDS = (
    SourceKind("whip", lambda url: url == "whip", _whip, pushed=True),
    SourceKind("pyav", lambda url: _scheme(url) in ("", *PYAV_SCHEMES), _pyav),  # RTSP, files, HTTP, RTMP
)


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def kind_of(url: str) -> SourceKind:
    for kind in KINDS:
        if kind.matches(url):
            return kind
    raise ValueError(f"unsupported URL scheme {_scheme(url)!r}: use rtsp://, rtmp://, http(s)://, a file path, "
                     f"or whip")


def check_url(url: str) -> str:
    """Validate a stream URL (for the config); raises ValueError with the reason."""
    kind = kind_of(url)
    if kind.name == "pyav":
        if any(c.isspace() for c in url):
            raise ValueError("URL contains whitespace")
        if _scheme(url) in ("rtsp", "rtsps") and not re.match(r"^rtsps?://[^/\s]+", url):
            raise ValueError("an RTSP URL needs a host: rtsp://host[:port]/path")
    return url


def create_source(stream_id: str, url: str, settings: SourceSettings) -> Source:
    return kind_of(url).create(stream_id, url, settings)
