#!/usr/bin/env python3
"""Inference worker throughput and latency against calling the model directly, in the same process.

For 1, 10 and 100 simulated streams at several offered crop rates (fractions of the direct-call capacity),
prints scored crops/s, drops and submit->score latency p50/p99. The figure is the ratio of the worker's
throughput at saturation (10 streams offering twice the capacity; counted in a steady-state window, not
the ramp-up or the drain) to the model called directly with full batches of the same size. The two are
measured in alternating rounds and the median of the per-round ratios is reported: on a shared machine
the model's own speed drifts by +-20 % from second to second, and pairing cancels that. Last line:
`RESULT worker_vs_direct_ratio=... p50_ms=... p99_ms=...` (at saturation).

  python bench/worker.py --quick                  # CPU, tiny model, < 1 min
  python bench/worker.py --device cuda --size L14 [--compile max-autotune]  # a GPU host
"""

from __future__ import annotations

import os
import sys

# Run as a file (`python bench/NAME.py`)? Re-run as `python -m bench.NAME` from the repository root, so that the
# helpers shared with the tests import as the package `tests.support`.
if __name__ == "__main__" and not __package__:
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.execv(sys.executable, [sys.executable, "-m", "bench." + os.path.basename(__file__)[:-3], *sys.argv[1:]])

import argparse
import asyncio
import time

import numpy as np
from prometheus_client import CollectorRegistry

from monitor.contracts import FaceCrop
from monitor.model import VIT_L14, Architecture, Detector
from monitor.worker import InferencePool, WorkerMetrics, WorkerSettings

TINY = Architecture(width=128, layers=2, mlp_width=512)


def direct_throughput(detector: Detector, batch: int, seconds: float) -> float:
    crops = np.random.default_rng(0).integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)
    detector.score_uint8(crops)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        detector.score_uint8(crops)
        n += batch
    return n / (time.perf_counter() - start)


async def run_scenario(pool: InferencePool, streams: int, offered: float, seconds: float) -> dict:
    image = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    futures: list[asyncio.Future] = []
    period = streams / offered
    started = time.time()
    deadline = time.monotonic() + seconds

    async def stream(k: int):
        await asyncio.sleep(min(period, seconds) * k / streams)  # spread the streams' phases
        next_at, i = time.monotonic(), 0
        while next_at < deadline:
            futures.append(pool.submit(FaceCrop(f"s{k}", 1, i, time.time(), image)))
            i += 1
            next_at += period
            if next_at < deadline:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    await asyncio.gather(*(stream(k) for k in range(streams)))
    scores = await asyncio.gather(*futures)
    ok = [s for s in scores if s.ok]
    # Throughput in the steady state, from batch completion to batch completion after the first quarter of
    # the run (the ramp-up and the drain of what was still queued are left out; whole batches only, since a
    # window cutting batches would count 32 crops or none at its edges).
    done = sorted({s.scored_at for s in ok if started + seconds / 4 <= s.scored_at <= started + seconds})
    in_window = sum(1 for s in ok if done and done[0] < s.scored_at <= done[-1])
    window = (done[0], done[-1]) if len(done) > 1 else (0.0, float("inf"))
    latency = np.array([s.scored_at - s.queued_at for s in ok]) * 1e3
    return {
        "streams": streams, "offered": len(scores) / seconds,
        "scored_per_s": in_window / (window[1] - window[0]), "dropped": len(scores) - len(ok), "latency": latency,
        "p50_ms": float(np.percentile(latency, 50)) if len(ok) else float("nan"),
        "p99_ms": float(np.percentile(latency, 99)) if len(ok) else float("nan"),
    }


async def main_async(args) -> None:
    arch = TINY if args.size == "tiny" else VIT_L14
    detector = Detector.untrained(arch, device=args.device, precision=args.precision)
    if args.compile:  # compiled for the direct calls too; the worker's warm-up then compiles its buckets
        detector.compile(args.compile)
    seconds = 2.0 if args.quick else 8.0
    direct = direct_throughput(detector, args.max_batch, seconds / 2)
    print(f"device {detector.device}, {args.size}, {detector.precision}: direct calls at batch {args.max_batch}: "
          f"{direct:.1f} crops/s")
    config = WorkerSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, staleness_ms=args.staleness_ms,
                          queue_capacity=args.queue_capacity, buckets=(1, 8, 32, 64, 128), compile=args.compile)
    pool = InferencePool([detector], config, WorkerMetrics(CollectorRegistry()))
    await pool.start()
    loads = (0.5, 2.0) if args.quick else (0.25, 0.5, 0.9, 2.0)
    stream_counts = (1, 10, 100) if not args.quick else (1, 100)
    header = f"{'streams':>7} {'offered/s':>10} {'scored/s':>10} {'dropped':>8} {'p50 ms':>8} {'p99 ms':>8}"
    print(header)

    def show(r):
        print(f"{r['streams']:>7} {r['offered']:>10.1f} {r['scored_per_s']:>10.1f} {r['dropped']:>8} "
              f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}", flush=True)

    for streams in stream_counts:
        for load in loads:
            show(await run_scenario(pool, streams, direct * load, seconds))
    print(f"saturation, in alternating rounds: direct calls at batch {args.max_batch}, then the worker "
          "(10 streams offering 2x the direct rate)")
    ratios, latencies = [], []
    for _ in range(args.rounds):
        direct = await asyncio.to_thread(direct_throughput, detector, args.max_batch, seconds)
        r = await run_scenario(pool, 10, direct * 2.0, seconds)
        ratios.append(r["scored_per_s"] / direct)
        latencies.append(r["latency"])
        print(f"  direct {direct:>9.1f} crops/s   worker {r['scored_per_s']:>9.1f} crops/s   ratio {ratios[-1]:.3f}   "
              f"p50 {r['p50_ms']:.1f} ms   p99 {r['p99_ms']:.1f} ms", flush=True)
    await pool.stop()
    latency = np.concatenate(latencies)
    print(f"RESULT worker_vs_direct_ratio={np.median(ratios):.3f} p50_ms={np.percentile(latency, 50):.1f} "
          f"p99_ms={np.percentile(latency, 99):.1f} direct_crops_per_s={direct:.1f} "
          f"worker_crops_per_s={r['scored_per_s']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "L14"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default=None)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=20.0)
    parser.add_argument("--staleness-ms", type=float, default=1000.0)
    parser.add_argument("--queue-capacity", type=int, default=128)
    parser.add_argument("--compile", default=None, help="torch.compile mode for the model and the worker's buckets")
    parser.add_argument("--rounds", type=int, default=None, help="paired saturation rounds (default 3, 5 without --quick)")
    parser.add_argument("--quick", action="store_true", help="short scenarios (< 1 min on CPU)")
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 5)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
