"""The connection to Redis: its settings, and the one way to make a client (every call bounded by a timeout,
never retried behind our back; Sentinel when configured). What counts as an outage, and how errors are told
without secrets."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field, field_validator
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthenticationWrongNumberOfArgsError, RedisError, ResponseError

from ..errors import ConfigError
from ..redact import redact
from .keys import KeySchema

OUTAGES = (RedisError, OSError, asyncio.TimeoutError)


class RedisSettings(KeySchema, BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field("redis://127.0.0.1:6379/0", description="redis://, rediss:// (TLS), unix:// or "
                     "redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]; user and "
                     "password in the URL for ACLs")
    sentinels: list[str] = Field(default_factory=list, description="Sentinel addresses host:port: the master of "
                                 "`service_name` is asked of them (url then gives only credentials and db)")
    service_name: str = Field("mymaster", min_length=1, description="the Sentinel service (master group) name")
    wait_replicas: int = Field(0, ge=0, description="each delivery of alert events waits until this many "
                               "replicas have it (WAIT) before it counts: nothing is lost when a master fails over")
    prefix: str = Field("deepfake", min_length=1, description="prefix of every key and channel")
    events_maxlen: int = Field(100_000, ge=1, description="approximate cap of the durable event stream")
    heartbeat_ttl_s: float = Field(30.0, gt=0, description="TTL of this instance's heartbeat key")
    timeout_s: float = Field(2.0, gt=0, description="timeout of every Redis call")
    dedupe_ttl_s: int = Field(86_400, ge=60, description="how long delivered event ids are remembered")
    alert_ttl_s: int = Field(7 * 86_400, ge=60, description="how long each alert's events are kept by alert id "
                             "(for /alerts/<id> and reports; the durable log is capped by events_maxlen)")

    @field_validator("url")
    @classmethod
    def _readable_password(cls, url: str) -> str:
        # A Redis URL's path is only the db (or Sentinel's service name), so an '@' after the first '/', '?' or
        # '#' means the password holds one of them: every URL parser (redis-py's too) would end the host there,
        # connect to a host named after part of the password and print it in its error.
        scheme, _, rest = url.partition("://")
        if scheme not in ("redis", "rediss", "redis+sentinel"):
            return url  # unix:// has a path, not a host
        cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        if "@" in rest[cut:]:
            raise ValueError("the password holds '/', '?' or '#': write them percent-encoded (%2F, %3F, %23)")
        return url


class RedisAuthError(ConfigError):
    """Wrong or missing Redis credentials: a configuration error, not an outage."""


def connect(settings: RedisSettings, decode_responses: bool = True, timeout_s: float | None = None
            ) -> aioredis.Redis:
    """A client whose every call is bounded by `timeout_s` and never retried behind our back. With Sentinel
    (`redis+sentinel://` or `sentinels`), redis-py's `Sentinel` finds the master, and again after a failover."""
    timeout = settings.timeout_s if timeout_s is None else timeout_s
    options = dict(socket_timeout=timeout, socket_connect_timeout=settings.timeout_s, retry=Retry(NoBackoff(), 0),
                   decode_responses=decode_responses)
    target = sentinel_target(settings)
    if target is None:
        return aioredis.Redis.from_url(settings.url, **options)
    from redis.asyncio.sentinel import Sentinel

    addresses, service, credentials = target
    sentinel = Sentinel(addresses, sentinel_kwargs={"socket_timeout": settings.timeout_s,
                                                    "socket_connect_timeout": settings.timeout_s},
                        **credentials)
    return sentinel.master_for(service, redis_class=aioredis.Redis, **options)


def sentinel_target(settings: RedisSettings) -> tuple[list[tuple[str, int]], str, dict] | None:
    """(sentinel addresses, service name, master credentials and db), or None without Sentinel."""
    from urllib.parse import unquote, urlsplit

    url = settings.url
    if url.startswith("redis+sentinel://"):
        rest = url[len("redis+sentinel://"):]
        auth, _, rest = rest.rpartition("@") if "@" in rest else ("", "", rest)
        hosts, _, path = rest.partition("/")
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise ValueError("a redis+sentinel:// URL needs the service name after the addresses")
        service, db = parts[0], int(parts[1]) if len(parts) > 1 else 0
        addresses = [_address(h) for h in hosts.split(",") if h]
        user, _, password = auth.partition(":")
        credentials = {"db": db, "username": unquote(user) or None, "password": unquote(password) or None}
        return addresses, service, credentials
    if not settings.sentinels:
        return None
    parsed = urlsplit(url)
    credentials = {"db": int((parsed.path or "/0").strip("/") or 0), "username": unquote(parsed.username or "") or None,
                   "password": unquote(parsed.password or "") or None}
    return [_address(a) for a in settings.sentinels], settings.service_name, credentials


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a Sentinel address is host:port, got {text!r}")
    return host.strip("[]"), int(port)


def describe_error(error: BaseException, url: str) -> str:
    """A one-line reason with no secret in it."""
    if is_auth_error(error):
        return f"redis.url: Redis authentication failed for {redact(url)}: check the user and password"
    return redact(f"Redis at {url} unreachable: {type(error).__name__}: {error}")


def is_auth_error(error: BaseException) -> bool:
    if isinstance(error, (AuthenticationError, AuthenticationWrongNumberOfArgsError)):
        return True
    text = str(error)
    return isinstance(error, ResponseError) and ("NOAUTH" in text or "WRONGPASS" in text or "NOPERM" in text)
