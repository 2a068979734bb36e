"""WHIP (RFC 9725) ingest on aiohttp: a WebRTC publisher pushes a stream with one HTTP request.

POST /whip/{stream_id} (application/sdp offer) -> 201 Created, the SDP answer, Location of the session;
DELETE on that location ends it; OPTIONS answers CORS preflight. Requests are checked (token, stream id,
size, SDP syntax, session limit) before any peer connection exists, and a failed negotiation closes the
one it created: nothing is left half-open.

A stream whose `url` is `whip` is a `WhipSource`: it waits for a publisher, and each session's frames flow
through it like any other source's; the endpoint finds the source of a stream id through `resolve`.
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiortc import RTCSessionDescription
from pydantic import BaseModel, ConfigDict, Field

from ..contracts import SessionEnded
from ..logs import get
from ..tasks import background
from .base import ENDED, RUNNING, STARTING, STOPPED, WAITING, SourceStats, StatsState
from .channel import FrameChannel
from .sampling import RateSampler
from .webrtc import IceServer, WebRtcSession, peer_connection, restrict_host_addresses

log = get(__name__)

CORS = {
    "Access-Control-Allow-Origin": "*",
    # PATCH is listed so that a browser's trickle-ICE request gets our 405 instead of a failed preflight.
    "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, Allow",
}


class WhipSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str | None = Field(None, description="bearer token for every stream (none: only per-stream tokens)")
    stream_tokens: dict[str, str] = Field(default_factory=dict, description="per-stream bearer tokens")
    allowed_streams: list[str] | None = Field(None, description="only these stream ids (none: any id)")
    max_sessions: int = Field(16, ge=1, description="concurrent WebRTC sessions; beyond it 503")
    max_sdp_bytes: int = Field(64 * 1024, ge=256, description="larger offers get 413")
    media_timeout_s: float = Field(5.0, gt=0, description="no media this long ends the session")
    sample_fps: float = Field(2.0, gt=0, le=60, description="default frames per second handed on (a stream's "
                              "own sampling.sample_fps wins)")
    ice_servers: list[IceServer] = Field(default_factory=list, description="STUN/TURN servers (none: host only)")
    host_addresses: list[str] | None = Field(None, description="addresses to gather host candidates on "
                                             "(none: every interface but loopback, aioice's default)")


class WhipSource(StatsState):
    """A stream published with WHIP. Before the first publisher it is `waiting_for_publisher`; a session's end
    (DELETE, media timeout, a replacing publisher) puts a `SessionEnded` marker in its frames and shows the
    stream `ended` with the reason until the next session."""

    url = "whip"

    def __init__(self, stream_id: str, sample_fps: float = 2.0):
        self.stream_id, self.sample_fps = stream_id, sample_fps
        self.stats = SourceStats()
        self.stats.set_state(WAITING)
        self.session: WebRtcSession | None = None
        self._channel = FrameChannel()

    def start(self) -> None:
        """Nothing to open: publishers come to us."""

    def frames(self):
        return self._channel.items()

    def status(self) -> dict:
        return {"id": self.stream_id, "url": self.url, "session": self.session.session_id if self.session else None,
                **self.stats.snapshot()}

    async def stop(self) -> None:
        session = self.session
        if session is not None:
            session.end("stopped", "the stream is stopping")
            await session.closed()
        self.stats.set_state(STOPPED, "stopped")
        self._channel.finish()

    @property
    def busy(self) -> bool:
        return self.session is not None  # a publisher is connected

    def update_sampling(self, settings) -> bool:
        """A new rate applies at once, to the current session too (the publisher stays connected)."""
        self.sample_fps = settings.sample_fps
        if self.session is not None:
            self.session.sampler = RateSampler(self.sample_fps)
        return True

    def prepare_session(self, session_id: str, pc, media_timeout_s: float) -> WebRtcSession:
        """A session for a publisher that is negotiating; it carries media only once `activate`d."""
        # A publisher whose connection drops gets half the media timeout to come back (a page reload) and
        # replace its session; a DELETE ends it at once.
        return WebRtcSession(self.stream_id, session_id, pc, self.stats, self._channel, self.sample_fps,
                             media_timeout_s, on_first_frame=self._running, on_end=self._ended,
                             peer_gone_grace_s=media_timeout_s / 2)

    def activate(self, session: WebRtcSession) -> None:
        """Negotiated: the session replaces the current one (which ends with reason `replaced`)."""
        if self.session is not None:
            self.session.end("replaced", "a new session for the same stream id")
        self.session = session
        self.stats.set_state(STARTING)

    def _running(self, session: WebRtcSession) -> None:
        if session is self.session:
            self.stats.set_state(RUNNING)

    def _ended(self, session: WebRtcSession, reason: str, detail: str) -> None:
        # A session that never became current (its negotiation failed) carried no media: nothing to end.
        if session is self.session:
            self.session = None
            self.stats.set_state(ENDED, reason, detail)
            self._channel.put_marker(SessionEnded(self.stream_id, reason))


class WhipEndpoint:
    """The HTTP side of WHIP. `resolve(stream_id)` gives the stream's WhipSource, or None (404)."""

    def __init__(self, settings: WhipSettings, resolve: Callable[[str], WhipSource | None],
                 status: Callable[[str], dict | None] | None = None):
        self.settings = settings  # replaced as a whole on reload: new requests see the new settings
        self.resolve = resolve
        self.status = status or (lambda stream_id: (s := resolve(stream_id)) and s.status())
        self.sessions: dict[str, WebRtcSession] = {}  # session id -> session, while negotiated and not ended
        self.peer_connections: set = set()  # every pc we created and not yet closed
        # Cluster mode: where a publisher of a stream this daemon does not run must go (a URL: 307), or None
        # to serve it here (the hook may claim it first).
        self.route: Callable[[str], Awaitable[str | None]] | None = None
        restrict_host_addresses(settings.host_addresses)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("POST", "/whip/{stream_id}", self.post)
        app.router.add_route("GET", "/whip/{stream_id}", self.get)
        app.router.add_route("OPTIONS", "/whip/{stream_id}", self.options)
        app.router.add_route("DELETE", "/whip/{stream_id}/{session_id}", self.delete)
        app.router.add_route("PATCH", "/whip/{stream_id}/{session_id}", self.patch)
        app.router.add_route("OPTIONS", "/whip/{stream_id}/{session_id}", self.options)
        app.on_shutdown.append(lambda _app: self.close())

    def update(self, settings: WhipSettings) -> None:
        self.settings = settings
        restrict_host_addresses(settings.host_addresses)

    # --- handlers --------------------------------------------------------------------------------------

    async def options(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={**CORS, "Accept-Post": "application/sdp"})

    async def post(self, request: web.Request) -> web.Response:
        stream_id = request.match_info["stream_id"]
        if not self._authorised(request, stream_id):
            return self._error(401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="whip"'})
        allowed = self.settings.allowed_streams
        source = self.resolve(stream_id)
        if source is None and self.route is not None:
            location = await self.route(stream_id)
            if location is not None:  # RFC 9725 §4.5: the owner of the stream serves it
                return web.Response(status=307, headers={**CORS, "Location": location})
            source = self.resolve(stream_id)
        if source is None or (allowed is not None and stream_id not in allowed):
            return self._error(404, f"unknown stream id {stream_id!r}")
        if request.content_type != "application/sdp":
            return self._error(415, "Content-Type must be application/sdp")
        limit = self.settings.max_sdp_bytes
        if (request.content_length or 0) > limit:
            return self._error(413, f"SDP offer larger than {limit} bytes")
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            return self._error(413, f"SDP offer larger than {limit} bytes")
        offer = body.decode("utf-8", errors="replace")
        if not offer.startswith("v=0") or "m=video" not in offer:
            return self._error(400, "malformed SDP offer: expected an SDP with a video m-line")
        replacing = source.session is not None
        if len(self.sessions) - (1 if replacing else 0) >= self.settings.max_sessions:
            return self._error(503, f"too many WebRTC sessions (limit {self.settings.max_sessions})",
                               {"Retry-After": "10"})
        return await self._negotiate(source, offer)

    async def get(self, request: web.Request) -> web.Response:
        """The stream's state and verdict for its publisher (the built-in page shows them): the WHIP token
        suffices, the API token is not needed. No URL, no counters beyond what a publisher may see."""
        stream_id = request.match_info["stream_id"]
        if not self._authorised(request, stream_id):
            return self._error(401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="whip"'})
        status = self.status(stream_id) if self.resolve(stream_id) is not None else None
        if status is None:
            return self._error(404, f"unknown stream id {stream_id!r}")
        shown = {k: status.get(k) for k in ("state", "reason", "session", "verdict", "fps", "frames_in", "crops_scored")}
        statistics = [t.get("statistic") for t in (status.get("tracks") or {}).values() if t.get("statistic") is not None]
        shown.update(stream_id=stream_id, score=max(statistics) if statistics else None,
                     tracks=len(status.get("tracks") or {}))
        return web.json_response(shown, headers=CORS)

    async def patch(self, request: web.Request) -> web.Response:
        """Trickle ICE and ICE restarts are not supported (RFC 9725 §4.3.1): the answer already holds every
        candidate, gathered before it is sent. A 405 a browser can read (PATCH is in the CORS preflight)."""
        return self._error(405, "trickle ICE is not supported: the SDP answer carries all candidates",
                           {"Allow": "DELETE, OPTIONS"})

    async def delete(self, request: web.Request) -> web.Response:
        stream_id, session_id = request.match_info["stream_id"], request.match_info["session_id"]
        if not self._authorised(request, stream_id):
            return self._error(401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="whip"'})
        session = self.sessions.get(session_id)
        if session is None or session.stream_id != stream_id:
            return self._error(404, "no such session")
        session.end("closed", "the publisher sent DELETE")
        await session.closed()
        return web.Response(status=200, headers=CORS)

    # --- sessions --------------------------------------------------------------------------------------

    async def _negotiate(self, source: WhipSource, offer: str) -> web.Response:
        pc = peer_connection(self.settings.ice_servers)
        self.peer_connections.add(pc)
        # The session exists before the offer is applied: aiortc announces the tracks while applying it.
        session = source.prepare_session(uuid.uuid4().hex, pc, self.settings.media_timeout_s)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            if not any(t.kind == "video" for t in pc.getTransceivers()):
                raise ValueError("the offer has no video")
            await pc.setLocalDescription(await pc.createAnswer())  # waits for ICE gathering: no trickle needed
        except Exception as e:  # aiortc raises ValueError and friends on SDP it cannot use
            session.end("closed", "negotiation failed")
            await self._forget(session)
            return self._error(400, f"cannot negotiate: {type(e).__name__}: {str(e)[:200]}")
        source.activate(session)
        self.sessions[session.session_id] = session
        background(self._forget_when_closed(session), f"whip-forget-{source.stream_id}", stream_id=source.stream_id)
        session.start_watchdog()
        log.info("whip session negotiated", stream_id=source.stream_id, session=session.session_id)
        return web.Response(status=201, body=pc.localDescription.sdp.encode(), content_type="application/sdp",
                            headers={**CORS, "Location": f"/whip/{source.stream_id}/{session.session_id}"})

    async def _forget_when_closed(self, session: WebRtcSession) -> None:
        await session.closed()
        await self._forget(session)

    async def _forget(self, session: WebRtcSession) -> None:
        await session.closed()
        self.sessions.pop(session.session_id, None)
        self.peer_connections.discard(session.pc)

    async def _close_pc(self, pc) -> None:
        try:
            await pc.close()
        finally:
            self.peer_connections.discard(pc)

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            session.end("stopped", "the server is shutting down")
        await asyncio.gather(*(self._close_pc(pc) for pc in list(self.peer_connections)), return_exceptions=True)

    # --- helpers ---------------------------------------------------------------------------------------

    def _authorised(self, request: web.Request, stream_id: str) -> bool:
        expected = [t for t in (self.settings.stream_tokens.get(stream_id), self.settings.token) if t]
        if not expected:
            return True  # no token configured for this stream: open (the README warns)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and any(hmac.compare_digest(token.encode(), t.encode()) for t in expected)

    @staticmethod
    def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
        return web.Response(status=status, text=message + "\n", headers={**CORS, **(headers or {})})
