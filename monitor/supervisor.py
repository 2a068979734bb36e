"""The one owner of the running streams (as Frigate's camera maintainer owns its cameras).

Every stream is a `StreamHandle`: its config and where that came from (the config file, the HTTP API, later
the cluster), its source, its pipeline, and the task that pumps frames from one to the other. Whoever wants
streams changed calls `apply(desired, origin)` with the full set it wants for its origin, or `add`/`remove`
for one stream; the supervisor works out the difference. A reload of the file therefore never touches a
stream that came from the API.

What a change costs: a new URL restarts the stream (its open alerts close with `stream_ended`); new
sampling restarts only its reader (a WHIP stream's rate changes in place, keeping the publisher); new
windows, thresholds or face settings apply to the running pipeline (open alerts stay open).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from .config import MonitorConfig, StreamConfig
from .contracts import SessionEnded
from .errors import ConfigError, StreamExists
from .faces.pipeline import FaceCropper
from .logs import get
from .pipeline import StreamPipeline
from .redact import redact
from .scoring import VerdictPolicy, WindowPolicy
from .scoring.drift import DriftTracker
from .sources import ERROR, Source, SourceSettings, create_source, kind_of
from .sources.registry import SourceOptions
from .tasks import Backoff, background

log = get(__name__)

FILE, API = "file", "api"  # where a stream's definition came from


@dataclass(frozen=True)
class StreamPlan:
    """A stream's effective settings: its own overrides over the config's sections."""

    config: StreamConfig
    sampling: SourceSettings
    window: WindowPolicy
    verdict: VerdictPolicy

    @classmethod
    def of(cls, stream: StreamConfig, config: MonitorConfig) -> "StreamPlan":
        return cls(stream, *config.stream_settings(stream))


class StreamHandle:
    def __init__(self, plan: StreamPlan, origin: str, source: Source, pipeline: StreamPipeline):
        self.plan, self.origin, self.source, self.pipeline = plan, origin, source, pipeline
        self.task: asyncio.Task | None = None
        self.failure: tuple[str, str] | None = None  # the pump failed: (reason, detail) until it restarts
        self.backoff = Backoff()  # the pump's restarts, carried over to the stream's next handle
        self.started_at = time.monotonic()

    @property
    def stream_id(self) -> str:
        return self.plan.config.id

    def source_status(self) -> dict:
        status = self.source.status()
        if self.failure is not None:
            status.update(state=ERROR, reason=self.failure[0], detail=self.failure[1], connection_quality="down")
        return status

    def status(self) -> dict:
        return {**self.source_status(), **self.pipeline.status(), "origin": self.origin}


class StreamSupervisor:
    def __init__(self, config: MonitorConfig, models, publisher, metrics):
        """`models`: the loaded models by name (pool, tag, face template; the first is the default), or one
        loaded model; `metrics`: the daemon's metrics."""
        if not isinstance(models, dict):
            models = {models.name: models}
        self.config, self.models, self.publisher, self.metrics = config, models, publisher, metrics
        self.handles: dict[str, StreamHandle] = {}
        self._lock = asyncio.Lock()  # one change at a time: the file, the API and the cluster may race
        self._restarts: dict[str, asyncio.TimerHandle] = {}
        self._closing = False

    # --- what runs -----------------------------------------------------------------------------------------

    def __contains__(self, stream_id: str) -> bool:
        return stream_id in self.handles

    def ids(self) -> list[str]:
        return list(self.handles)

    def status(self, stream_id: str) -> dict | None:
        handle = self.handles.get(stream_id)
        return None if handle is None else handle.status()

    def statuses(self) -> list[dict]:
        return [handle.status() for handle in list(self.handles.values())]

    def whip_source(self, stream_id: str):
        """The WHIP endpoint's way in: the source of a stream publishers push to, or None."""
        handle = self.handles.get(stream_id)
        return handle.source if handle is not None and kind_of(handle.plan.config.url).pushed else None

    # --- changes -------------------------------------------------------------------------------------------

    async def apply(self, desired: dict[str, StreamConfig], origin: str) -> dict[str, str]:
        """Make the streams of `origin` exactly `desired`: add, remove and change by difference. A stream of
        another origin with the same id is taken over. Returns what happened to each id."""
        async with self._lock:
            outcome = {}
            for stream_id in [i for i, h in self.handles.items() if h.origin == origin and i not in desired]:
                await self._remove(stream_id, "stream_ended")
                outcome[stream_id] = "removed"
            for stream_id, stream in desired.items():
                handle = self.handles.get(stream_id)
                try:
                    if handle is None:
                        await self._add(StreamPlan.of(stream, self.config), origin)
                        outcome[stream_id] = "added"
                    else:
                        if handle.origin != origin:
                            log.warning("stream taken over", stream_id=stream_id, was=handle.origin, now=origin)
                            handle.origin = origin
                        outcome[stream_id] = await self._change(handle, StreamPlan.of(stream, self.config))
                except ConfigError as e:  # e.g. a model the file added since the start: the others go on
                    log.error("stream not applied", stream_id=stream_id, error=str(e))
                    outcome[stream_id] = "error"
            return outcome

    async def add(self, stream: StreamConfig, origin: str = API) -> None:
        async with self._lock:
            if stream.id in self.handles:
                raise StreamExists(f"stream {stream.id!r} already exists")
            await self._add(StreamPlan.of(stream, self.config), origin)

    async def change(self, stream: StreamConfig) -> str:
        """New settings for a running stream (a cluster registry edit): applied as a reload would."""
        async with self._lock:
            handle = self.handles.get(stream.id)
            if handle is None:
                return "absent"
            return await self._change(handle, StreamPlan.of(stream, self.config))

    async def remove(self, stream_id: str, reason: str = "stream_ended") -> bool:
        async with self._lock:
            if stream_id not in self.handles:
                return False
            await self._remove(stream_id, reason)
            return True

    async def reconfigure(self, config: MonitorConfig) -> dict[str, str]:
        """New sections (a reload): every stream's effective settings are worked out again and applied."""
        async with self._lock:
            faces_changed = (config.faces, config.quality) != (self.config.faces, self.config.quality)
            self.config = config
            outcome = {}
            for handle in list(self.handles.values()):
                result = await self._change(handle, StreamPlan.of(handle.plan.config, config))
                if faces_changed:
                    await handle.pipeline.update_faces(config.faces, config.quality)
                    result = "updated" if result == "unchanged" else result
                outcome[handle.stream_id] = result
            return outcome

    async def _change(self, handle: StreamHandle, plan: StreamPlan) -> str:
        old = handle.plan
        if (plan.config.url, plan.config.token) != (old.config.url, old.config.token):
            origin = handle.origin
            await self._remove(handle.stream_id, "stream_ended")
            await self._add(plan, origin)
            return "restarted"
        if (plan.config.model, plan.config.shadow) != (old.config.model, old.config.shadow):
            self._models_of(plan)  # a model that is not loaded: the stream stays as it was
            origin = handle.origin
            await self._remove(handle.stream_id, "stream_ended")
            await self._add(plan, origin)
            return "restarted"
        handle.plan = plan
        result = "unchanged"
        if (plan.window, plan.verdict) != (old.window, old.verdict) or self._interval_changed(handle):
            handle.pipeline.reconfigure(plan.window, plan.verdict, self.config.alerts.update_interval_s)
            result = "updated"
        if self._update_outputs(handle, plan):
            result = "updated" if result == "unchanged" else result
        if plan.sampling != old.sampling:
            if handle.source.update_sampling(plan.sampling):  # in place: a publisher's session is kept
                result = "updated"
            else:
                await self._restart_source(handle)
                result = "restarted_reader"
        return result

    def _update_outputs(self, handle: StreamHandle, plan: StreamPlan) -> bool:
        """[evidence], [record] and [drift] after a reload; the drift watch keeps the hours it counted. True when
        recording or the drift watch changed."""
        pipeline = handle.pipeline
        record = self.config.record.enabled and plan.config.record
        old, baseline = pipeline.drift, self._drift_baseline(plan)
        same = baseline is None if old is None else (old.baseline, old.settings) == (baseline, self.config.drift)
        drift = old
        if not same:
            drift = None if baseline is None else DriftTracker(plan.config.id, baseline, self.config.drift,
                                                               self.config.instance)
            if drift is not None and old is not None:
                drift.load(old.hours)
        changed = record != pipeline.record or not same
        pipeline.reconfigure_outputs(self.config.evidence, record, drift)
        return changed

    def _drift_baseline(self, plan: StreamPlan) -> float | None:
        settings = self.config.drift
        if not settings.enabled:
            return None
        return plan.config.drift_baseline if plan.config.drift_baseline is not None else settings.baseline

    def _interval_changed(self, handle: StreamHandle) -> bool:
        return handle.pipeline.update_interval_s != self.config.alerts.update_interval_s

    # --- one stream ------------------------------------------------------------------------------------------

    def _models_of(self, plan: StreamPlan):
        """The stream's model and shadow (or None), loaded; a name that is not (a model added to the file
        needs a restart) is a ConfigError naming the key."""
        name = plan.config.model or next(iter(self.models))
        for key, wanted in (("model", name), ("shadow", plan.config.shadow)):
            if wanted is not None and wanted not in self.models:
                raise ConfigError(f"streams.{plan.config.id}.{key}: no model named {wanted!r} is loaded "
                                  f"(loaded: {', '.join(self.models)}; models added to the file need a restart)")
        return self.models[name], self.models.get(plan.config.shadow) if plan.config.shadow else None

    async def _add(self, plan: StreamPlan, origin: str) -> StreamHandle:
        stream_id = plan.config.id
        model, shadow = self._models_of(plan)
        # Built off the loop: loading the face detector takes a second or two on a cold start, and the loop has
        # leases to renew, frames to move and requests to answer meanwhile.
        cropper = await asyncio.to_thread(FaceCropper, self.config.faces, template=model.face_template,
                                          quality=self.config.quality,
                                          shadow_template=shadow.face_template if shadow else None)
        pipeline = StreamPipeline(
            stream_id, cropper, model.pool, self.publisher, plan.window, plan.verdict, model.tag, self.config.instance,
            self.config.alerts.update_interval_s, self.metrics, evidence=self.config.evidence,
            record=self.config.record.enabled and plan.config.record, drift=await self._drift(plan), shadow=shadow)
        handle = StreamHandle(plan, origin, self._source(plan), pipeline)
        pipeline.on_state = lambda state, force, handle=handle: self._write_state(handle, state)
        self.handles[stream_id] = handle
        log.info("stream added", stream_id=stream_id, url=redact(plan.config.url), origin=origin, model=model.name,
                 shadow=shadow.name if shadow else None)  # before it starts: its first failure comes after
        self._start(handle)
        return handle

    async def _drift(self, plan: StreamPlan) -> DriftTracker | None:
        """The stream's drift watch, with the hours recorded before a restart, when [drift] is on and the stream
        has a baseline."""
        baseline = self._drift_baseline(plan)
        if baseline is None:
            return None
        tracker = DriftTracker(plan.config.id, baseline, self.config.drift, self.config.instance)
        tracker.load(await self.publisher.load_drift(plan.config.id, self.config.drift.window_h))
        return tracker

    def _source(self, plan: StreamPlan) -> Source:
        options = SourceOptions(token=plan.config.token, ice_servers=tuple(self.config.whip.ice_servers))
        return create_source(plan.config.id, plan.config.url, plan.sampling, options)

    def _start(self, handle: StreamHandle) -> None:
        handle.source.start()
        handle.task = asyncio.create_task(self._pump(handle), name=f"pump-{handle.stream_id}")

    async def _stop_pump_and_source(self, handle: StreamHandle) -> None:
        if handle.task is not None:
            handle.task.cancel()
            await asyncio.gather(handle.task, return_exceptions=True)
        await handle.source.stop()

    async def _restart_source(self, handle: StreamHandle) -> None:
        await self._stop_pump_and_source(handle)
        handle.source = self._source(handle.plan)
        handle.failure = None
        self._start(handle)
        log.info("stream reader restarted with new sampling", stream_id=handle.stream_id)

    async def _remove(self, stream_id: str, reason: str) -> None:
        handle = self.handles.pop(stream_id)
        timer = self._restarts.pop(stream_id, None)
        if timer is not None:
            timer.cancel()
        await self._stop_pump_and_source(handle)
        await handle.pipeline.shutdown(reason)
        self._write_state(handle, handle.pipeline.state())
        log.info("stream removed", stream_id=stream_id, reason=reason)

    async def _pump(self, handle: StreamHandle) -> None:
        """Frames from the source into the pipeline. A failure here is logged with the stream id and shows the
        stream in `error` (reason `internal`) while the other streams run on; the stream starts again later."""
        try:
            async for item in handle.source.frames():
                if isinstance(item, SessionEnded):
                    await handle.pipeline.close("stream_ended")  # the publisher left: its tracks end
                else:
                    await handle.pipeline.handle(item)
            if not self._closing:  # the source finished for good (a file's end, a fatal error)
                await handle.pipeline.close("stream_ended")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            handle.failure = ("internal", redact(f"{type(e).__name__}: {e}"))
            log.error("frame pump failed", stream_id=handle.stream_id, error=handle.failure[1], exc_info=e)
            await handle.pipeline.close("stream_error")
            self._write_state(handle, handle.pipeline.state())
            if not self._closing:
                self._schedule_restart(handle)

    def _schedule_restart(self, handle: StreamHandle) -> None:
        delay = handle.backoff.next_delay(time.monotonic() - handle.started_at)
        log.warning("stream will restart", stream_id=handle.stream_id, in_s=delay)
        self._restarts[handle.stream_id] = asyncio.get_running_loop().call_later(
            delay, lambda: background(self._restart_failed(handle), f"restart-{handle.stream_id}",
                                      stream_id=handle.stream_id))

    async def _restart_failed(self, handle: StreamHandle) -> None:
        async with self._lock:
            self._restarts.pop(handle.stream_id, None)
            if self._closing or self.handles.get(handle.stream_id) is not handle:
                return  # removed or replaced meanwhile
            await self._remove(handle.stream_id, "stream_error")
            new = await self._add(handle.plan, handle.origin)
            new.backoff = handle.backoff

    # --- state in Redis --------------------------------------------------------------------------------------

    def _write_state(self, handle: StreamHandle, pipeline_state: dict) -> None:
        source = handle.source_status()
        self.publisher.set_stream_state(handle.stream_id, {
            **pipeline_state, "state": source["state"], "reason": source.get("reason"), "fps": source["fps"],
            "connection_quality": source["connection_quality"], "origin": handle.origin, "updated_at": time.time()})

    def refresh_states(self) -> None:
        """Write every stream's state hash (also those without frames: a stream in error says so)."""
        for handle in list(self.handles.values()):
            self._write_state(handle, handle.pipeline.state())

    # --- stopping --------------------------------------------------------------------------------------------

    async def stop_sources(self) -> None:
        """First step of a shutdown: no more frames (the worker then drains what is queued)."""
        self._closing = True
        for timer in self._restarts.values():
            timer.cancel()
        self._restarts.clear()
        await asyncio.gather(*(self._stop_pump_and_source(h) for h in list(self.handles.values())),
                             return_exceptions=True)

    async def close_alerts(self, reason: str) -> None:
        """A handoff's first step: every pipeline stops taking frames and closes its open alerts with `reason`
        now; sources and detectors are released later by `stop_sources` and `close`."""
        for handle in list(self.handles.values()):
            handle.pipeline.stop_taking_frames()
            await handle.pipeline.close(reason)
            self._write_state(handle, handle.pipeline.state())

    async def close(self, reason: str = "shutdown") -> None:
        """Last step: every open alert closes with `reason`, every face detector is released."""
        self._closing = True
        for handle in list(self.handles.values()):
            await handle.pipeline.shutdown(reason)
            self._write_state(handle, handle.pipeline.state())
        self.handles.clear()
