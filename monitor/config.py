"""The daemon's configuration: one pydantic tree, read from TOML.

Secrets are referenced, never required inline: any string may contain `${NAME}` (environment variable) or
`${credential:NAME}` (a file in systemd's `$CREDENTIALS_DIRECTORY`, from `LoadCredential=`). Every error
names the offending key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .alerts.sinks import SinkSettings, sink_names
from .contracts import DEFAULT_MODEL
from .errors import ConfigError
from .evidence import EvidenceSettings
from .faces.pipeline import FaceSettings
from .faces.quality import QualitySettings
from .model import PRECISIONS
from .redact import redact, remember_secret, url_password
from .redis import RedisSettings
from .scoring import VerdictPolicy, WindowPolicy
from .sources.base import SourceSettings
from .sources.registry import check_url, kind_of
from .sources.whip import WhipSettings
from .worker.settings import WorkerSettings

_REFERENCE = re.compile(r"\$\{(?:(credential):)?([A-Za-z_][A-Za-z0-9_.-]*)\}")
SECRET_KEYS = ("token", "password", "credential", "stream_tokens", "secret", "headers", "tls_key")
_SECRET_HEADER = re.compile(r"(?i)auth|token|key|secret|signature|cookie|password")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MODEL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ModelConfig(Strict):
    path: str | None = Field(None, description="checkpoint (native, Lightning or GenD); none: a pulled one, "
                             "else the untrained demo network if allow_untrained")
    allow_untrained: bool = Field(False, description="run an untrained network when no checkpoint exists (demo)")
    precision: Literal[PRECISIONS] | None = Field(None, description="default: "
                                                                                 "bf16-autocast on CUDA, fp32 on CPU")
    devices: list[str] = Field(default_factory=lambda: ["auto"], min_length=1, description="cpu, cuda, cuda:N")
    size: Literal["L14", "tiny"] = Field("L14", description="untrained network size (demo only)")


class AlertSettings(Strict):
    update_interval_s: float = Field(5.0, ge=0, description="at most one `updated` event per alert this often")
    spool_dir: str = Field("/var/lib/deepfake-monitor/spool", description="the on-disk outbox of alert events")
    spool_max_events: int = Field(10000, ge=1)


class RecordSettings(Strict):
    enabled: bool = Field(False, description="record every scored crop of the streams that opt in (`record = true`)")
    maxlen: int = Field(1_000_000, ge=1000, description="approximate cap of <prefix>:scores")


class DriftSettings(Strict):
    enabled: bool = Field(False, description="watch each stream's authentic scores for drift from its baseline")
    baseline: float | None = Field(None, ge=0, le=1, description="median p_fake of authentic footage at calibration "
                                   "(`monitor calibrate` prints it); a stream's `drift_baseline` wins")
    threshold: float = Field(0.1, gt=0, lt=1, description="a median further than this from the baseline is drift")
    window_h: float = Field(24.0, gt=0, description="hours of authentic scores the rolling median covers")
    min_crops: int = Field(200, ge=10, description="fewest crops in the window before judging")
    check_every_s: float = Field(60.0, gt=0, description="how often the median is compared")


class ClusterSettings(Strict):
    enabled: bool = Field(False, description="share the registry's streams with the other daemons on this Redis "
                          "(leases with fencing); the file's [[streams]] must then be empty")
    lease_ttl_s: float = Field(10.0, ge=1, le=300, description="a stream's lease lasts this long unless renewed "
                               "(every third of it); a dead daemon's streams move after about this long")
    max_streams: int = Field(16, ge=0, description="the most streams this daemon runs (its capacity)")
    public_url: str | None = Field(None, description="how publishers and other daemons reach this one's HTTP "
                                   "server (WHIP redirects); default http(s)://<host>:<port> of [http]")


class DaemonRedis(RedisSettings):
    start_local: bool = Field(False, description="start a local redis-server for this process (demo)")


class HttpSettings(Strict):
    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(8080, ge=0, le=65535, description="0: any free port (printed at start)")
    token: str | None = Field(None, description="bearer token for the API and pages (health and metrics stay open)")
    tls: Literal["auto", "on", "off"] = Field("auto", description="auto: HTTPS unless bound to loopback without a "
                                              "certificate; on: always (self-signed if none given); off: plain HTTP")
    tls_cert: str | None = Field(None, description="certificate (chain) PEM: a file, or ${credential:NAME}")
    tls_key: str | None = Field(None, description="its private key PEM: a file, or ${credential:NAME}")
    tls_dir: str = Field("/var/lib/deepfake-monitor/tls", description="where the self-signed certificate is kept")
    plain_metrics: str | None = Field(None, description="host:port of a plain-HTTP listener on loopback serving "
                                      "/healthz, /readyz and /metrics only (for scrapers without TLS)")
    trusted_proxies: list[str] = Field(default_factory=list, description="reverse proxies (IPs or CIDRs) whose "
                                       "X-Forwarded-Proto and X-Forwarded-Host are believed")

    @model_validator(mode="after")
    def _tls(self):
        if bool(self.tls_cert) != bool(self.tls_key):
            missing = "tls_key" if self.tls_cert else "tls_cert"
            raise ValueError(f"{missing}: tls_cert and tls_key go together")
        if self.tls == "off" and self.tls_cert:
            raise ValueError("tls: \"off\" with a certificate given; remove tls_cert/tls_key or set tls = \"on\"")
        if self.plain_metrics is not None:
            host, _, port = self.plain_metrics.rpartition(":")
            from .tls import is_loopback

            if not port.isdigit() or not 0 < int(port) < 65536 or not is_loopback(host.strip("[]")):
                raise ValueError("plain_metrics: a loopback host:port, e.g. 127.0.0.1:9108 (the plain listener "
                                 "carries no token, so it must not be reachable from other machines)")
        for i, proxy in enumerate(self.trusted_proxies):
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies.{i}: {proxy!r} is not an IP address or network") from None
        return self


class LoggingSettings(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = Field("auto", description="auto: console on a TTY, else JSON")


class StreamConfig(Strict):
    id: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="letters, digits, _ . -")
    url: str = Field(..., min_length=1, description="rtsp://..., rtmp://..., http(s)://... (HLS), whep+https://... "
                     "(WHEP pull), a file path, or `whip` (published by WHIP)")
    token: str | None = Field(None, description="bearer token of a WHEP pull (by reference: ${credential:NAME})")
    model: str | None = Field(None, description="the model that scores this stream: a [models.<name>] name, or "
                              "`default` for [model] (default: the first model)")
    shadow: str | None = Field(None, description="a second model that scores this stream too; its verdict is "
                               "published beside the model's, and it never opens alerts")
    record: bool = Field(False, description="record this stream's scores when [record] enabled (for calibration)")
    drift_baseline: float | None = Field(None, ge=0, le=1, description="this stream's drift baseline ([drift])")
    sampling: dict[str, Any] = Field(default_factory=dict, description="overrides of [sampling]")
    window: dict[str, Any] = Field(default_factory=dict, description="overrides of [window]")
    verdict: dict[str, Any] = Field(default_factory=dict, description="overrides of [verdict]")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_url(url)


class MonitorConfig(Strict):
    instance: str = Field(default_factory=socket.gethostname, min_length=1, description="this daemon's id")
    model: ModelConfig = ModelConfig()
    models: dict[str, ModelConfig] = Field(default_factory=dict, description="more models, by name "
                                           "([models.<name>]); [model], when given, is named `default`")
    worker: WorkerSettings = WorkerSettings()
    sampling: SourceSettings = SourceSettings()
    faces: FaceSettings = FaceSettings()
    quality: QualitySettings = QualitySettings()
    window: WindowPolicy = WindowPolicy()
    verdict: VerdictPolicy = VerdictPolicy()
    alerts: AlertSettings = AlertSettings()
    evidence: EvidenceSettings = EvidenceSettings()
    record: RecordSettings = RecordSettings()
    drift: DriftSettings = DriftSettings()
    cluster: ClusterSettings = ClusterSettings()
    redis: DaemonRedis = DaemonRedis()
    http: HttpSettings = HttpSettings()
    whip: WhipSettings = WhipSettings()
    logging: LoggingSettings = LoggingSettings()
    sinks: list[SinkSettings] = Field(default_factory=list, description="alert destinations besides Redis")
    streams: list[StreamConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sinks(self):
        seen = {"redis"}
        for i, name in enumerate(sink_names(self.sinks)):
            if name in seen:
                raise ValueError(f"sinks.{i}.name: {name!r} is taken (names must be unique, and not `redis`)")
            seen.add(name)
        return self

    @property
    def model_table(self) -> dict[str, ModelConfig]:
        """Every model by name, the default (for streams that name none) first: [model] as `default` when it
        is set or when there is no [models.<name>], then [models.<name>] in file order."""
        table = {DEFAULT_MODEL: self.model} if self.model != ModelConfig() or not self.models else {}
        return {**table, **self.models}

    @property
    def default_model(self) -> str:
        return next(iter(self.model_table))

    @model_validator(mode="after")
    def _models(self):
        for name in self.models:
            if not MODEL_NAME.fullmatch(name):
                raise ValueError(f"models.{name}: a model name is letters, digits, `-` and `_`")
        if DEFAULT_MODEL in self.models and self.model != ModelConfig():
            raise ValueError(f"models.{DEFAULT_MODEL}: the name is [model]'s; give this one another")
        return self

    @model_validator(mode="after")
    def _cluster(self):
        if self.cluster.enabled and self.streams:
            raise ValueError("streams: in cluster mode the streams live in the registry, not in the file: move them "
                             "there with `monitor streams import FILE`")
        if self.cluster.enabled and self.redis.start_local:
            raise ValueError("cluster.enabled: a cluster needs a shared Redis, not redis.start_local")
        return self

    @model_validator(mode="after")
    def _streams(self):
        seen, models = set(), self.model_table
        for i, stream in enumerate(self.streams):
            if stream.id in seen:
                raise ValueError(f"streams.{i}.id: duplicate stream id {stream.id!r}")
            seen.add(stream.id)
            for key in ("model", "shadow"):
                name = getattr(stream, key)
                if name is not None and name not in models:
                    raise ValueError(f"streams.{i}.{key}: no model named {name!r} (models: {', '.join(models)})")
            if stream.shadow is not None and stream.shadow == (stream.model or self.default_model):
                raise ValueError(f"streams.{i}.shadow: {stream.shadow!r} is already the stream's model")
            for section, base in (("sampling", self.sampling), ("window", self.window), ("verdict", self.verdict)):
                overrides = getattr(stream, section)
                try:
                    type(base).model_validate({**base.model_dump(), **overrides})
                except ValidationError as e:
                    raise ValueError(f"streams.{i}.{section}.{_first_error(e)}") from None
        return self

    def stream_settings(self, stream: StreamConfig) -> tuple[SourceSettings, WindowPolicy, VerdictPolicy]:
        """A stream's effective settings: its own overrides over the sections' defaults. For WHIP streams
        `[whip] sample_fps` is the default rate (a stream's own `sampling.sample_fps` wins)."""
        sampling = self.sampling.model_dump()
        if kind_of(stream.url).name == "whip":
            sampling["sample_fps"] = self.whip.sample_fps
        return (SourceSettings.model_validate({**sampling, **stream.sampling}),
                WindowPolicy.model_validate({**self.window.model_dump(), **stream.window}),
                VerdictPolicy.model_validate({**self.verdict.model_dump(), **stream.verdict}))


def _first_error(error: ValidationError) -> str:
    """`key: message` of the first error (`key` dotted, as in the file)."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


PLACEHOLDER = "placeholder0secret"  # stands for a secret that is not on this host (check-config --other-host)


def _resolve(value: Any, path: str, missing: list[str] | None = None) -> Any:
    """Replace ${NAME} and ${credential:NAME} in every string. With `missing` (a list), a reference this host
    cannot resolve becomes PLACEHOLDER and `key: ${...}` is added to the list instead of raising."""
    if isinstance(value, dict):
        return {k: _resolve(v, f"{path}.{k}" if path else k, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, f"{path}.{i}", missing) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        try:
            return lookup(match)
        except ConfigError:
            if missing is None:
                raise
            missing.append(f"{path}: {match[0]}")
            return PLACEHOLDER

    def lookup(match: re.Match) -> str:
        kind, name = match.groups()
        if kind == "credential":
            folder = os.environ.get("CREDENTIALS_DIRECTORY")
            if not folder:
                raise ConfigError(f"{path}: ${{credential:{name}}} but $CREDENTIALS_DIRECTORY is not set "
                                  f"(use LoadCredential= in the systemd unit)")
            try:
                return (Path(folder) / name).read_text().strip()
            except OSError:
                raise ConfigError(f"{path}: credential {name!r} not found in $CREDENTIALS_DIRECTORY") from None
        if name not in os.environ:
            raise ConfigError(f"{path}: environment variable {name} is not set")
        return os.environ[name]

    return _REFERENCE.sub(replace, value)


def parse(data: dict, missing: list[str] | None = None) -> MonitorConfig:
    """Validate a config's data (ConfigError naming the key). With `missing`, secrets not on this host are
    replaced by placeholders and listed there (see `_resolve`)."""
    try:
        config = MonitorConfig.model_validate(_resolve(data, "", missing))
    except ValidationError as e:
        lines = []
        for err in e.errors():
            location = ".".join(str(part) for part in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key"
            # A section's own check names its key first ("tls_key: ..."): make it one dotted key.
            named = re.match(r"^([A-Za-z_][\w.]*): (.*)$", message, re.S)
            if location and named and not named[1].startswith(location.split(".")[0] + "."):
                location, message = f"{location}.{named[1]}", named[2]
            lines.append(f"{location}: {message}" if location else message)
        raise ConfigError(redact("; ".join(lines))) from None
    _remember_secrets(config.model_dump(mode="json"))
    return config


def _remember_secrets(value: Any, key: str = "") -> None:
    """Every secret of the config is hidden by `redact` wherever it shows up later, in whatever shape."""
    if isinstance(value, dict):
        for k, v in value.items():
            # stream_tokens: every value is a secret; headers: those whose name says so (Authorization, X-Api-Key)
            if key in SECRET_KEYS and (key != "headers" or _SECRET_HEADER.search(k)):
                remember_secret(v if isinstance(v, str) else None)
            _remember_secrets(v, k if key != "headers" else "")
    elif isinstance(value, list):
        for v in value:
            _remember_secrets(v, key)
    elif isinstance(value, str):
        if key in SECRET_KEYS:
            remember_secret(value)
        elif "://" in value:
            remember_secret(url_password(value))


def read_toml(path: str | Path) -> dict:
    """A TOML file as a dict; a missing or malformed file is a ConfigError naming it."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def load(path: str | Path, missing: list[str] | None = None) -> MonitorConfig:
    return parse(read_toml(path), missing)


def masked(config: MonitorConfig) -> dict:
    """The effective config with secrets and URL credentials masked, for printing."""

    def mask(value: Any, key: str = "") -> Any:
        if key in SECRET_KEYS and value:
            return {k: "***" for k in value} if isinstance(value, dict) else "***"
        if isinstance(value, dict):
            return {k: mask(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(v, key) for v in value]
        return redact(value) if isinstance(value, str) else value

    return mask(config.model_dump(mode="json"))


def parse_stream(running: MonitorConfig, data: dict) -> StreamConfig:
    """One stream definition (from the API or the cluster registry), checked against the running config's defaults
    and model names. Raises ConfigError with keys relative to the stream (`url: ...`, not `streams.0.url: ...`)."""
    if not isinstance(data, dict):
        raise ConfigError("the body must be a JSON object: {\"id\": ..., \"url\": ...}")
    try:
        base = running.model_dump(mode="json")
        base["cluster"]["enabled"] = False  # a cluster's file has no streams; this one is checked on its own
        return parse({**base, "streams": [data]}).streams[0]
    except ConfigError as e:
        raise ConfigError(str(e).replace("streams.0.", "")) from None
