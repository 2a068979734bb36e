"""Credential redaction: the one function every log line, error, metric label and published state uses."""

from __future__ import annotations

import re

# scheme://user:password@host  or  scheme://token@host  (RTSP, Redis, HTTP...)
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_SECRET_PARAMS = re.compile(r"(?i)([?&](?:password|passwd|pass|pwd|token|auth|key|secret)=)[^&\s]+")


def redact(text: object) -> str:
    """Replace URL credentials with `***`, keeping the user name when there is one."""

    def userinfo(match: re.Match) -> str:
        user, sep, _ = match["userinfo"].partition(":")
        return f"{match['scheme']}{user}:***@" if sep else f"{match['scheme']}***@"

    return _SECRET_PARAMS.sub(r"\1***", _USERINFO.sub(userinfo, str(text)))
