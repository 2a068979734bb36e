"""The live web console at `/`: streams, open alerts with their crops, recent alerts, updated live.

The page (`pages/static/console.*`) reads `/live`, a Server-Sent Events feed: a snapshot on connect, then each
alert event as the alert channel carries it (any daemon's) and the streams every 2 s (this daemon's, plus the
stream-state hashes other daemons of a fleet write). Login exchanges the API token for a session cookie.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web
from redis.exceptions import RedisError

from . import pages
from .logs import get

log = get(__name__)
STREAMS_EVERY_S, HEARTBEAT_S = 2.0, 15.0


def add_routes(app: web.Application, ctx, auth) -> None:
    """`ctx`: the API's context (`monitor.api.ApiContext`)."""

    async def console(request):
        if not auth.allows(request):  # the login form, with 401: the console needs the token
            response = pages.asset("login.html")
            response.set_status(401)
            return response
        return pages.asset("console.html")

    async def login_page(request):
        return pages.asset("login.html")

    async def login(request):
        form = await request.post()
        response = web.Response(status=303, headers={"Location": "/"})
        if not auth.login(response, request, str(form.get("token", ""))):
            log.warning("console login refused", remote=request.remote)
            return web.Response(status=303, headers={"Location": "/login?failed=1"})  # never the token in a URL
        log.info("console login", remote=request.remote)
        return response

    async def logout(request):
        response = web.Response(status=303, headers={"Location": "/login"})
        auth.logout(response, request)
        return response

    async def live(request):
        return await LiveFeed(ctx).serve(request)

    app.router.add_get("/", console)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/live", auth.guarded(live))


def stream_view(status: dict, thresholds: dict | None = None) -> dict:
    """What the console shows of a stream (no URL, no counters it does not draw)."""
    tracks = status.get("tracks") or {}
    return {"id": status["id"], "state": status.get("state"), "reason": status.get("reason"),
            "fps": status.get("fps"), "connection_quality": status.get("connection_quality"),
            "verdict": status.get("verdict"), "instance": status.get("instance"), "origin": status.get("origin"),
            "tracks": {t: {"verdict": v.get("verdict"), "statistic": v.get("statistic"), "alert_id": v.get("alert_id")}
                       for t, v in tracks.items()}, "thresholds": thresholds}


class LiveFeed:
    def __init__(self, ctx):
        self.ctx = ctx
        self.store = ctx.store

    async def streams(self) -> list[dict]:
        """This daemon's streams, and those other daemons wrote to Redis (a fleet)."""
        control, instance = self.ctx.streams, self.ctx.config().instance
        views = [stream_view({**status, "instance": instance}, control.thresholds(status["id"]))
                 for status in control.statuses()]
        local = {v["id"] for v in views}
        prefix = f"{self.store.settings.prefix}:stream:"
        try:
            async for key in self.store.text.scan_iter(match=prefix + "*", count=200):
                stream_id = key[len(prefix):]
                if stream_id in local:
                    continue
                state = await self.store.text.hgetall(key)
                if not state or state.get("instance") == instance:
                    continue  # ours, removed since
                scores = json.loads(state.get("track_scores") or "{}")
                views.append(stream_view({"id": stream_id, **state, "fps": float(state.get("fps") or 0),
                                          "tracks": {t: {"verdict": None, "statistic": v} for t, v in scores.items()}}))
        except RedisError:
            pass  # Redis away: this daemon's own streams still show
        return sorted(views, key=lambda v: v["id"])

    async def serve(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        pubsub = self.store.text.pubsub()
        subscribed, next_streams, next_beat = False, time.monotonic() + STREAMS_EVERY_S, time.monotonic() + HEARTBEAT_S
        try:  # a client may hang up at any point, the first write included: that ends the feed, quietly
            await response.prepare(request)
            try:
                alerts, _ = await self.store.recent(limit=40)
            except RedisError:
                alerts = []
            await self._send(response, "snapshot", {"instance": self.ctx.config().instance,
                                                    "streams": await self.streams(), "alerts": alerts})
            while not self.ctx.stopping.is_set():
                try:
                    if not subscribed:
                        await pubsub.subscribe(self.store.settings.channel())
                        subscribed = True
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message:
                        await self._send(response, "alert", json.loads(message["data"]))
                except RedisError:
                    subscribed = False
                    await asyncio.sleep(1.0)
                now = time.monotonic()
                if now >= next_streams:
                    await self._send(response, "streams", await self.streams())
                    next_streams = now + STREAMS_EVERY_S
                if now >= next_beat:
                    await response.write(b": keep-alive\n\n")
                    next_beat = now + HEARTBEAT_S
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            try:
                await pubsub.aclose()
            except RedisError:
                pass
        return response

    @staticmethod
    async def _send(response: web.StreamResponse, event: str, data) -> None:
        await response.write(f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode())
