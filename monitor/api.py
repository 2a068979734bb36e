"""The HTTP server: health, readiness, Prometheus metrics, the running config, stream CRUD, and WHIP (one
aiohttp app). The app is given what it may use (`ApiContext`), never the whole daemon: streams change only
through its `StreamControl`."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import console, pages, report
from .alerts.store import AlertStore, summary
from .auth import Auth
from .config import MonitorConfig, masked
from .control import StreamControl
from .errors import ConfigError, MonitorError, StreamExists
from .health import Health
from .redact import redact


@dataclass
class ApiContext:
    """What the HTTP app may use (Frigate's `create_fastapi_app(...)` takes its parts the same way)."""

    config: Callable[[], MonitorConfig]  # the running config: a reload replaces it
    health: Health
    registry: object  # the Prometheus registry /metrics serves
    streams: StreamControl
    store: AlertStore
    whip: object  # the WHIP endpoint: adds its own routes
    stopping: asyncio.Event
    cluster_view: Callable[[], Awaitable[dict]] | None = None  # /cluster in cluster mode


async def serve(app: web.Application, host: str, port: int, ssl_context=None,
                **runner_options) -> tuple[web.AppRunner, int]:
    """Start serving `app` on host:port (0: any free port), over TLS with `ssl_context`. Returns the runner, for
    `cleanup()`, and the port."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


def transport_middleware(trusted_proxies):
    """HSTS on HTTPS answers; behind a trusted reverse proxy, the scheme and host the client used."""

    @web.middleware
    async def transport(request: web.Request, handler):
        networks = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies()]  # a reload may change them
        if networks and request.remote and any(ipaddress.ip_address(request.remote.split("%")[0]) in n
                                               for n in networks):
            proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
            host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
            changes = {"scheme": proto} if proto in ("http", "https") else {}
            if host:
                changes["host"] = host
            request = request.clone(**changes) if changes else request
        response = await handler(request)
        if request.scheme == "https":
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    return transport


def build_plain_app(ctx: ApiContext) -> web.Application:
    """The plain-HTTP loopback listener (`[http] plain_metrics`): health, readiness and metrics, nothing that
    needs a token."""
    app = web.Application()
    handlers = health_handlers(ctx)
    for path, handler in handlers.items():
        app.router.add_get(path, handler)

    async def refused(request):
        return web.json_response({"error": "this plain listener serves /healthz, /readyz and /metrics only; use "
                                           "the HTTPS server"}, status=403)

    app.router.add_route("*", "/{anything:.*}", refused)
    return app


def health_handlers(ctx: ApiContext) -> dict:
    async def healthz(request):
        healthy, reason = ctx.health.healthy()
        return web.json_response({"status": "alive" if healthy else "unhealthy", "reason": reason},
                                 status=200 if healthy else 503)

    async def readyz(request):
        ready = ctx.health.ready
        return web.json_response({"ready": ready, "checks": ctx.health.checks,
                                  "listeners": ctx.health.listeners}, status=200 if ready else 503)

    async def metrics(request):
        return web.Response(body=generate_latest(ctx.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": redact(message)}, status=status)


def build_app(ctx: ApiContext) -> web.Application:
    """Everything on the main listener: health, metrics, the API, alerts and their evidence, the pages, WHIP."""
    app = web.Application(client_max_size=256 * 1024,
                          middlewares=[transport_middleware(lambda: ctx.config().http.trusted_proxies)])
    auth = Auth(lambda: ctx.config().http.token)
    guarded = auth.guarded
    streams = ctx.streams

    async def running_config(request):
        return web.json_response({"config": masked(ctx.config()), "restart_needed": ctx.health.pending_restart})

    async def list_streams(request):
        return web.json_response({"streams": streams.statuses()})

    async def get_stream(request):
        status = streams.status(request.match_info["id"])
        return web.json_response(status) if status else error(404, f"no stream {request.match_info['id']!r}")

    async def add_stream(request):
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return error(400, "body must be a JSON object: {\"id\": ..., \"url\": ...}")
        try:
            answer = await streams.add(body)
        except ConfigError as e:
            return error(400, str(e))
        except StreamExists as e:
            return error(409, str(e))
        except MonitorError as e:  # the registry is unreachable
            return error(503, str(e))
        return web.json_response(answer, status=201)

    async def publish_page(request):
        """The built-in WHIP publisher for a `whip` stream (the WHIP token is entered in the page)."""
        if not streams.takes_publishers(request.match_info["id"]):
            return error(404, f"no WHIP stream {request.match_info['id']!r}")
        return pages.asset("publish.html")

    async def delete_stream(request):
        stream_id = request.match_info["id"]
        try:
            removed = await streams.remove(stream_id)
        except MonitorError as e:
            return error(503, str(e))
        return web.Response(status=204) if removed else error(404, f"no stream {stream_id!r}")

    async def cluster_status(request):
        """The fleet (members, each registry stream's owner) and what this daemon runs under a lease it trusts."""
        if ctx.cluster_view is None:
            return web.json_response({"enabled": False, "instance": ctx.config().instance})
        return web.json_response(await ctx.cluster_view())

    for path, handler in health_handlers(ctx).items():
        app.router.add_get(path, handler)
    app.router.add_get("/config", guarded(running_config))
    app.router.add_get("/streams", guarded(list_streams))
    app.router.add_post("/streams", guarded(add_stream))
    app.router.add_get("/streams/{id}", guarded(get_stream))
    app.router.add_delete("/streams/{id}", guarded(delete_stream))
    app.router.add_get("/publish/{id}", publish_page)
    app.router.add_get("/cluster", guarded(cluster_status))
    add_alert_routes(app, ctx.store, guarded)
    console.add_routes(app, ctx, auth)
    pages.add_static_routes(app)
    ctx.whip.add_routes(app)
    return app


def add_alert_routes(app: web.Application, store, guarded) -> None:
    """Alerts and their evidence, read from Redis (any daemon of a fleet serves any alert)."""

    async def list_alerts(request):
        query = request.query
        try:
            since = float(query["since"]) if "since" in query else None
            limit = min(500, max(1, int(query.get("limit", 50))))
        except ValueError:
            return error(400, "since must be Unix seconds and limit a number")
        alerts, cursor = await store.recent(query.get("stream"), query.get("verdict"), since, query.get("cursor"),
                                            limit)
        return web.json_response({"alerts": alerts, "next": cursor})

    async def get_alert(request):
        alert_id = request.match_info["id"]
        events = await store.events(alert_id)
        if not events:
            return error(404, f"no alert {alert_id!r} (unknown, or older than redis.alert_ttl_s)")
        return web.json_response({"alert": summary(events[-1]), "events": events,
                                  "evidence": await store.evidence(alert_id)})

    async def frame(request):
        return await evidence_file(request.match_info["id"], "frame.jpg")

    async def crop(request):
        return await evidence_file(request.match_info["id"], f"crop-{request.match_info['n']}.jpg")

    async def evidence_file(alert_id: str, name: str):
        data = await store.file(alert_id, name)
        if data is None:
            return error(404, f"no {name} for alert {alert_id!r}")
        return web.Response(body=data, content_type="image/jpeg",
                            headers={"Cache-Control": "private, max-age=60", "X-Content-Type-Options": "nosniff"})

    async def report_page(request):
        alert_id = request.match_info["id"]
        events = await store.events(alert_id)
        if not events:
            return error(404, f"no alert {alert_id!r}")
        body = report.render(events, await store.evidence(alert_id), await store.files(alert_id))
        return web.Response(text=body, content_type="text/html",
                            headers={"Content-Security-Policy": "default-src 'none'; img-src data:; "
                                                                "style-src 'unsafe-inline'", "Cache-Control": "no-cache"})

    app.router.add_get("/alerts", guarded(list_alerts))
    app.router.add_get("/alerts/{id}", guarded(get_alert))
    app.router.add_get("/alerts/{id}/crops/{n:[0-9]{1,2}}.jpg", guarded(crop))
    app.router.add_get("/alerts/{id}/frame.jpg", guarded(frame))
    app.router.add_get("/alerts/{id}/report.html", guarded(report_page))


__all__ = ["ApiContext", "build_app", "build_plain_app", "serve"]
