"""Which `Source` reads a stream, chosen by its URL: one line per implementation in `KINDS`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .base import Source, SourceSettings


@dataclass(frozen=True)
class SourceOptions:
    """What some sources need besides the URL and the sampling settings."""

    token: str | None = None  # bearer token (WHEP)
    ice_servers: tuple = field(default_factory=tuple)  # STUN/TURN (WHEP)


@dataclass(frozen=True)
class SourceKind:
    name: str
    schemes: tuple[str, ...]  # URL schemes it reads ("" = a file path); "whip" is the literal url `whip`
    create: Callable[[str, str, SourceSettings, SourceOptions], Source]  # (stream id, url, settings, options)
    pushed: bool = False  # publishers come to us (WHIP): nothing to open


def _whip(stream_id: str, url: str, settings: SourceSettings, options: SourceOptions) -> Source:
    from .whip import WhipSource

    return WhipSource(stream_id, settings.sample_fps)


def _whep(stream_id: str, url: str, settings: SourceSettings, options: SourceOptions) -> Source:
    from .whep import WhepSource

    return WhepSource(stream_id, url, settings, options.token, list(options.ice_servers))


def _pyav(stream_id: str, url: str, settings: SourceSettings, options: SourceOptions) -> Source:
    from .pyav import PyAVSource

    return PyAVSource(stream_id, url, settings)


KINDS = (
    SourceKind("whip", ("whip",), _whip, pushed=True),
    SourceKind("whep", ("whep+http", "whep+https"), _whep),
    # FFmpeg inside PyAV's wheel: RTSP, RTMP, HLS and other HTTP streams, raw UDP/TCP, files.
    SourceKind("pyav", ("", "file", "rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp"), _pyav),
)
# Schemes users ask for that nothing here can open, and why (a clear error at validation, not at run time).
UNSUPPORTED = {
    "srt": "the FFmpeg inside PyAV's wheel has no SRT protocol; put a gateway that re-publishes SRT as RTSP or "
           "RTMP in front (MediaMTX does)",
}


def scheme_of(url: str) -> str:
    if url == "whip":
        return "whip"
    return url.split("://", 1)[0].lower() if "://" in url else ""


def kind_of(url: str) -> SourceKind:
    scheme = scheme_of(url)
    for kind in KINDS:
        if scheme in kind.schemes:
            return kind
    if scheme in UNSUPPORTED:
        raise ValueError(f"{scheme}:// is not supported: {UNSUPPORTED[scheme]}")
    known = sorted({f"{s}://" for k in KINDS for s in k.schemes if s not in ("", "whip")})
    raise ValueError(f"unsupported URL scheme {scheme!r}: use {', '.join(known)}, a file path, or whip")


def check_url(url: str) -> str:
    """Validate a stream URL (for the config); raises ValueError with the reason."""
    kind = kind_of(url)
    if kind.name != "whip":
        if any(c.isspace() for c in url):
            raise ValueError("URL contains whitespace")
        if scheme_of(url) not in ("", "file") and not re.match(r"^[a-z+]+://[^/\s]+", url, re.IGNORECASE):
            raise ValueError(f"a {scheme_of(url)} URL needs a host: {scheme_of(url)}://host[:port]/path")
    return url


def create_source(stream_id: str, url: str, settings: SourceSettings, options: SourceOptions | None = None) -> Source:
    return kind_of(url).create(stream_id, url, settings, options or SourceOptions())
