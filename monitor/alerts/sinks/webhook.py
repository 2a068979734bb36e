"""The webhook sink: each alert event is POSTed as JSON to a URL, signed, one at a time and in order.

Headers: `Content-Type: application/json`, `Monitor-Event-Id` (the idempotency key: a receiver that sees the
same id twice is seeing a retry), `Monitor-Timestamp` (Unix seconds) and, when a secret is set,
`Monitor-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">` (the scheme Stripe and GitHub use).
2xx is delivered. 408, 429, 5xx and network errors are retried with capped exponential backoff and jitter,
honouring `Retry-After`; any other answer (4xx, 3xx) is a rejection: the event goes to the dead letter at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from email.utils import parsedate_to_datetime
from typing import Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ... import __version__
from ...redact import redact
from .base import SinkRejected, SinkRetry

RETRYABLE = {408, 425, 429}
SIGNATURE_VERSION = "v1"


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["webhook"] = "webhook"
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                             description="names its spool cursor, dead-letter file and metrics (default webhook-N)")
    url: str = Field(..., description="http(s)://...; credentials in the URL are sent as basic auth, never shown")
    secret: str | None = Field(None, description="HMAC-SHA256 signing secret (by reference: ${credential:NAME})")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")
    timeout_s: float = Field(10.0, gt=0, description="bound on one request")
    max_retry_s: float = Field(86_400.0, gt=0, description="retry an event this long, then dead-letter it")
    streams: list[str] | None = Field(None, description="only these streams' alerts (none: all)")
    verdicts: list[Literal["suspicious", "manipulated"]] | None = Field(
        None, description="only alerts whose peak verdict is one of these (none: all)")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.lower().startswith(("http://", "https://")) or any(c.isspace() for c in url):
            raise ValueError("a webhook URL is http(s)://host/path")
        return url


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `Monitor-Signature` value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class WebhookSink:
    batch_size = 1  # one request per event: a failure is about that event only

    def __init__(self, settings: WebhookSettings, name: str):
        self.settings, self.name = settings, name
        self.max_retry_s = settings.max_retry_s
        self.safe_url = redact(settings.url)
        self._session: aiohttp.ClientSession | None = None

    def wants(self, event: dict) -> bool:
        s = self.settings
        return (event.get("kind") != "evidence"  # crops and frames stay in Redis; the event carries their key
                and (s.streams is None or event.get("stream_id") in s.streams)
                and (s.verdicts is None or event.get("peak_verdict") in s.verdicts))

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s))

    async def deliver(self, events: list[dict]) -> None:
        for event in events:
            await self._post(event)

    async def test(self, event: dict) -> str:
        return await self._post(event)

    async def _post(self, event: dict) -> str:
        body = json.dumps({k: v for k, v in event.items() if not k.startswith("_")},  # no internal keys (`_fence`)
                          separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {**self.settings.headers, "Content-Type": "application/json",
                   "User-Agent": f"deepfake-monitor/{__version__}", "Monitor-Event-Id": str(event.get("event_id")),
                   "Monitor-Timestamp": timestamp}
        if self.settings.secret:
            headers["Monitor-Signature"] = sign(self.settings.secret, timestamp, body)
        try:
            async with self._session.post(self.settings.url, data=body, headers=headers,
                                          allow_redirects=False) as response:
                text = (await response.text(errors="replace"))[:200]
                status = response.status
                wait = retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise SinkRetry(redact(f"{self.safe_url}: {type(e).__name__}: {e}")) from None
        answer = redact(f"HTTP {status} {text.strip()}".strip())
        if 200 <= status < 300:
            return answer
        if status in RETRYABLE or status >= 500:
            raise SinkRetry(f"{self.safe_url}: {answer}", wait)
        raise SinkRejected(f"{self.safe_url}: {answer}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
