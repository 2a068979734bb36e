#!/usr/bin/env python3
"""Ingest cost: CPU seconds per stream-second for N concurrent RTSP streams, against bare PyAV decoding of
the same streams in the same run.

A GStreamer RTSP server (Debian's python3 + gi, as in the tests) serves H.264 MP4s made here at realistic
bitrates (480p25 ~1 Mbit/s, 720p25 ~2.5 Mbit/s) without re-encoding. Modes: bare PyAV decode of every frame;
our source in full-decode mode sampling 2 fps; our source in keyframe mode. Also the largest N at 720p this
machine sustains without falling behind live (every stream decoding >= 95 % of 25 fps).
Last line: `RESULT full_decode_overhead_ratio=... keyframe_vs_full_ratio=... max_streams_720p=...`.

  python bench/ingest.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import av  # noqa: E402
import numpy as np  # noqa: E402
from servers import RtspServer  # noqa: E402  (the tests' real RTSP server)

from monitor.sources import PyAVSource, SourceSettings  # noqa: E402

RATES = {480: 1_000_000, 720: 2_500_000}


def make_clip(path: Path, height: int, seconds: int) -> Path:
    width = height * 16 // 9 // 2 * 2  # even, for yuv420p
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = RATES[height]
        stream.options = {"tune": "zerolatency", "bf": "0", "g": "25", "preset": "veryfast"}
        for i in range(seconds * 25):
            frame = np.roll(base, i * 6, axis=1)
            frame[: height // 4] = (i * 3) % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def bare_decode(url: str, seconds: float, counts: list, index: int, ready: threading.Barrier) -> None:
    container = av.open(url, options={"rtsp_transport": "tcp", "timeout": "10000000"}, timeout=(10, 5))
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    ready.wait()
    deadline = time.monotonic() + seconds
    for packet in container.demux(stream):
        counts[index] += len(packet.decode())
        if time.monotonic() > deadline:
            break
    container.close()


def measure_bare(url: str, n: int, seconds: float) -> tuple[float, float]:
    counts = [0] * n
    ready = threading.Barrier(n + 1)
    threads = [threading.Thread(target=bare_decode, args=(url, seconds, counts, i, ready)) for i in range(n)]
    for t in threads:
        t.start()
    ready.wait()
    cpu, wall = time.process_time(), time.monotonic()
    for t in threads:
        t.join()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return cpu / (n * wall), min(counts) / wall


async def measure_sources(url: str, n: int, seconds: float, mode: str) -> tuple[float, float]:
    sources = [PyAVSource(f"s{i}", url, SourceSettings(sample_fps=2, mode=mode)) for i in range(n)]

    async def consume(source):
        async for _ in source.frames():
            pass

    for source in sources:
        source.start()
    consumers = [asyncio.create_task(consume(s)) for s in sources]
    while any(s.stats.frames_decoded == 0 for s in sources):
        await asyncio.sleep(0.05)
    decoded = [s.stats.frames_decoded for s in sources]
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    fps = min(s.stats.frames_decoded - d for s, d in zip(sources, decoded)) / wall
    for source in sources:
        await source.stop()
    for consumer in consumers:
        consumer.cancel()
    return cpu / (n * wall), fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--streams", type=int, default=2, help="streams for the ratio measurements (default 2)")
    args = parser.parse_args()
    seconds = 2.5 if args.quick else 8.0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        for height in (480, 720):
            clip = make_clip(Path(tmp) / f"{height}.mp4", height, int(seconds + 8))  # each session replays it
            servers[height] = RtspServer(file=str(clip)).start()
        try:
            print(f"{'res':>5} {'mode':<10} {'streams':>7} {'cpu s/stream-s':>15} {'min fps':>8}")
            for height, server in servers.items():
                url = server.url("file")
                bare = measure_bare(url, args.streams, seconds)
                full = asyncio.run(measure_sources(url, args.streams, seconds, "full"))
                key = asyncio.run(measure_sources(url, args.streams, seconds, "keyframes"))
                for name, (cpu, fps) in (("bare", bare), ("full", full), ("keyframes", key)):
                    print(f"{height:>4}p {name:<10} {args.streams:>7} {cpu:>15.4f} {fps:>8.1f}", flush=True)
                results[height] = (bare[0], full[0], key[0])
            best = 0
            for n in ((2, 4) if args.quick else (2, 4, 6, 8, 12, 16)):
                cpu, fps = asyncio.run(measure_sources(servers[720].url("file"), n, seconds, "full"))
                print(f" 720p full       {n:>7} {cpu:>15.4f} {fps:>8.1f}", flush=True)
                if fps < 0.95 * 25:
                    break
                best = n
        finally:
            for server in servers.values():
                server.stop()
    bare, full, key = (np.mean([results[h][i] for h in results]) for i in range(3))
    print(f"RESULT full_decode_overhead_ratio={full / bare:.3f} keyframe_vs_full_ratio={key / full:.3f} "
          f"max_streams_720p={best}{'+' if best and args.quick else ''}")


if __name__ == "__main__":
    main()
