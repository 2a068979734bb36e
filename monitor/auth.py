"""Who may use the HTTP API and the pages: the API token, as a bearer header, or as a console session cookie.

The console's login form exchanges the token for a cookie (`HttpOnly; SameSite=Strict`, `Secure` on HTTPS)
whose value is an expiry signed with the token (HMAC-SHA256): nothing is stored server-side, and a new token
(a reload) ends every session. The cookie only authorises reading (GET): changes need the bearer token.
Tokens are never taken from a query string.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from aiohttp import web

COOKIE = "monitor_session"
SESSION_S = 12 * 3600
SAFE_METHODS = ("GET", "HEAD")


def session_value(token: str, expires: int) -> str:
    signature = hmac.new(token.encode(), f"console-session:{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{signature}"


def valid_session(token: str, value: str | None) -> bool:
    if not value or "." not in value:
        return False
    expires, _ = value.split(".", 1)
    if not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(value, session_value(token, int(expires)))


class Auth:
    def __init__(self, token: Callable[[], str | None]):
        self.token = token  # read per request: a reload may change it

    def allows(self, request: web.Request) -> bool:
        token = self.token()
        if not token:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode()):
            return True
        return request.method in SAFE_METHODS and valid_session(token, request.cookies.get(COOKIE))

    def guarded(self, handler):
        async def wrapper(request: web.Request):
            if not self.allows(request):
                return web.json_response({"error": "missing or wrong bearer token (or console session)"},
                                         status=401, headers={"WWW-Authenticate": "Bearer"})
            return await handler(request)
        return wrapper

    def login(self, response: web.Response, request: web.Request, token: str) -> bool:
        """Give `response` a session cookie when `token` is right."""
        expected = self.token()
        if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
            return False
        expires = int(time.time()) + SESSION_S
        response.set_cookie(COOKIE, session_value(expected, expires), max_age=SESSION_S, path="/", httponly=True,
                            samesite="Strict", secure=request.scheme == "https")
        return True

    @staticmethod
    def logout(response: web.Response, request: web.Request) -> None:
        response.del_cookie(COOKIE, path="/", secure=request.scheme == "https", httponly=True, samesite="Strict")
