"""The inference worker: cross-stream deadline batching onto one runner thread per device.

`submit(crop)` returns an awaitable `Score`. A batch runs when `max_batch` crops wait or when the oldest
has waited `max_wait_ms`; crops whose frame is older than `staleness_ms` are answered `stale` instead of
scored. Each device has one dispatcher coroutine and one thread that runs the model, so the event loop
never runs it; an idle device takes the next batch, so work goes to the least-loaded device.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from ..contracts import FaceCrop, Score
from ..model import Detector
from .metrics import WorkerMetrics
from .queue import FairQueue, Pending

log = logging.getLogger(__name__)


@dataclass
class WorkerConfig:
    max_batch: int = 64
    max_wait_ms: float = 20.0
    staleness_ms: float = 3000.0
    queue_capacity: int = 512
    buckets: tuple[int, ...] = (1, 8, 32, 64, 128)
    crop_size: int = 256
    cuda_graphs: bool = True  # capture one graph per bucket on CUDA devices
    cpu_threads: int | None = None  # torch intra-op threads for CPU devices (None: torch's default)

    def __post_init__(self):
        if self.max_batch < 1 or self.queue_capacity < 1 or not self.buckets or min(self.buckets) < 1:
            raise ValueError("max_batch, queue_capacity and buckets must be positive")
        if self.max_wait_ms < 0 or self.staleness_ms <= 0:
            raise ValueError("max_wait_ms must be >= 0 and staleness_ms > 0")


class WorkerError(RuntimeError):
    """Raised into the futures of a batch that failed."""


@dataclass(eq=False)
class DeviceRunner:
    """One device: its detector and the single thread that runs it."""

    detector: Detector
    buckets: tuple[int, ...]
    max_batch: int
    metrics: WorkerMetrics
    executor: ThreadPoolExecutor = field(init=False)
    last_progress: float = field(default_factory=time.monotonic)
    busy: bool = False
    _oom_logged: bool = False

    def __post_init__(self):
        self.name = str(self.detector.device)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"infer-{self.name}")
        # max_batch is always a bucket; larger buckets are never used.
        self.buckets = tuple(sorted({b for b in self.buckets if b < self.max_batch} | {self.max_batch}))
        self.metrics.max_batch.labels(self.name).set(self.max_batch)

    def warm_up(self, crop_size: int, cuda_graphs: bool) -> None:
        """Run every bucket once (CUDA: capture graphs) so no live batch pays for first-call setup."""
        if cuda_graphs and self.detector.device.type == "cuda":
            self.detector.enable_cuda_graphs(self.buckets)
        for bucket in self.buckets:
            self.detector.score_uint8(np.zeros((bucket, crop_size, crop_size, 3), np.uint8))
        self.last_progress = time.monotonic()

    def score(self, crops: np.ndarray) -> np.ndarray:
        """Runs on the device thread. On CUDA out-of-memory, halve the batch limit and retry in parts."""
        try:
            return self.detector.score_uint8(crops)
        except torch.cuda.OutOfMemoryError:
            if len(crops) == 1:
                raise
            self.max_batch = max(1, min(self.max_batch, len(crops)) // 2)
            self.metrics.max_batch.labels(self.name).set(self.max_batch)
            torch.cuda.empty_cache()
            if not self._oom_logged:
                log.warning("CUDA out of memory on %s: batch limit halved to %d", self.name, self.max_batch)
                self._oom_logged = True
            return np.concatenate([self.score(crops[i:i + self.max_batch])
                                   for i in range(0, len(crops), self.max_batch)])


class InferencePool:
    """Fair, deadline-batched inference over one or more devices."""

    def __init__(self, detectors: list[Detector], config: WorkerConfig | None = None,
                 metrics: WorkerMetrics | None = None):
        if not detectors:
            raise ValueError("the inference pool needs at least one detector")
        self.config = config or WorkerConfig()
        self.metrics = metrics or WorkerMetrics()
        self.model_id = detectors[0].info.model_id
        self.queue = FairQueue(self.config.queue_capacity)
        self.runners = [DeviceRunner(d, self.config.buckets, self.config.max_batch, self.metrics) for d in detectors]
        self._changed = asyncio.Event()
        self._dispatchers: list[asyncio.Task] = []
        self._in_flight = 0
        self._accepting = False
        self._draining = True
        self.ready = False

    @classmethod
    def load(cls, model_path: str, devices: list[str], precision: str | None = None,
             config: WorkerConfig | None = None, metrics: WorkerMetrics | None = None) -> "InferencePool":
        config = config or WorkerConfig()
        if config.cpu_threads and any(d.startswith("cpu") for d in devices):
            torch.set_num_threads(config.cpu_threads)
        return cls([Detector.load(model_path, device=d, precision=precision) for d in devices], config, metrics)

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Warm every device up (in its own thread), then start dispatching. Ready afterwards."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(r.executor, r.warm_up, self.config.crop_size,
                                                    self.config.cuda_graphs) for r in self.runners))
        self._accepting = True
        self._dispatchers = [asyncio.create_task(self._dispatch(r), name=f"dispatch-{r.name}") for r in self.runners]
        self.ready = True

    async def stop(self, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop accepting crops; score what is queued (`drain`) or answer it `shutdown`. No future hangs."""
        self._accepting = False
        self._draining = drain
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
        size = self.config.crop_size
        if crop.crop.dtype != np.uint8 or crop.crop.shape != (size, size, 3):
            raise ValueError(f"crop must be uint8 [{size}, {size}, 3], got {crop.crop.dtype} {list(crop.crop.shape)}")
        loop = asyncio.get_running_loop()
        pending = Pending(crop, loop.create_future(), time.monotonic(), time.time())
        if not self._accepting:
            self._answer([pending], "shutdown", "worker not running")
            return pending.future
        self._answer(self.queue.put(pending), "queue_full", "evicted by fair admission")
        self.metrics.queue_depth.set(len(self.queue))
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

    # --- dispatching -------------------------------------------------------------------------------------

    async def _dispatch(self, runner: DeviceRunner) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not await self._wait_for_batch(runner):
                return
            self._answer(self.queue.drop_stale(time.time(), self.config.staleness_ms / 1000), "stale",
                         f"frame older than {self.config.staleness_ms:.0f} ms before inference")
            batch = self.queue.take(runner.max_batch)
            self.metrics.queue_depth.set(len(self.queue))
            if not batch:
                continue
            started = time.monotonic()
            for item in batch:
                self.metrics.queue_wait.labels(runner.name).observe(started - item.queued_mono)
            self.metrics.batch_size.labels(runner.name).observe(len(batch))
            self._in_flight += len(batch)
            runner.busy = True
            try:
                crops = np.stack([item.crop.crop for item in batch])
                p_fake = await loop.run_in_executor(runner.executor, runner.score, crops)
            except Exception as e:  # one bad batch fails its own futures; the worker goes on
                self.metrics.failed_batches.labels(runner.name).inc()
                log.error("inference batch of %d on %s failed: %s", len(batch), runner.name, e)
                error = WorkerError(f"inference failed on {runner.name}: {type(e).__name__}: {e}")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                self._changed.set()
                continue
            finally:
                self._in_flight -= len(batch)
                runner.busy = False
            runner.last_progress = time.monotonic()
            self.metrics.inference.labels(runner.name).observe(runner.last_progress - started)
            self.metrics.scored.labels(runner.name).inc(len(batch))
            scored_at = time.time()
            for item, p in zip(batch, p_fake):
                if not item.future.done():
                    item.future.set_result(self._score(item, float(p), scored_at))
            self._changed.set()  # a dispatcher that was waiting for a device may have a full batch now

    async def _wait_for_batch(self, runner: DeviceRunner) -> bool:
        """Wait until a batch is due: `max_batch` crops, the oldest waited `max_wait_ms`, or shutdown.
        Returns False when the dispatcher should exit."""
        max_wait = self.config.max_wait_ms / 1000
        while True:
            size = len(self.queue)
            if not self._accepting and (size == 0 or not self._draining):
                return False
            if size >= runner.max_batch or (size and not self._accepting):
                return True
            timeout = None
            if size:
                timeout = max_wait - (time.monotonic() - self.queue.oldest_mono())
                if timeout <= 0:
                    return True
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
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
            self.metrics.dropped.labels(reason).inc()
            if not item.future.done():
                item.future.set_result(self._score(item, None, now, reason, detail))
