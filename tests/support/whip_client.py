"""A real aiortc WHIP publisher for the tests."""

from __future__ import annotations

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer


class WhipPublisher:
    def __init__(self, endpoint: str, token: str | None = None):
        self.endpoint, self.token = endpoint, token
        self.pc: RTCPeerConnection | None = None
        self.location: str | None = None
        self.player = None

    async def publish(self, video_track=None, path: str | None = None, codec: str = "H264", loop: bool = True,
                      audio: bool = False) -> aiohttp.ClientResponse:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        if path is not None:
            self.player = MediaPlayer(path, loop=loop)
            video_track = self.player.video
        transceiver = self.pc.addTransceiver(video_track, direction="sendonly")
        codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == f"video/{codec}"]
        transceiver.setCodecPreferences(codecs)
        if audio:
            from aiortc.mediastreams import AudioStreamTrack
            self.pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        headers = {"Content-Type": "application/sdp"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        async with aiohttp.ClientSession() as http:
            async with http.post(self.endpoint, data=self.pc.localDescription.sdp, headers=headers) as response:
                body = await response.text()
                if response.status == 201:
                    self.location = response.headers["Location"]
                    await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
                return response

    async def delete(self, base: str) -> int:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with aiohttp.ClientSession() as http:
            async with http.delete(base + self.location, headers=headers) as response:
                return response.status

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self.player is not None and self.player.video is not None:
            self.player.video.stop()
