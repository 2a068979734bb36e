"""Pages the daemon serves: plain HTML, CSS and JavaScript from `static/`, no build step, no external requests
(they work on an air-gapped network)."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

STATIC = resources.files(__package__) / "static"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# Our pages load nothing from elsewhere; the publisher page may talk to a WHIP endpoint on another origin.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                               "media-src 'self' blob: mediastream:; connect-src *; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def asset(name: str) -> web.Response:
    """A file of `static/` (names are ours, never the client's path)."""
    suffix = name[name.rfind("."):]
    return web.Response(body=(STATIC / name).read_bytes(), content_type=TYPES[suffix], headers=PAGE_HEADERS)


def add_static_routes(app: web.Application) -> None:
    """/static/<name> for the scripts, styles and images of `static/` (pages have routes of their own)."""
    names = sorted(p.name for p in STATIC.iterdir() if p.name[p.name.rfind("."):] in (".js", ".css", ".svg"))

    async def static(request: web.Request) -> web.Response:
        return asset(request.match_info["name"])

    for name in names:
        app.router.add_get(f"/static/{{name:{name.replace('.', '[.]')}}}", static)
