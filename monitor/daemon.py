"""`monitor run`: builds the components, starts them in order and stops them in reverse. Nothing else.

Start: a local redis-server (demo) -> the alert spool and publisher -> the model, warmed up in the inference
pool -> the stream supervisor -> the HTTP server (API, WHIP) -> the configured streams -> ready (READY=1) and
the watchdog. Stop (SIGTERM/SIGINT): sources -> the worker drains -> open alerts close -> HTTP -> the spool
flushes to Redis -> the local redis-server. SIGHUP: `reload`.
"""

from __future__ import annotations

import asyncio
import signal
import socket

from prometheus_client import CollectorRegistry

from . import config as config_module
from . import tls
from .alerts import AlertPublisher, PublisherMetrics, Spool
from .alerts.sinks import build_sinks
from .alerts.spool import SpoolBusy
from .alerts.store import AlertStore
from .config import MonitorConfig, StreamConfig
from .errors import ConfigError, MonitorError, RuntimeFailure
from .health import Health, Watchdog
from .local_redis import LocalRedis
from .logs import configure, get, log_thread_stacks
from .metrics import DaemonMetrics, LoopCollector, StreamCollector
from .notify import Notifier
from .preflight import preflight
from .redact import redact
from .reload import plan_reload
from .sources.whip import WhipEndpoint
from .supervisor import FILE, StreamSupervisor
from .tasks import TaskSupervisor, background
from .worker.loader import LoadedModel, load_models

log = get(__name__)
SHUTDOWN_BOUND_S = 20.0
STATE_REFRESH_S = 2.0


class Daemon:
    def __init__(self, config: MonitorConfig, config_path: str | None = None):
        self.config, self.config_path = config, config_path
        self.registry = CollectorRegistry()
        self.metrics = DaemonMetrics(self.registry)
        self.health = Health(config.worker.watchdog_s)
        self.watchdog = Watchdog(self.health, Notifier())
        self.tasks = TaskSupervisor(on_fatal=self._fatal)
        self.local_redis = LocalRedis(config.redis.url) if config.redis.start_local else None
        self.publisher: AlertPublisher | None = None
        self.store = AlertStore(config.redis)  # alerts and evidence read back, for the API and the console
        self.models: dict[str, LoadedModel] = {}  # by name; the first is the default
        self.supervisor: StreamSupervisor | None = None
        self.cluster = None  # the ClusterCoordinator, in cluster mode
        self.whip: WhipEndpoint | None = None
        self.http_runner = self.plain_runner = None
        self.http_port: int | None = None
        self.url = ""
        self.stopping = asyncio.Event()
        self.failure: MonitorError | None = None
        self._reload_when_ready = False
        self.registry.register(LoopCollector())
        self.registry.register(StreamCollector(
            lambda: self.supervisor.statuses() if self.supervisor else [],
            lambda: {device: used for m in self.models.values() for device, used in m.pool.gpu_memory().items()}))

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        if self.local_redis is not None:
            self.local_redis.start()
        sinks = build_sinks(cfg.sinks)
        self.publisher = AlertPublisher(cfg.redis, open_spool(cfg, ["redis", *(s.name for s in sinks)]), cfg.instance,
                                        PublisherMetrics(self.registry), sinks)
        self.publisher.redis.record_maxlen = cfg.record.maxlen
        self.health.publisher = self.publisher
        # A wrong password is fatal; an outage is not (the spool holds events). Alerts a killed run left open close.
        await self.publisher.start(close_left_open=not cfg.cluster.enabled)
        self.health.passed("redis_or_spool")
        self.models = await load_models(cfg, self.registry)
        self.health.pools = [m.pool for m in self.models.values()]
        self.health.passed("model")
        self.supervisor = StreamSupervisor(cfg, self.models, self.publisher, self.metrics)
        self.health.supervisor = self.supervisor
        self.whip = WhipEndpoint(cfg.whip, resolve=self.supervisor.whip_source, status=self.supervisor.status)
        await self._serve_http()
        self.health.passed("http")
        if cfg.cluster.enabled:
            from .cluster.coordinator import ClusterCoordinator

            self.cluster = ClusterCoordinator(cfg, self.supervisor, self.publisher, self.validate_stream, self.registry,
                                              self.public_url())
            self.whip.route = self.cluster.route_whip
            await self.cluster.start()
        else:
            await self.supervisor.apply({s.id: s for s in cfg.streams}, FILE)
        self.health.ready = True
        log.info("ready", http=self.url, streams=len(self.supervisor.handles), cluster=cfg.cluster.enabled,
                 models={name: m.tag.model_id for name, m in self.models.items()}, redis=redact(cfg.redis.url))
        self.watchdog.ready()
        self.tasks.spawn("watchdog", self.watchdog.run)
        self.tasks.spawn("stream-states", self._refresh_states)
        if self._reload_when_ready:
            background(self.reload(), "reload")

    async def _serve_http(self) -> None:
        """The HTTP server (HTTPS when `[http]` says so), and the plain loopback listener for scrapers."""
        from .api import build_app, build_plain_app, serve

        http = self.config.http
        api = self.api_context()
        certificate = tls_certificate(http)
        context = tls.server_context(certificate) if certificate is not None else None
        if certificate is None and not tls.is_loopback(http.host):
            log.warning("plain HTTP on a non-loopback address: tokens and faces travel in clear text (http.tls = "
                        "\"off\")", host=http.host)
        try:
            self.http_runner, self.http_port = await serve(build_app(api), http.host, http.port,
                                                           access_log=None,
                                                           ssl_context=context)
        except OSError as e:
            raise ConfigError(f"http.port: cannot listen on {http.host}:{http.port}: {e.strerror or e}") from None
        scheme = "https" if context else "http"
        self.url = f"{scheme}://{http.host}:{self.http_port}"
        self.health.listeners = [{"url": self.url, "serves": "everything", "tls": bool(context)}]
        if certificate is not None:
            log.info("serving HTTPS", url=self.url, sha256=certificate.fingerprint, spki_sha256=certificate.spki_sha256,
                     self_signed=certificate.self_signed, expires=f"{certificate.not_after:%Y-%m-%d}")
            if certificate.days_left < tls.RENEW_BEFORE.days:
                log.warning("the TLS certificate expires soon", days_left=round(certificate.days_left, 1))
        if http.plain_metrics:
            host, _, port = http.plain_metrics.rpartition(":")
            try:
                self.plain_runner, plain_port = await serve(build_plain_app(api), host.strip("[]"),
                                                            int(port),
                                                            access_log=None)
            except OSError as e:
                raise ConfigError(f"http.plain_metrics: cannot listen on {http.plain_metrics}: "
                                  f"{e.strerror or e}") from None
            self.health.listeners.append({"url": f"http://{host}:{plain_port}", "serves": "healthz, readyz, metrics",
                                          "tls": False})

    def api_context(self):
        """What the HTTP app may use. In cluster mode streams change through the fleet's registry."""
        from .api import ApiContext
        from .control import ClusterStreams, LocalStreams

        if self.config.cluster.enabled:
            streams = ClusterStreams(self.supervisor, self.validate_stream,
                                     lambda: self.cluster.registry if self.cluster is not None else None)
        else:
            streams = LocalStreams(self.supervisor, self.validate_stream)
        return ApiContext(config=lambda: self.config, health=self.health, registry=self.registry, streams=streams,
                          store=self.store, whip=self.whip, stopping=self.stopping,
                          cluster_view=self._cluster_view if self.config.cluster.enabled else None)

    async def _cluster_view(self) -> dict:
        from .cluster.status import cluster_view

        return await cluster_view(self.cluster, self.config)

    def handle_signals(self) -> None:
        """SIGTERM/SIGINT stop (also during start: the stop follows once started), SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)

    def _reload_soon(self) -> None:
        if self.health.ready:
            background(self.reload(), "reload")
        else:  # during the start a reload would race it: it runs once the daemon is ready
            self._reload_when_ready = True

    async def run_until_stopped(self) -> None:
        await self.stopping.wait()
        await self.stop()
        if self.failure is not None:
            raise self.failure

    def public_url(self) -> str:
        """How publishers and other daemons reach this one ([cluster] public_url, else this server's URL)."""
        if self.config.cluster.public_url:
            return self.config.cluster.public_url.rstrip("/")
        host = self.config.http.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.getfqdn()
        return f"{self.url.split('://')[0]}://{host}:{self.http_port}"

    async def stop(self) -> None:
        self.health.ready = False
        self.watchdog.notifier.send("STOPPING=1", "STATUS=stopping")
        log.info("stopping")
        await self.tasks.close()
        if self.cluster is not None:
            await self.handoff()
        if self.supervisor is not None:
            await self.supervisor.stop_sources()
        # Queued crops are scored for at most worker.drain_s (by each device's measured time per crop).
        drain_s = min(self.config.worker.drain_s, SHUTDOWN_BOUND_S / 2)
        await asyncio.gather(*(m.pool.stop(drain=True, timeout=drain_s) for m in self.models.values()))
        if self.supervisor is not None:
            await self.supervisor.close("shutdown")
        for runner in (self.http_runner, self.plain_runner):
            if runner is not None:
                await runner.cleanup()
        if self.publisher is not None:
            if not await self.publisher.flush(SHUTDOWN_BOUND_S / 4):
                pending = {s.name: self.publisher.spool.pending(s.name) for s in self.publisher.sinks}
                log.warning("undelivered alert events stay in the spool for the next start",
                            spool=self.config.alerts.spool_dir, pending={k: v for k, v in pending.items() if v})
            await self.publisher.close(flush_timeout=0)
        await self.store.close()
        if self.local_redis is not None:
            self.local_redis.stop()
        log.info("stopped")

    async def handoff(self) -> None:
        """Cluster mode: hand the streams over fast. No more claims or frames; open alerts close with `handoff`
        (queued crops are not waited for) and are delivered; then every lease goes at once, so the other daemons
        take the streams within moments."""
        await self.cluster.stop()
        await self.supervisor.close_alerts("handoff")
        await self.publisher.flush(SHUTDOWN_BOUND_S / 4)
        await self.cluster.release_all()  # the sources and the worker stop afterwards, as in any stop

    def _fatal(self, task: str, error: BaseException | None) -> None:
        reason = f"{type(error).__name__}: {error}" if error else "it ended"
        self.failure = RuntimeFailure(redact(f"task {task} failed: {reason}"))
        self.stopping.set()

    async def _refresh_states(self) -> None:
        while True:
            self.supervisor.refresh_states()
            await asyncio.sleep(STATE_REFRESH_S)

    # --- streams -----------------------------------------------------------------------------------------

    def validate_stream(self, data: dict) -> StreamConfig:
        """A stream definition, checked against the running config's defaults (raises ConfigError)."""
        return config_module.parse_stream(self.config, data)

    # --- reload ------------------------------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: validate the file first (an invalid one changes nothing), then apply everything that can
        change at run time; what needs a restart keeps its running value and is named in the log and STATUS=."""
        try:
            new = config_module.load(self.config_path)
        except ConfigError as e:
            log.error("config reload rejected; the running config stays", error=str(e))
            return
        plan = plan_reload(self.config, new)
        running = plan.running
        for change in plan.applied:
            log.info("config changed", key=change.key, old=change.old, new=change.new)
        for change in plan.changes:
            if change.needs_restart:
                log.warning("config changed; takes effect after a restart", key=change.key, old=change.old,
                            new=change.new)
        old, self.config = self.config, running
        if running.logging != old.logging:
            configure(running.logging.level, running.logging.format)
        self.whip.update(running.whip)
        self.publisher.spool.max_events = running.alerts.spool_max_events
        self.publisher.redis.record_maxlen = running.record.maxlen
        await self.supervisor.reconfigure(running)
        outcome = await self.supervisor.apply({s.id: s for s in running.streams}, FILE)
        changed = {k: v for k, v in outcome.items() if v != "unchanged"}
        self.health.pending_restart = sorted(set(self.health.pending_restart) | set(plan.needs_restart))
        log.info("config reloaded", changes=len(plan.changes), streams=changed,
                 restart_needed=self.health.pending_restart or None)
        self.watchdog.status()


def tls_certificate(http) -> tls.Certificate | None:
    """The certificate the server uses, or None for plain HTTP (ConfigError naming the key if unusable)."""
    if not tls.wants_tls(http):
        return None
    if http.tls_cert:
        return tls.load(http.tls_cert, http.tls_key)
    return tls.ensure_self_signed(http.tls_dir, http.host)


def open_spool(config: MonitorConfig, sinks: list[str]) -> Spool:
    try:
        return Spool(config.alerts.spool_dir, config.alerts.spool_max_events, sinks)
    except SpoolBusy as e:
        raise ConfigError(f"alerts.spool_dir: {e}") from None
    except OSError as e:
        raise ConfigError(f"alerts.spool_dir: cannot use {config.alerts.spool_dir}: {e.strerror or e}") from None


async def run(config: MonitorConfig, config_path: str | None) -> int:
    signal.signal(signal.SIGUSR1, log_thread_stacks)  # `kill -USR1`: every thread's stack, in the log
    preflight(config)
    daemon = Daemon(config, config_path)
    daemon.handle_signals()
    try:
        await daemon.start()
    except BaseException:
        await _stop_after_failed_start(daemon)
        raise
    print(f"monitor: watching {len(config.streams)} stream(s); console {daemon.url}/ ; "
          f"alerts: monitor subscribe --redis {redact(config.redis.url)} --prefix {config.redis.prefix}", flush=True)
    await daemon.run_until_stopped()
    return 0


async def _stop_after_failed_start(daemon: Daemon) -> None:
    """Undo a partial start; its own failure is logged, the start failure is what the caller reports."""
    try:
        await asyncio.wait_for(daemon.stop(), SHUTDOWN_BOUND_S)
    except Exception as e:
        log.warning("cleanup after a failed start failed", error=redact(f"{type(e).__name__}: {e}"))


__all__ = ["Daemon", "run"]
