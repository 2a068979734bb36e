"""A webhook receiver for the tests (aiohttp): verifies each request's signature the way the README tells a
user to, answers as the test says, and records what it accepted."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from aiohttp import web

from monitor.api import serve


def verify(secret: str, timestamp: str, body: bytes, signature: str, tolerance_s: float = 300) -> bool:
    """The receiver's side of `Monitor-Signature` (the README's example, as code)."""
    expected = "v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature) and abs(time.time() - int(timestamp)) <= tolerance_s


class WebhookReceiver:
    def __init__(self, secret: str | None = None, port: int = 0):
        self.secret, self.port = secret, port
        self.answer = lambda event: 200  # event -> HTTP status, or an awaitable of it (a test replaces it)
        self.accepted: list[dict] = []  # events answered 2xx, in arrival order
        self.requests = 0
        self.bad_signatures = 0
        self.headers: list[dict] = []
        self.runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> "WebhookReceiver":
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.runner, self.port = await serve(app, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _hook(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        self.headers.append(dict(request.headers))
        if self.secret and not verify(self.secret, request.headers.get("Monitor-Timestamp", "0"), body,
                                      request.headers.get("Monitor-Signature", "")):
            self.bad_signatures += 1
            return web.Response(status=401)
        event = json.loads(body)
        if request.headers.get("Monitor-Event-Id") != event.get("event_id"):
            return web.Response(status=400, text="Monitor-Event-Id does not match the body")
        status = self.answer(event)
        if hasattr(status, "__await__"):  # an answer that takes its time (a slow receiver)
            status = await status
        if 200 <= status < 300:
            self.accepted.append(event)
        return web.Response(status=status, headers={"Retry-After": "1"} if status in (429, 503) else {})

    def ids(self) -> list[str]:
        return [e["event_id"] for e in self.accepted]
