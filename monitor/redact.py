"""Credential redaction: the one function every log line, error, metric label and published state uses.

Two layers:
- URL user info: `scheme://user:password@host` becomes `scheme://user:***@host`. The user info ends at the
  *last* `@` of the URL (FFmpeg and redis-py read it that way, so a password may hold `@`, and `/ : # ? %`
  must be hidden with it). A URL runs to the first whitespace or quote.
- Known secrets: every secret the config resolved (passwords in URLs, tokens) is remembered and replaced
  wherever it appears, also percent-encoded or decoded, so a secret quoted by a library in some other shape
  does not leak either.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, unquote

_URL = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<rest>[^\s'\"<>`]+)")
_SECRET_PARAMS = re.compile(r"(?i)([?&](?:password|passwd|pass|pwd|token|auth|key|secret)=)[^&\s'\"]+")
MIN_SECRET_LENGTH = 4  # shorter values would garble ordinary text; they are still hidden inside URLs

_secrets: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern | None = None


def remember_secret(value: str | None) -> None:
    """Hide `value` (and its percent-encoded/decoded forms) in everything `redact` sees from now on."""
    global _pattern
    if not value:
        return
    forms = {value, unquote(value), quote(value, safe="")}
    with _lock:
        added = {f for f in forms if len(f) >= MIN_SECRET_LENGTH} - _secrets
        if added:
            _secrets.update(added)
            # Longest first, so that a secret containing another is replaced whole.
            _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def url_password(url: str) -> str | None:
    """The password (or token) in a URL's user info, as written; None when there is none."""
    match = _URL.match(url.strip())
    if not match or "@" not in match["rest"]:
        return None
    userinfo = match["rest"].rsplit("@", 1)[0]
    user, sep, password = userinfo.partition(":")
    return password if sep else user


def _userinfo(match: re.Match) -> str:
    rest = match["rest"]
    if "@" not in rest:
        return match[0]
    userinfo, host = rest.rsplit("@", 1)
    user, sep, _ = userinfo.partition(":")
    return f"{match['scheme']}{user}:***@{host}" if sep else f"{match['scheme']}***@{host}"


def redact(text: object) -> str:
    """`text` with URL credentials, secret query parameters and every remembered secret replaced by `***`."""
    text = _SECRET_PARAMS.sub(r"\1***", _URL.sub(_userinfo, str(text)))
    pattern = _pattern
    return pattern.sub("***", text) if pattern is not None else text
