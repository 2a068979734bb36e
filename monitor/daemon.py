"""`monitor run`: the daemon that joins sources, faces, the worker, scoring and alerts.

Ready only after the model is loaded and warmed up, Redis answered (or the spool is open) and the HTTP
server listens. SIGHUP reloads the config (validated first; streams added, removed or changed by diff);
SIGTERM/SIGINT stop sources, drain the worker, close open alerts, flush the spool and exit 0.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time

from aiohttp import web
from prometheus_client import CollectorRegistry

from . import config as config_module
from .alerts import AlertPublisher, ModelTag, PublisherMetrics, Spool
from .config import ConfigError, MonitorConfig, StreamConfig
from .faces.pipeline import FaceCropper
from .logs import get
from .metrics import DaemonMetrics, StreamCollector
from .notify import Notifier
from .pipeline import StreamPipeline
from .redact import redact
from .sources import SourceManager
from .webrtc import WebRtcSource, WhipEndpoint
from .worker import InferencePool, WorkerConfig, WorkerMetrics

log = get(__name__)
SHUTDOWN_BOUND_S = 20.0


class Daemon:
    def __init__(self, config: MonitorConfig, config_path: str | None = None):
        self.config, self.config_path = config, config_path
        self.registry = CollectorRegistry()
        self.metrics = DaemonMetrics(self.registry)
        self.registry.register(StreamCollector(self))
        self.notifier = Notifier()
        self.ready = False
        self.stopping = asyncio.Event()
        self.pipelines: dict[str, StreamPipeline] = {}
        self.stream_configs: dict[str, StreamConfig] = {}
        self.whip_sources: dict[str, WebRtcSource] = {}
        self.sources = SourceManager(self._on_frame)
        self.whip = WhipEndpoint(config.whip, on_session=self._on_whip_session, is_allowed=self._whip_allowed)
        self.pool: InferencePool | None = None
        self.publisher: AlertPublisher | None = None
        self.local_redis: subprocess.Popen | None = None
        self.http_port: int | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._checks = {"model": False, "redis_or_spool": False, "http": False}

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        if cfg.redis.start_local:
            self._start_local_redis()
        spool = Spool(cfg.alerts.spool_dir, cfg.alerts.spool_max_events)
        self.publisher = AlertPublisher(cfg.redis, spool, cfg.instance, PublisherMetrics(self.registry))
        await self.publisher.start()  # a wrong password is fatal; an outage is not (the spool holds events)
        self._checks["redis_or_spool"] = True
        self.pool = await self._load_worker()
        self._checks["model"] = True
        from .api import build_app, serve

        self._runner, self.http_port = await serve(build_app(self), cfg.http.host, cfg.http.port, access_log=None)
        self._checks["http"] = True
        for stream in cfg.streams:
            await self.add_stream(stream)
        self.ready = True
        log.info("ready", http=f"http://{cfg.http.host}:{self.http_port}", streams=len(cfg.streams),
                 model_id=self.pool.model_id, redis=redact(cfg.redis.url))
        self.notifier.send("READY=1", f"STATUS={self.summary()}")
        self._tasks.append(asyncio.create_task(self._watchdog(), name="watchdog"))

    async def _load_worker(self) -> InferencePool:
        from .model import Architecture, Detector
        from .model.hub import PUBLISHED, default_models_dir, native_name

        m, w = self.config.model, self.config.worker
        loop = asyncio.get_running_loop()
        path = m.path
        if path is None:
            path = next((str(p) for p in (default_models_dir() / native_name(r) for r in PUBLISHED) if p.is_file()), None)
        devices = [None if d == "auto" else d for d in m.devices]

        def load():
            if path is not None:
                return [Detector.load(path, device=d, precision=m.precision) for d in devices]
            if not m.allow_untrained:
                raise ConfigError("model.path: no checkpoint given and none pulled (`monitor model pull`); set "
                                  "model.allow_untrained = true to run the untrained demo network")
            arch = Architecture() if m.size == "L14" else Architecture(width=128, layers=2, mlp_width=512)
            log.warning("UNTRAINED MODEL: no checkpoint found; scores MEAN NOTHING and every alert is marked "
                        "untrained. Install the weights with `monitor model pull`.")
            return [Detector.untrained(arch, device=d, precision=m.precision) for d in devices]

        detectors = await loop.run_in_executor(None, load)
        self.model_tag = ModelTag(detectors[0].info.model_id, detectors[0].precision, detectors[0].info.untrained)
        self.face_template = detectors[0].info.face_template
        worker_config = WorkerConfig(max_batch=w.max_batch, max_wait_ms=w.max_wait_ms, staleness_ms=w.staleness_ms,
                                     queue_capacity=w.queue_capacity, buckets=tuple(w.buckets),
                                     cuda_graphs=w.cuda_graphs, compile=w.compile, cpu_threads=w.cpu_threads)
        if w.cpu_threads:
            import torch
            torch.set_num_threads(w.cpu_threads)
        pool = InferencePool(detectors, worker_config, WorkerMetrics(self.registry))
        await pool.start()  # warm-up: ready only after it
        return pool

    async def run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        await self.stopping.wait()
        await self.stop()

    async def stop(self) -> None:
        self.ready = False
        self.notifier.send("STOPPING=1", "STATUS=stopping")
        log.info("stopping")
        await self.sources.close()
        for source in list(self.whip_sources.values()):
            source.end("stopped", "the daemon is stopping")
        if self.pool is not None:
            await self.pool.stop(drain=True, timeout=SHUTDOWN_BOUND_S / 2)
        for pipeline in list(self.pipelines.values()):
            await pipeline.shutdown("shutdown")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.publisher is not None:
            delivered = await self.publisher.flush(SHUTDOWN_BOUND_S / 4)
            if not delivered:
                log.warning("Redis unreachable at shutdown: undelivered alert events stay in the spool",
                            spool=self.config.alerts.spool_dir, events=len(self.publisher.spool))
            await self.publisher.close(flush_timeout=0)
        if self.local_redis is not None:
            self.local_redis.terminate()
            self.local_redis.wait(timeout=10)
        log.info("stopped")

    # --- streams -----------------------------------------------------------------------------------------

    def validate_stream(self, data: dict) -> StreamConfig:
        """A stream definition, checked against the running config's defaults."""
        return config_module.parse({**self.config.model_dump(mode="json"), "streams": [data]}).streams[0]

    def has_stream(self, stream_id: str) -> bool:
        return stream_id in self.stream_configs

    async def add_stream(self, stream: StreamConfig) -> None:
        sampling, window, policy = self.config.stream_settings(stream)
        self.stream_configs[stream.id] = stream
        self.pipelines[stream.id] = StreamPipeline(
            stream.id, FaceCropper(self.config.faces, template=self.face_template), self.pool, self.publisher,
            window, policy, self.model_tag, self.config.instance, self.config.alerts.update_interval_s,
            self.metrics)
        if stream.url != "whip":
            await self.sources.add(stream.id, stream.url, sampling)
        log.info("stream added", stream_id=stream.id, url=redact(stream.url))

    async def remove_stream(self, stream_id: str) -> None:
        self.stream_configs.pop(stream_id, None)
        if stream_id in self.sources.sources:
            await self.sources.remove(stream_id)
        if (source := self.whip_sources.pop(stream_id, None)) is not None:
            source.end("stopped", "stream removed")
        pipeline = self.pipelines.pop(stream_id, None)
        if pipeline is not None:
            await pipeline.shutdown("stream_ended")
        log.info("stream removed", stream_id=stream_id)

    async def reload(self) -> None:
        """SIGHUP: validate the file first; on success apply the stream diff, else keep running as is."""
        try:
            new = config_module.load(self.config_path)
        except ConfigError as e:
            log.error("config reload rejected; the running config stays", error=str(e))
            return
        old = {s.id: s for s in self.config.streams}
        wanted = {s.id: s for s in new.streams}
        for stream_id in [i for i in old if i not in wanted or wanted[i] != old[i]]:
            if self.has_stream(stream_id):
                await self.remove_stream(stream_id)
        self.config = self.config.model_copy(update={"streams": new.streams})
        for stream_id, stream in wanted.items():
            if not self.has_stream(stream_id):
                await self.add_stream(stream)
        log.info("config reloaded", streams=sorted(wanted))
        self.notifier.send(f"STATUS={self.summary()}")

    def _whip_allowed(self, stream_id: str) -> bool:
        stream = self.stream_configs.get(stream_id)
        return stream is not None and stream.url == "whip"

    def _on_whip_session(self, source: WebRtcSource) -> None:
        self.whip_sources[source.stream_id] = source
        self._tasks.append(asyncio.create_task(self._pump_whip(source), name=f"whip-{source.stream_id}"))

    async def _pump_whip(self, source: WebRtcSource) -> None:
        async for frame in source.frames():
            await self._on_frame(frame)
        pipeline = self.pipelines.get(source.stream_id)
        if pipeline is not None and self.whip_sources.get(source.stream_id) is source:
            await pipeline.close("stream_ended")

    async def _on_frame(self, frame) -> None:
        pipeline = self.pipelines.get(frame.stream_id)
        if pipeline is not None:
            await pipeline.handle(frame)

    # --- status ------------------------------------------------------------------------------------------

    def stream_status(self, stream_id: str) -> dict | None:
        stream = self.stream_configs.get(stream_id)
        if stream is None:
            return None
        if stream_id in self.sources.sources:
            source_status = self.sources.sources[stream_id].status()
        elif stream_id in self.whip_sources:
            source_status = self.whip_sources[stream_id].status()
        else:
            source_status = {"id": stream_id, "url": stream.url, "state": "waiting_for_publisher"}
        return {**source_status, **self.pipelines[stream_id].status()}

    def stream_statuses(self) -> list[dict]:
        return [self.stream_status(s) for s in list(self.stream_configs)]

    def readiness(self) -> dict:
        return dict(self._checks)

    def healthy(self) -> tuple[bool, str]:
        if self.pool is not None and self.pool.stalled(self.config.worker.watchdog_s):
            return False, f"worker made no progress for {self.config.worker.watchdog_s:.0f} s with work waiting"
        return True, ""

    def gpu_memory(self) -> dict:
        if self.pool is None:
            return {}
        import torch

        return {str(r.detector.device): torch.cuda.memory_allocated(r.detector.device)
                for r in self.pool.runners if r.detector.device.type == "cuda"}

    def summary(self) -> str:
        statuses = self.stream_statuses()
        running = sum(1 for s in statuses if s.get("state") == "running")
        alerting = sum(1 for s in statuses if s.get("verdict") in ("suspicious", "manipulated"))
        spooled = len(self.publisher.spool) if self.publisher else 0
        return f"{running}/{len(statuses)} streams running, {alerting} alerting, {spooled} events spooled"

    async def _watchdog(self) -> None:
        """WATCHDOG=1 only while real progress happens: the loop turns (we are here) and the worker is not
        stalled with work waiting."""
        interval = (self.notifier.watchdog_s or 10.0) / 2
        while True:
            healthy, reason = self.healthy()
            if healthy:
                self.notifier.send("WATCHDOG=1", f"STATUS={self.summary()}")
            else:
                log.error("watchdog: not healthy, withholding WATCHDOG=1", reason=reason)
                self.notifier.send(f"STATUS=unhealthy: {reason}")
            await asyncio.sleep(interval)

    def _start_local_redis(self) -> None:
        from urllib.parse import urlparse

        url = urlparse(self.config.redis.url)
        if shutil.which("redis-server") is None:
            raise ConfigError("redis.start_local: redis-server is not installed (apt-get install redis-server)")
        if url.hostname not in ("127.0.0.1", "localhost"):
            raise ConfigError("redis.start_local: only for a redis URL on 127.0.0.1")
        port = url.port or 6379
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if shutil.which("setpriv"):  # util-linux: the server dies with us even if we are killed outright
            command = ["setpriv", "--pdeathsig", "TERM", "--", *command]
        # Its own process group: a Ctrl-C in the terminal reaches the daemon only, which publishes its
        # `closed` events to this server before stopping it (it would otherwise die first, with them unsent).
        self.local_redis = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            process_group=0)
        import socket

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                log.info("started a local redis-server for this run", port=port)
                return
            except OSError:
                if self.local_redis.poll() is not None:
                    raise ConfigError(f"redis.start_local: redis-server could not start on port {port} "
                                      f"(already in use?)")
                time.sleep(0.05)


async def run(config: MonitorConfig, config_path: str | None) -> int:
    import faulthandler

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` dumps every thread's stack
    daemon = Daemon(config, config_path)
    try:
        await daemon.start()
    except ConfigError:
        await _stop_quietly(daemon)
        raise
    except BaseException:
        await _stop_quietly(daemon)
        raise
    print(f"monitor: watching {len(config.streams)} stream(s); HTTP on http://{config.http.host}:{daemon.http_port}; "
          f"alerts: monitor subscribe --redis {redact(config.redis.url)} --prefix {config.redis.prefix}", flush=True)
    await daemon.run_until_stopped()
    return 0


async def _stop_quietly(daemon: Daemon) -> None:
    try:
        await asyncio.wait_for(daemon.stop(), SHUTDOWN_BOUND_S)
    except Exception:
        pass


__all__ = ["Daemon", "run"]
