"""The inference worker on the CPU with a tiny detector loaded through the real checkpoint path."""

import asyncio
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitor.contracts import FaceCrop
from monitor.model import Detector
from monitor.worker import InferencePool, WorkerError, WorkerMetrics, WorkerSettings
from tests.support.reference_models import make_gend


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("gend") / "model.safetensors"
    make_gend(path, width=64, layers=1)
    return path


@pytest.fixture(scope="module")
def crops():
    return np.random.default_rng(0).integers(0, 256, size=(64, 256, 256, 3), dtype=np.uint8)


def crop(stream="s", i=0, image=None, age=0.0, track=1):
    if image is None:
        image = np.full((256, 256, 3), i % 256, np.uint8)
    return FaceCrop(stream_id=stream, track_id=track, frame_seq=i, frame_time=time.time() - age, crop=image)


def counter(registry, name, **labels):
    return registry.get_sample_value(name, {"model": "default", **labels}) or 0.0


async def started_pool(checkpoint, registry=None, **config):
    pool = InferencePool([Detector.load(checkpoint, device="cpu")], WorkerSettings(**config),
                         WorkerMetrics(registry or CollectorRegistry()))
    await pool.start()
    return pool


async def test_scores_equal_direct_model_calls(checkpoint, crops):
    pool = await started_pool(checkpoint, max_batch=8, max_wait_ms=5)
    scores = await asyncio.gather(*(pool.submit(crop("a", i, crops[i])) for i in range(20)))
    await pool.stop()
    direct = Detector.load(checkpoint, device="cpu").score_uint8(crops[:20])
    assert all(s.ok for s in scores)
    assert [s.frame_seq for s in scores] == list(range(20))
    np.testing.assert_allclose([s.p_fake for s in scores], direct, atol=1e-6)
    assert scores[0].model_id == pool.model_id and scores[0].scored_at >= scores[0].queued_at


async def test_batches_form_by_size_and_by_deadline(checkpoint):
    registry = CollectorRegistry()
    # A long deadline: a full batch must not wait for it.
    pool = await started_pool(checkpoint, registry, max_batch=8, max_wait_ms=2000, buckets=(1, 8))
    start = time.monotonic()
    await asyncio.gather(*(pool.submit(crop("a", i)) for i in range(8)))
    full_batch_s = time.monotonic() - start
    assert full_batch_s < 1.0, f"a full batch waited {full_batch_s:.2f} s for the 2 s deadline"
    assert counter(registry, "deepfake_worker_batch_size_bucket", device="cpu", le="8.0") == 1
    await pool.stop()

    # A lone crop runs when its deadline passes.
    registry = CollectorRegistry()
    pool = await started_pool(checkpoint, registry, max_batch=8, max_wait_ms=100)
    start = time.monotonic()
    await pool.submit(crop("a", 0))
    lone_s = time.monotonic() - start
    await pool.stop()
    print(f"full batch answered in {full_batch_s * 1e3:.0f} ms; lone crop with a 100 ms deadline in {lone_s * 1e3:.0f} ms")
    assert 0.09 <= lone_s < 1.0
    assert counter(registry, "deepfake_worker_batch_size_count", device="cpu") == 1


async def test_no_crop_waits_longer_than_deadline_plus_one_batch(checkpoint):
    registry = CollectorRegistry()
    max_wait = 0.03
    pool = await started_pool(checkpoint, registry, max_batch=8, max_wait_ms=max_wait * 1000)
    # Time one full batch on this machine first.
    t0 = time.monotonic()
    await asyncio.gather(*(pool.submit(crop("warm", i)) for i in range(8)))
    batch_s = time.monotonic() - t0
    results = []

    async def stream(name, period, count):
        for i in range(count):
            results.append(pool.submit(crop(name, i)))
            await asyncio.sleep(period)

    await asyncio.gather(*(stream(f"s{k}", 0.013 * (k + 1), 25) for k in range(4)))
    scores = await asyncio.gather(*results)
    await pool.stop()
    waits = [s.scored_at - s.queued_at for s in scores]
    bound = max_wait + 2 * batch_s + 0.25  # deadline + the batch in flight + its own batch + noise margin
    print(f"batch {batch_s * 1e3:.0f} ms; submit->score p50 {np.median(waits) * 1e3:.0f} ms, "
          f"max {max(waits) * 1e3:.0f} ms (bound {bound * 1e3:.0f} ms)")
    assert all(s.ok for s in scores)
    assert max(waits) < bound


class RecordingDetector(Detector):
    """The real tiny model; each call notes how many batches its device held when it finished."""

    def score_uint8(self, crops):
        result = super().score_uint8(crops)
        self.held_at_end.append((len(crops), self.pool.runners[0].in_flight))
        return result


async def test_a_saturated_device_holds_the_next_full_batch_and_a_light_load_never_queues(checkpoint):
    base = Detector.load(checkpoint, device="cpu")
    detector = RecordingDetector(base.network, base.info, device="cpu")
    detector.pool = pool = InferencePool([detector], WorkerSettings(max_batch=8, max_wait_ms=5),
                                         WorkerMetrics(CollectorRegistry()))
    detector.held_at_end = []
    await pool.start()
    detector.held_at_end = []  # not the warm-up calls
    # Saturation: 6 full batches at once. Each batch but the last finishes with the next one already
    # handed to the device thread, so the device never waits for the event loop between batches.
    scores = await asyncio.gather(*(pool.submit(crop(f"s{i % 3}", i)) for i in range(48)))
    assert all(s.ok for s in scores)
    assert [size for size, _ in detector.held_at_end] == [8] * 6
    assert [held for _, held in detector.held_at_end] == [2] * 5 + [1]
    # A light load: partial batches never queue behind a running one.
    detector.held_at_end = []
    for i in range(5):
        await asyncio.gather(*(pool.submit(crop("light", 100 * i + k)) for k in range(3)))
    await pool.stop()
    assert detector.held_at_end == [(3, 1)] * 5


async def test_flooding_stream_cannot_starve_a_slow_one(checkpoint):
    registry = CollectorRegistry()
    pool = await started_pool(checkpoint, registry, max_batch=8, max_wait_ms=10, queue_capacity=16)
    flood_futures, slow_futures = [], []

    async def flood():
        for i in range(600):
            flood_futures.append(pool.submit(crop("flood", i)))
            if i % 20 == 0:
                await asyncio.sleep(0)

    async def slow():
        for i in range(10):
            slow_futures.append(pool.submit(crop("slow", i)))
            await asyncio.sleep(0.05)

    await asyncio.gather(flood(), slow())
    slow_scores = await asyncio.gather(*slow_futures)
    flood_scores = await asyncio.gather(*flood_futures)
    await pool.stop()
    assert all(s.ok for s in slow_scores), [s.dropped for s in slow_scores]
    dropped = [s for s in flood_scores if s.dropped == "queue_full"]
    assert len(dropped) > 300
    assert counter(registry, "deepfake_worker_crops_dropped_total", reason="queue_full") == len(dropped)
    # The newest flood crops survive: eviction takes the stream's oldest.
    assert flood_scores[-1].ok


async def test_stale_crops_are_dropped_counted_and_answered(checkpoint):
    registry = CollectorRegistry()
    pool = await started_pool(checkpoint, registry, max_batch=8, max_wait_ms=5, staleness_ms=500)
    scores = await asyncio.wait_for(asyncio.gather(
        pool.submit(crop("a", 0, age=2.0)), pool.submit(crop("a", 1, age=0.0)), pool.submit(crop("b", 2, age=0.6))),
        timeout=10)
    await pool.stop()
    assert [s.dropped for s in scores] == ["stale", None, "stale"]
    assert scores[0].p_fake is None and "older than 500 ms" in scores[0].detail
    assert counter(registry, "deepfake_worker_crops_dropped_total", reason="stale") == 2


class PoisonedDetector(Detector):
    """Fault injection (an extra unit test beside the real ones): raises on crops whose first pixel is 255."""

    def score_uint8(self, crops):
        if (np.asarray(crops)[:, 0, 0, 0] == 255).any():
            raise RuntimeError("injected fault")
        return super().score_uint8(crops)


async def test_a_failing_batch_fails_only_its_own_futures(checkpoint):
    base = Detector.load(checkpoint, device="cpu")
    detector = PoisonedDetector(base.network, base.info, device="cpu")
    registry = CollectorRegistry()
    pool = InferencePool([detector], WorkerSettings(max_batch=4, max_wait_ms=5), WorkerMetrics(registry))
    await pool.start()
    good = await asyncio.gather(*(pool.submit(crop("a", i)) for i in range(4)))
    poison = np.full((256, 256, 3), 255, np.uint8)
    bad = await asyncio.gather(*(pool.submit(crop("a", 10 + i, poison)) for i in range(4)), return_exceptions=True)
    after = await asyncio.gather(*(pool.submit(crop("a", 20 + i)) for i in range(4)))
    await pool.stop()
    assert all(s.ok for s in good + after)
    assert all(isinstance(e, WorkerError) and "injected fault" in str(e) for e in bad)
    assert counter(registry, "deepfake_worker_failed_batches_total", device="cpu") == 1


async def test_shutdown_drains_or_answers_everything(checkpoint):
    pool = await started_pool(checkpoint, max_batch=4, max_wait_ms=1000)
    futures = [pool.submit(crop("a", i)) for i in range(10)]
    await pool.stop(drain=True)
    assert all(f.done() and f.result().ok for f in futures)

    pool = await started_pool(checkpoint, max_batch=64, max_wait_ms=5000)
    futures = [pool.submit(crop("a", i)) for i in range(10)]
    await pool.stop(drain=False)
    assert all(f.done() for f in futures)
    assert {f.result().dropped for f in futures} == {"shutdown"}
    late = pool.submit(crop("a", 99))
    assert late.done() and late.result().dropped == "shutdown"


async def test_bad_crops_are_rejected_at_submit(checkpoint):
    pool = await started_pool(checkpoint)
    with pytest.raises(ValueError, match=r"uint8 \[256, 256, 3\]"):
        pool.submit(crop("a", 0, np.zeros((224, 224, 3), np.uint8)))
    with pytest.raises(ValueError, match="uint8"):
        pool.submit(crop("a", 0, np.zeros((256, 256, 3), np.float32)))
    await pool.stop()
    with pytest.raises(ValueError, match=r"max_batch\n.*greater than or equal to 1"):
        WorkerSettings(max_batch=0)
    with pytest.raises(ValueError, match="every bucket must be at least 1"):
        WorkerSettings(buckets=[8, 0])


async def test_stall_is_detectable(checkpoint):
    base = Detector.load(checkpoint, device="cpu")

    class SlowDetector(Detector):  # fault injection: a device that stops making progress
        def score_uint8(self, crops):
            time.sleep(1.0)
            return super().score_uint8(crops)

    pool = InferencePool([SlowDetector(base.network, base.info, device="cpu")],
                         WorkerSettings(max_batch=4, max_wait_ms=1, buckets=(4,)), WorkerMetrics(CollectorRegistry()))
    await pool.start()
    assert not pool.stalled(0.3)  # idle is not stalled
    future = pool.submit(crop("a", 0))
    await asyncio.sleep(0.6)
    assert pool.stalled(0.3)
    await future
    assert not pool.stalled(0.3)
    await pool.stop()


async def test_compiled_buckets_score_like_the_eager_model(checkpoint, crops):
    # torch.compile on the CPU (inductor + the system C++ compiler), one bucket: every batch is padded to it.
    base = Detector.load(checkpoint, device="cpu")
    detector = RecordingDetector(base.network, base.info, device="cpu")
    registry = CollectorRegistry()
    detector.pool = pool = InferencePool([detector], WorkerSettings(max_batch=8, max_wait_ms=5, buckets=(8,),
                                                                  compile="default"), WorkerMetrics(registry))
    detector.held_at_end = []
    started = time.monotonic()
    await pool.start()
    print(f"compiled one bucket in {time.monotonic() - started:.1f} s")
    detector.held_at_end = []
    scores = await asyncio.gather(*(pool.submit(crop("a", i, crops[i])) for i in range(11)))  # 8 + 3 (padded)
    await pool.stop()
    eager = Detector.load(checkpoint, device="cpu").score_uint8(crops[:11])
    assert [s.frame_seq for s in scores] == list(range(11)) and all(s.ok for s in scores)
    np.testing.assert_allclose([s.p_fake for s in scores], eager, atol=1e-5)
    assert [size for size, _ in detector.held_at_end] == [8, 8]  # the 3 crops ran in the compiled shape
    assert counter(registry, "deepfake_worker_batch_size_sum", device="cpu") == 11  # 8 + 3 real crops
    with pytest.raises(ValueError, match="compile\n.*'default', 'reduce-overhead'"):
        WorkerSettings(compile="fastest")


async def test_a_stop_scores_only_what_the_device_can_finish_in_the_drain_time(tmp_path):
    """A device of ~0.1 s a crop (a real, wider network) with 40 crops queued and 0.5 s to drain: it takes only
    what its measured time per crop lets it finish; the rest are answered `shutdown`, none is left hanging."""
    path = tmp_path / "slow" / "model.safetensors"
    path.parent.mkdir()
    make_gend(path, width=512, layers=8)
    pool = await started_pool(path, max_batch=4, buckets=(1, 4), max_wait_ms=1, staleness_ms=600_000)
    per_crop = pool.runners[0].seconds_per_crop
    assert per_crop is not None and per_crop > 0  # measured at warm-up
    futures = [pool.submit(crop("a", i)) for i in range(40)]
    await asyncio.sleep(0)
    drain_s = 0.5
    await pool.stop(drain=True, timeout=drain_s)
    scores = [f.result() for f in futures]  # every future is answered
    scored = [s for s in scores if s.ok]
    shut = [s for s in scores if s.dropped == "shutdown"]
    print(f"{per_crop * 1000:.0f} ms a crop: {len(scored)} scored, {len(shut)} answered shutdown")
    assert len(scored) + len(shut) == 40
    # What fits in the drain time, plus the batch already on the device when the stop came.
    assert len(scored) <= int(drain_s / per_crop) + 2 * pool.config.max_batch
