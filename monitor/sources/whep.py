"""WHEP pull: the monitor as a WebRTC viewer of a media server (MediaMTX, Janus, LiveKit, OvenMediaEngine...).

`url = "whep+https://server/whep/cam"`: POST an SDP offer (receive-only video and audio) to the endpoint,
with `Authorization: Bearer <token>` when the stream has a `token`; `201 Created` brings the answer and the
session's `Location`, which gets a DELETE when the session ends or the stream stops. The video track drains
into the newest-frame channel like a WHIP session's. Failures are classified and retried like RTSP's, with
the same backoff, jitter, rate limit and states: `auth` (401/403) and `not_found` (404) are `error` and back
off for `backoff_fatal_s`; `refused`, `timeout`, `protocol` (any other answer) and `media_timeout` (no media
for `stall_timeout_s`) reconnect.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCSessionDescription

from ..logs import get
from ..redact import redact
from .base import (
    ERROR,
    FATAL_REASONS,
    RECONNECTING,
    RUNNING,
    STARTING,
    STOPPED,
    Backoff,
    SourceFailure,
    SourceSettings,
    SourceStats,
    StatsState,
)
from .channel import FrameChannel
from .webrtc import IceServer, WebRtcSession, peer_connection

log = get(__name__)
SCHEMES = ("whep+http://", "whep+https://")
DELETE_BOUND_S = 2.0  # closing an ended session and its DELETE, in the background


def endpoint_of(url: str) -> str:
    """The HTTP(S) URL of the WHEP endpoint (`whep+https://h/p` -> `https://h/p`)."""
    return url.split("+", 1)[1]


class WhepSource(StatsState):
    def __init__(self, stream_id: str, url: str, settings: SourceSettings | None = None, token: str | None = None,
                 ice_servers: list[IceServer] | None = None):
        self.stream_id, self.url = stream_id, url
        self.settings = settings or SourceSettings()
        self.endpoint, self.token, self.ice_servers = endpoint_of(url), token, ice_servers or []
        self.stats = SourceStats()
        self.safe_url = redact(url)
        self.session: WebRtcSession | None = None
        self.log = log.bind(stream_id=stream_id)
        self._channel = FrameChannel()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._sessions = 0  # sessions that delivered frames
        self._http: aiohttp.ClientSession | None = None
        self._closing: set[asyncio.Task] = set()  # ended sessions closing, and their DELETE, in the background

    def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.open_timeout_s))
        self._task = asyncio.create_task(self._run(), name=f"whep-{self.stream_id}")

    def frames(self):
        return self._channel.items()

    @property
    def busy(self) -> bool:
        return self.session is not None  # kept as it was: a connected WHEP session is not handed off either

    def status(self) -> dict:
        return {"id": self.stream_id, "url": self.safe_url,
                "session": self.session.session_id if self.session else None, **self.stats.snapshot()}

    async def stop(self) -> None:
        self._stop.set()
        if self.session is not None:
            self.session.end("stopped", "the stream is stopping")
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        self.stats.set_state(STOPPED, "stopped")
        self._channel.finish()

    # --- sessions ------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(self.settings, self.stats)
        first = True
        try:
            while not self._stop.is_set():
                if not first:
                    self.stats.restart_attempted(time.time())
                first = False
                delivered_before = self.stats.frames_decoded
                try:
                    failure = await self._one_session()
                except SourceFailure as error:
                    failure = error
                if self._stop.is_set():
                    return
                if self.stats.frames_decoded > delivered_before:
                    backoff.reset()  # a session that worked: start from the first delay again
                fatal = failure.reason in FATAL_REASONS
                self.stats.set_state(ERROR if fatal else RECONNECTING, failure.reason, str(failure))
                delay = backoff.delay(failure.reason)
                self.log.warning("reconnecting", reason=failure.reason, error=str(failure), in_s=round(delay, 2))
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except TimeoutError:
                    pass
        finally:
            self._channel.finish()

    async def _one_session(self) -> SourceFailure:
        """Negotiate, receive until the session ends; returns why it ended (raises when it never began)."""
        pc = peer_connection(self.ice_servers)
        ended = asyncio.get_running_loop().create_future()

        def on_end(session: WebRtcSession, reason: str, detail: str) -> None:
            if not ended.done():
                ended.set_result(SourceFailure(reason, f"{reason}: {detail}"))

        session = WebRtcSession(self.stream_id, uuid.uuid4().hex, pc, self.stats, self._channel,
                                self.settings.sample_fps, self.settings.stall_timeout_s,
                                on_first_frame=self._running, on_end=on_end)
        location = None
        try:
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            try:
                await asyncio.wait_for(pc.setLocalDescription(await pc.createOffer()), self.settings.open_timeout_s)
            except TimeoutError:
                raise SourceFailure("timeout", "timeout: ICE gathering took too long") from None
            answer, location = await self._post_offer(pc.localDescription.sdp)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            except Exception as e:  # aiortc raises ValueError and friends on SDP it cannot use
                raise SourceFailure("protocol", f"protocol: unusable SDP answer ({type(e).__name__}: {e})") from None
            self.session = session
            self.stats.set_state(STARTING)
            session.start_watchdog()  # media_timeout: no media for stall_timeout_s
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({ended, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if ended.done():
                return ended.result()
            return SourceFailure("stopped", "stopped")
        finally:
            session.end("stopped" if self._stop.is_set() else "closed", "session over")
            self.session = None
            # The stream's state changes now; closing the peer connection and the best-effort DELETE go on in
            # the background, each bounded: a frozen server would otherwise hold the stream `running`.
            closing = asyncio.create_task(self._close(session, location), name=f"whep-close-{self.stream_id}")
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def _close(self, session: WebRtcSession, location: str | None) -> None:
        try:
            await asyncio.wait_for(session.closed(), DELETE_BOUND_S)
        except TimeoutError:
            self.log.info("whep: the peer connection did not close in time")
        if location is not None:
            await self._delete(location)

    def _running(self, session: WebRtcSession) -> None:
        if self._sessions:  # a session came back after a loss
            self.stats.count("reconnects")
        self._sessions += 1
        self.stats.set_state(RUNNING)

    async def _post_offer(self, offer: str) -> tuple[str, str | None]:
        headers = {"Content-Type": "application/sdp", "Accept": "application/sdp", **self._auth()}
        try:
            async with self._http.post(self.endpoint, data=offer, headers=headers, allow_redirects=True) as response:
                body = await response.text(errors="replace")
                if response.status in (401, 403):
                    raise SourceFailure("auth", f"auth: {self.safe_url} answered {response.status}")
                if response.status == 404:
                    raise SourceFailure("not_found", f"not_found: {self.safe_url} answered 404")
                if response.status not in (200, 201) or not body.startswith("v=0"):
                    raise SourceFailure("protocol", redact(f"protocol: {self.safe_url} answered {response.status}: "
                                                           f"{body[:200]}"))
                location = response.headers.get("Location")
                return body, urljoin(str(response.url), location) if location else None
        except aiohttp.ClientConnectorError as e:
            reason = "refused" if isinstance(e.os_error, ConnectionRefusedError) else "protocol"
            raise SourceFailure(reason, redact(f"{reason}: {self.safe_url}: {e.os_error}")) from None
        except (TimeoutError, asyncio.TimeoutError):
            raise SourceFailure("timeout", f"timeout: {self.safe_url} did not answer within "
                                           f"{self.settings.open_timeout_s:.1f} s") from None
        except aiohttp.ClientError as e:
            raise SourceFailure("protocol", redact(f"protocol: {self.safe_url}: {type(e).__name__}: {e}")) from None

    async def _delete(self, location: str) -> None:
        """End the session on the server too (best effort: it also times out on its side)."""
        try:
            async with self._http.delete(location, headers=self._auth(),
                                         timeout=aiohttp.ClientTimeout(total=DELETE_BOUND_S)) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self.log.info("whep DELETE failed", error=redact(f"{type(e).__name__}: {e}"))

    def _auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

