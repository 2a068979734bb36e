"""A real WHEP server for the tests: aiohttp + aiortc, serving MP4/WebM files as WebRTC tracks (re-encoded by
aiortc in the codec the test chooses), with bearer tokens, Location and DELETE, like a media server's."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer

from monitor.api import serve


class WhepServer:
    def __init__(self, media: dict[str, tuple[str, str]], token: str | None = None, port: int = 0):
        """`media`: mount -> (file, codec: "H264" or "VP8")."""
        self.media, self.token, self.port = media, token, port
        self.sessions: dict[str, tuple[RTCPeerConnection, MediaPlayer]] = {}
        self.posts: list[str] = []  # mounts asked for, in order
        self.deletes: list[str] = []  # session ids the client ended
        self.runner = None
        self._thawed = asyncio.Event()
        self._thawed.set()

    def freeze(self) -> None:
        """Hangs as a frozen process does: media stops, the HTTP server accepts requests and never answers."""
        self._thawed.clear()
        for pc, player in self.sessions.values():
            if player.video is not None:
                player.video.stop()

    def thaw(self) -> None:
        self._thawed.set()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, mount: str) -> str:
        return f"whep+{self.base}/whep/{mount}"

    async def start(self) -> "WhepServer":
        app = web.Application()
        app.router.add_post("/whep/{mount}", self._post)
        app.router.add_delete("/whep/{mount}/{session}", self._delete)
        self.runner, self.port = await serve(app, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        """Goes away: the HTTP server stops and every peer connection closes (clients see their media end)."""
        for session in list(self.sessions):
            await self._end(session)
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _post(self, request: web.Request) -> web.Response:
        await self._thawed.wait()
        mount = request.match_info["mount"]
        self.posts.append(mount)
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        if mount not in self.media or request.content_type != "application/sdp":
            return web.Response(status=404 if mount not in self.media else 415)
        path, codec = self.media[mount]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        player = MediaPlayer(path, loop=True)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=await request.text(), type="offer"))
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "video":
                transceiver.sender.replaceTrack(player.video)
                transceiver.direction = "sendonly"
                transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                                 if c.mimeType == f"video/{codec}"])
        await pc.setLocalDescription(await pc.createAnswer())
        session = uuid.uuid4().hex
        self.sessions[session] = (pc, player)
        return web.Response(status=201, body=pc.localDescription.sdp.encode(), content_type="application/sdp",
                            headers={"Location": f"/whep/{mount}/{session}"})

    async def _delete(self, request: web.Request) -> web.Response:
        await self._thawed.wait()
        session = request.match_info["session"]
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401)
        if session not in self.sessions:
            return web.Response(status=404)
        self.deletes.append(session)
        await self._end(session)
        return web.Response(status=200)

    async def _end(self, session: str) -> None:
        pc, player = self.sessions.pop(session)
        if player.video is not None:
            player.video.stop()
        await pc.close()
