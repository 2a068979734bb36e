"""WHIP (RFC 9725) ingest on aiohttp: a WebRTC publisher pushes a stream with one HTTP request.

POST /whip/{stream_id} (application/sdp offer) -> 201 Created, the SDP answer, Location of the session;
DELETE on that location ends it; OPTIONS answers CORS preflight. Requests are checked (token, stream id,
size, SDP syntax, session limit) before any peer connection exists, and a failed negotiation closes the
one it created: nothing is left half-open.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from collections.abc import Callable

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from pydantic import BaseModel, ConfigDict, Field

from .source import WebRtcSource

log = logging.getLogger(__name__)

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link",
}


class IceServer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[str] = Field(..., min_length=1, description="stun:... or turn:... URLs")
    username: str | None = None
    credential: str | None = None


class WhipSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str | None = Field(None, description="bearer token for every stream (none: only per-stream tokens)")
    stream_tokens: dict[str, str] = Field(default_factory=dict, description="per-stream bearer tokens")
    allowed_streams: list[str] | None = Field(None, description="only these stream ids (none: any id)")
    max_sessions: int = Field(16, ge=1, description="concurrent WebRTC sessions; beyond it 503")
    max_sdp_bytes: int = Field(64 * 1024, ge=256, description="larger offers get 413")
    media_timeout_s: float = Field(5.0, gt=0, description="no media this long ends the session")
    sample_fps: float = Field(2.0, gt=0, le=60, description="frames per second handed on")
    ice_servers: list[IceServer] = Field(default_factory=list, description="STUN/TURN servers (none: host only)")
    host_addresses: list[str] | None = Field(None, description="addresses to gather host candidates on "
                                             "(none: every interface but loopback, aioice's default)")


def restrict_host_addresses(addresses: list[str] | None) -> None:
    """aioice discovers host addresses itself and skips loopback; pin them when configured."""
    import aioice.ice

    if addresses is None:
        return
    pinned = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: pinned


class WhipEndpoint:
    def __init__(self, settings: WhipSettings, on_session: Callable[[WebRtcSource], None] | None = None,
                 is_allowed: Callable[[str], bool] | None = None):
        self.settings = settings
        self.on_session = on_session
        self.is_allowed = is_allowed  # overrides settings.allowed_streams (the daemon: its `whip` streams)
        self.sessions: dict[str, tuple[RTCPeerConnection, WebRtcSource]] = {}  # session id -> ...
        self.by_stream: dict[str, str] = {}  # stream id -> session id
        self.peer_connections: set[RTCPeerConnection] = set()  # every pc we created and not yet closed
        restrict_host_addresses(settings.host_addresses)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("POST", "/whip/{stream_id}", self.post)
        app.router.add_route("OPTIONS", "/whip/{stream_id}", self.options)
        app.router.add_route("DELETE", "/whip/{stream_id}/{session_id}", self.delete)
        app.router.add_route("OPTIONS", "/whip/{stream_id}/{session_id}", self.options)
        app.on_shutdown.append(lambda _app: self.close())

    # --- handlers --------------------------------------------------------------------------------------

    async def options(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={**CORS, "Accept-Post": "application/sdp"})

    async def post(self, request: web.Request) -> web.Response:
        stream_id = request.match_info["stream_id"]
        if not self._authorised(request, stream_id):
            return self._error(401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="whip"'})
        allowed = self.settings.allowed_streams
        if (self.is_allowed is not None and not self.is_allowed(stream_id)) or (
                self.is_allowed is None and allowed is not None and stream_id not in allowed):
            return self._error(404, f"unknown stream id {stream_id!r}")
        if request.content_type != "application/sdp":
            return self._error(415, "Content-Type must be application/sdp")
        if (request.content_length or 0) > self.settings.max_sdp_bytes:
            return self._error(413, f"SDP offer larger than {self.settings.max_sdp_bytes} bytes")
        body = await request.content.read(self.settings.max_sdp_bytes + 1)
        if len(body) > self.settings.max_sdp_bytes:
            return self._error(413, f"SDP offer larger than {self.settings.max_sdp_bytes} bytes")
        offer = body.decode("utf-8", errors="replace")
        if not offer.startswith("v=0") or "m=video" not in offer:
            return self._error(400, "malformed SDP offer: expected an SDP with a video m-line")
        replacing = self.by_stream.get(stream_id)
        if len(self.sessions) - (1 if replacing else 0) >= self.settings.max_sessions:
            return self._error(503, f"too many WebRTC sessions (limit {self.settings.max_sessions})",
                               {"Retry-After": "10"})
        if replacing:  # the same publisher reconnecting: the new session replaces the old one cleanly
            self.sessions[replacing][1].end("replaced", "a new session for the same stream id")
        return await self._negotiate(stream_id, offer)

    async def delete(self, request: web.Request) -> web.Response:
        stream_id, session_id = request.match_info["stream_id"], request.match_info["session_id"]
        if not self._authorised(request, stream_id):
            return self._error(401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="whip"'})
        entry = self.sessions.get(session_id)
        if entry is None or entry[1].stream_id != stream_id:
            return self._error(404, "no such session")
        entry[1].end("closed", "the publisher sent DELETE")
        await self._close_session(entry[1])
        return web.Response(status=200, headers=CORS)

    # --- sessions --------------------------------------------------------------------------------------

    async def _negotiate(self, stream_id: str, offer: str) -> web.Response:
        servers = [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                   for s in self.settings.ice_servers]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.peer_connections.add(pc)
        session_id = uuid.uuid4().hex
        source = WebRtcSource(stream_id, session_id, self.settings.sample_fps, self.settings.media_timeout_s)

        @pc.on("track")
        def on_track(track):
            if track.kind == "video":
                source.attach_video(track)
            else:
                source.attach_audio(track)

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed"):
                source.end("closed", f"peer connection {pc.connectionState}")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            if not any(t.kind == "video" for t in pc.getTransceivers()):
                raise ValueError("the offer has no video")
            await pc.setLocalDescription(await pc.createAnswer())  # waits for ICE gathering: no trickle needed
        except Exception as e:  # aiortc raises ValueError and friends on SDP it cannot use
            await self._close_pc(pc)
            return self._error(400, f"cannot negotiate: {type(e).__name__}: {str(e)[:200]}")
        source.on_end = self._close_session
        self.sessions[session_id] = (pc, source)
        self.by_stream[stream_id] = session_id
        source.start_watchdog()
        if self.on_session is not None:
            self.on_session(source)
        log.info("whip stream %s: session %s negotiated", stream_id, session_id)
        return web.Response(status=201, body=pc.localDescription.sdp.encode(), content_type="application/sdp",
                            headers={**CORS, "Location": f"/whip/{stream_id}/{session_id}"})

    async def _close_session(self, source: WebRtcSource) -> None:
        entry = self.sessions.pop(source.session_id, None)
        if self.by_stream.get(source.stream_id) == source.session_id:
            del self.by_stream[source.stream_id]
        if entry is not None:
            await self._close_pc(entry[0])

    async def _close_pc(self, pc: RTCPeerConnection) -> None:
        try:
            await pc.close()
        finally:
            self.peer_connections.discard(pc)

    async def close(self) -> None:
        for _, source in list(self.sessions.values()):
            source.end("stopped", "the server is shutting down")
        await asyncio.gather(*(self._close_pc(pc) for pc in list(self.peer_connections)), return_exceptions=True)

    # --- helpers ---------------------------------------------------------------------------------------

    def _authorised(self, request: web.Request, stream_id: str) -> bool:
        expected = [t for t in (self.settings.stream_tokens.get(stream_id), self.settings.token) if t]
        if not expected:
            return True  # no token configured for this stream: open (the README warns)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and any(hmac.compare_digest(token.encode(), t.encode()) for t in expected)

    @staticmethod
    def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
        return web.Response(status=status, text=message + "\n", headers={**CORS, **(headers or {})})
