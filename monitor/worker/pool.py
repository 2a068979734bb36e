"""The inference worker: cross-stream deadline batching onto one runner thread per device.

`submit(crop)` returns an awaitable `Score`. A batch runs when `max_batch` crops wait or when the oldest
has waited `max_wait_ms`; crops whose frame is older than `staleness_ms` are answered `stale` instead of
scored. Each device has one dispatcher coroutine and one thread that runs the model, so the event loop
never runs it; an idle device takes the next batch, so work goes to the least-loaded device.

Under saturation a device holds a second full batch behind the one it is running: the device thread then
goes straight from one batch to the next instead of waiting for the event loop to hand out results and
form the next batch. Partial (deadline) batches only go to a device with nothing in flight, so a light
load keeps its latency bound of `max_wait_ms` plus one batch.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from ..contracts import FaceCrop, Score
from ..logs import get
from ..model import Detector
from .metrics import WorkerMetrics
from .queue import FairQueue, Pending
from .settings import CROP_SIZE, WorkerSettings

log = get(__name__)

PIPELINE_DEPTH = 2  # batches a device may hold: the running one and the next


class WorkerError(RuntimeError):
    """Raised into the futures of a batch that failed."""


@dataclass(eq=False)
class DeviceRunner:
    """One device: its detector and the single thread that runs it."""

    detector: Detector
    buckets: tuple[int, ...]
    max_batch: int
    metrics: WorkerMetrics
    model: str = "default"  # the config's name of the model: a label of every metric
    executor: ThreadPoolExecutor = field(init=False)
    last_progress: float = field(default_factory=time.monotonic)
    in_flight: int = 0  # batches handed to the device thread and not yet answered
    seconds_per_crop: float | None = None  # measured: warm-up, then a moving average of live batches
    pad_to_bucket: bool = False  # compiled shapes: every batch is padded up to a warm bucket
    _oom_logged: bool = False

    def __post_init__(self):
        self.name = str(self.detector.device)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"infer-{self.name}")
        # max_batch is always a bucket; larger buckets are never used.
        self.buckets = tuple(sorted({b for b in self.buckets if b < self.max_batch} | {self.max_batch}))
        self.metrics.max_batch.labels(self.model, self.name).set(self.max_batch)

    def warm_up(self, crop_size: int, cuda_graphs: bool, compile_mode: str | None = None) -> None:
        """Run every bucket once (CUDA: capture graphs; compile: compile each shape) so that no live batch
        pays for first-call setup. With torch.compile, its own modes replace our CUDA graphs."""
        if compile_mode:
            self.detector.compile(compile_mode)
            self.pad_to_bucket = True
        elif cuda_graphs and self.detector.device.type == "cuda":
            self.detector.enable_cuda_graphs(self.buckets)
        for bucket in self.buckets:
            started = time.monotonic()
            self.detector.score_uint8(np.zeros((bucket, crop_size, crop_size, 3), np.uint8))
            if not compile_mode:  # a compiled first call is mostly compiling: no measure of a crop
                self.measured(bucket, time.monotonic() - started)
            if compile_mode:
                log.info("compiled a batch size", batch_size=bucket, device=self.name, mode=compile_mode,
                         seconds=round(time.monotonic() - started, 1))
        self.last_progress = time.monotonic()

    def measured(self, crops: int, seconds: float) -> None:
        per_crop = seconds / max(1, crops)
        self.seconds_per_crop = per_crop if self.seconds_per_crop is None else (
            0.8 * self.seconds_per_crop + 0.2 * per_crop)

    def crops_within(self, seconds: float) -> int:
        """How many crops this device can score in `seconds`, by its measured time per crop (unmeasured: all)."""
        if self.seconds_per_crop is None or self.seconds_per_crop <= 0:
            return self.max_batch
        return max(0, min(self.max_batch, int(seconds / self.seconds_per_crop)))

    def run_batch(self, images: list[np.ndarray]) -> tuple[np.ndarray, float]:
        """Runs on the device thread (the copy into one array too, off the event loop).
        Returns p_fake and the seconds the device spent on the batch."""
        started = time.monotonic()
        crops = np.stack(images)
        if self.pad_to_bucket:  # a compiled network only has the buckets' shapes warm
            bucket = next((b for b in self.buckets if b >= len(crops)), len(crops))
            if bucket > len(crops):
                crops = np.concatenate([crops, np.zeros((bucket - len(crops), *crops.shape[1:]), crops.dtype)])
        p_fake = self.score(crops)[:len(images)]
        return p_fake, time.monotonic() - started

    def score(self, crops: np.ndarray) -> np.ndarray:
        """On CUDA out-of-memory, halve the batch limit and retry in parts."""
        try:
            return self.detector.score_uint8(crops)
        except torch.cuda.OutOfMemoryError:
            if len(crops) == 1:
                raise
            self.max_batch = max(1, min(self.max_batch, len(crops)) // 2)
            self.metrics.max_batch.labels(self.model, self.name).set(self.max_batch)
            torch.cuda.empty_cache()
            if not self._oom_logged:
                log.warning("CUDA out of memory: batch limit halved", device=self.name, max_batch=self.max_batch)
                self._oom_logged = True
            return np.concatenate([self.score(crops[i:i + self.max_batch])
                                   for i in range(0, len(crops), self.max_batch)])


class InferencePool:
    """Fair, deadline-batched inference over one or more devices."""

    def __init__(self, detectors: list[Detector], config: WorkerSettings | None = None,
                 metrics: WorkerMetrics | None = None, name: str = "default"):
        """`name`: the model's name in the config, which labels the metrics (pools of several models share
        one `metrics`)."""
        if not detectors:
            raise ValueError("the inference pool needs at least one detector")
        self.config = config or WorkerSettings()
        self.metrics = metrics or WorkerMetrics()
        self.model_id = detectors[0].info.model_id
        self.name = name
        self.queue = FairQueue(self.config.queue_capacity)
        self.runners = [DeviceRunner(d, self.config.buckets, self.config.max_batch, self.metrics, name)
                        for d in detectors]
        self._changed = asyncio.Event()
        self._dispatchers: list[asyncio.Task] = []
        self._in_flight = 0
        self._accepting = False
        self._draining = True
        self._drain_deadline = float("inf")
        self.ready = False

    @classmethod
    def load(cls, model_path: str, devices: list[str], precision: str | None = None,
             config: WorkerSettings | None = None, metrics: WorkerMetrics | None = None) -> "InferencePool":
        config = config or WorkerSettings()
        if config.cpu_threads and any(d.startswith("cpu") for d in devices):
            torch.set_num_threads(config.cpu_threads)
        return cls([Detector.load(model_path, device=d, precision=precision) for d in devices], config, metrics)

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Warm every device up (in its own thread), then start dispatching. Ready afterwards."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(r.executor, r.warm_up, CROP_SIZE,
                                                    self.config.cuda_graphs, self.config.compile)
                               for r in self.runners))
        self._accepting = True
        self._dispatchers = [asyncio.create_task(self._dispatch(r), name=f"dispatch-{r.name}") for r in self.runners]
        self.ready = True

    async def stop(self, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop accepting crops; score what is queued (`drain`) within `timeout`, or answer it `shutdown`. While
        draining a device takes only the crops its measured time per crop lets it finish in the time left; the
        rest, and a batch still running at the end, are answered `shutdown`. No future hangs."""
        self._accepting = False
        self._draining = drain
        self._drain_deadline = time.monotonic() + timeout
        if not drain:
            self._answer(self.queue.drain_all(), "shutdown", "worker stopped")
        self._changed.set()
        if self._dispatchers:
            done, pending = await asyncio.wait(self._dispatchers, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._answer(self.queue.drain_all(), "shutdown", "worker stopped")
        for runner in self.runners:
            # A batch still running finishes in its thread; nothing waits for it here.
            runner.executor.shutdown(wait=False, cancel_futures=True)
        self.ready = False

    # --- submitting --------------------------------------------------------------------------------------

    def submit(self, crop: FaceCrop) -> asyncio.Future:
        """Queue a crop; the future resolves to a Score (scored, or dropped with a reason)."""
        size = CROP_SIZE
        if crop.crop.dtype != np.uint8 or crop.crop.shape != (size, size, 3):
            raise ValueError(f"crop must be uint8 [{size}, {size}, 3], got {crop.crop.dtype} {list(crop.crop.shape)}")
        loop = asyncio.get_running_loop()
        pending = Pending(crop, loop.create_future(), time.monotonic(), time.time())
        if not self._accepting:
            self._answer([pending], "shutdown", "worker not running")
            return pending.future
        self._answer(self.queue.put(pending), "queue_full", "evicted by fair admission")
        size = len(self.queue)
        self.metrics.queue_depth.labels(self.name).set(size)
        # Wake the dispatchers only when it can matter: a first crop starts a deadline, a batch has just
        # become full. (A crop adds one at most, and dispatchers look again after every batch, so no
        # crossing is missed; waking them on every crop cost more event-loop time than submit itself.)
        if size == 1 or any(size == r.max_batch for r in self.runners):
            self._changed.set()
        return pending.future

    async def score(self, crop: FaceCrop) -> Score:
        return await self.submit(crop)

    # --- watchdog ----------------------------------------------------------------------------------------

    @property
    def last_progress(self) -> float:
        """monotonic time of the newest completed batch (or warm-up) on any device."""
        return max(r.last_progress for r in self.runners)

    def stalled(self, timeout_s: float) -> bool:
        """Work is waiting or running, yet no device finished a batch for `timeout_s`."""
        has_work = len(self.queue) > 0 or self._in_flight > 0
        return has_work and time.monotonic() - self.last_progress > timeout_s

    def gpu_memory(self) -> dict[str, int]:
        """Bytes allocated by torch on each CUDA device of the pool."""
        return {r.name: torch.cuda.memory_allocated(r.detector.device) for r in self.runners
                if r.detector.device.type == "cuda"}

    # --- dispatching -------------------------------------------------------------------------------------

    async def _dispatch(self, runner: DeviceRunner) -> None:
        batches: set[asyncio.Task] = set()
        try:
            while await self._wait_for_batch(runner):
                self._answer(self.queue.drop_stale(time.time(), self.config.staleness_ms / 1000), "stale",
                             f"frame older than {self.config.staleness_ms:.0f} ms before inference")
                take = runner.max_batch
                if not self._accepting:  # draining at a stop: only what this device can finish in time
                    take = runner.crops_within(self._drain_deadline - time.monotonic())
                    if not take:
                        self._answer(self.queue.drain_all(), "shutdown", "the stop's drain time ran out")
                        continue
                batch = self.queue.take(take)
                self.metrics.queue_depth.labels(self.name).set(len(self.queue))
                if not batch:
                    continue
                runner.in_flight += 1
                self._in_flight += len(batch)
                task = asyncio.create_task(self._run_batch(runner, batch))
                batches.add(task)
                task.add_done_callback(batches.discard)
            await asyncio.gather(*batches)
        finally:
            for task in batches:  # the dispatcher was cancelled: so are its batches, which answer their crops
                task.cancel()

    async def _run_batch(self, runner: DeviceRunner, batch: list[Pending]) -> None:
        started = time.monotonic()
        for item in batch:
            self.metrics.queue_wait.labels(self.name, runner.name).observe(started - item.queued_mono)
        self.metrics.batch_size.labels(self.name, runner.name).observe(len(batch))
        loop = asyncio.get_running_loop()
        try:
            p_fake, device_s = await loop.run_in_executor(runner.executor, runner.run_batch,
                                                          [item.crop.crop for item in batch])
        except asyncio.CancelledError:
            self._answer(batch, "shutdown", "worker stopped during inference")
            raise
        except Exception as e:  # one bad batch fails its own futures; the worker goes on
            self.metrics.failed_batches.labels(self.name, runner.name).inc()
            log.error("inference batch failed", batch_size=len(batch), device=runner.name,
                      stream_ids=sorted({item.crop.stream_id for item in batch}), error=f"{type(e).__name__}: {e}")
            error = WorkerError(f"inference failed on {runner.name}: {type(e).__name__}: {e}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        finally:
            runner.in_flight -= 1
            self._in_flight -= len(batch)
            self._changed.set()  # a dispatcher waiting for its device may go on
        runner.last_progress = time.monotonic()
        runner.measured(len(batch), device_s)
        self.metrics.inference.labels(self.name, runner.name).observe(device_s)
        self.metrics.scored.labels(self.name, runner.name).inc(len(batch))
        scored_at = time.time()
        for item, p in zip(batch, p_fake):
            if not item.future.done():
                item.future.set_result(self._score(item, float(p), scored_at))

    def _may_take(self, runner: DeviceRunner, full: bool) -> bool:
        """An idle device takes any due batch; a busy one holds at most one more, only a full one, and only
        while no other device is idle (which then gets it: the least-loaded device)."""
        if runner.in_flight == 0:
            return True
        return full and runner.in_flight < PIPELINE_DEPTH and all(r.in_flight for r in self.runners)

    async def _wait_for_batch(self, runner: DeviceRunner) -> bool:
        """Wait until this device should take a batch: `max_batch` crops, the oldest waited `max_wait_ms`,
        or shutdown with crops left to drain. Returns False when the dispatcher should exit."""
        max_wait = self.config.max_wait_ms / 1000
        while True:
            size = len(self.queue)
            if not self._accepting and (size == 0 or not self._draining):
                return False
            timeout = None
            if size >= runner.max_batch or (size and not self._accepting):
                if self._may_take(runner, full=size >= runner.max_batch):
                    return True
            elif size:
                timeout = max_wait - (time.monotonic() - self.queue.oldest_mono())
                if timeout <= 0 and self._may_take(runner, full=False):
                    return True
                timeout = None if timeout <= 0 else timeout  # due, but the device is busy: wait for it
            self._changed.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def _score(self, item: Pending, p_fake: float | None, scored_at: float, dropped: str | None = None,
               detail: str = "") -> Score:
        crop = item.crop
        return Score(crop.stream_id, crop.track_id, crop.frame_seq, crop.frame_time, p_fake, self.model_id,
                     item.queued_wall, scored_at, dropped, detail)

    def _answer(self, items: list[Pending], reason: str, detail: str) -> None:
        now = time.time()
        for item in items:
            self.metrics.dropped.labels(self.name, reason).inc()
            if not item.future.done():
                item.future.set_result(self._score(item, None, now, reason, detail))
