#!/usr/bin/env python3
"""Ingest cost: CPU seconds per stream-second for N concurrent RTSP streams, against bare PyAV decoding of
the same streams in the same run.

A GStreamer RTSP server (Debian's python3 + gi, as in the tests) serves H.264 MP4s made here without
re-encoding: a camera panning across natural photographs with a little sensor noise, at realistic
bitrates (480p25 1 Mbit/s, 720p25 2.5 Mbit/s, capped by x264's VBV) and a 2 s GOP, the default of the
common IP cameras (--gop-s changes it). Modes: bare PyAV decode of every frame; our source in full-decode
mode sampling 2 fps; our source in keyframe mode; bare PyAV demuxing every packet and decoding only the
keyframes (the floor for keyframe mode: demuxing RTSP costs the same in every mode). Keyframe mode is
also measured at a 1 s GOP, where twice the keyframes are decoded. Last, the largest N at 720p this
machine sustains without falling behind live (every stream decoding >= 95 % of 25 fps).
Last line: `RESULT full_decode_overhead_ratio=... keyframe_vs_full_ratio=... max_streams_720p=...
keyframe_vs_full_ratio_gop1s=... keyframe_vs_bare_keyframes_ratio=...`.

  python bench/ingest.py --quick   # 720p only, short windows: < 1 min
  python bench/ingest.py           # 480p and 720p, 8 s windows, N up to 16: ~4 min
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
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np

from monitor.sources import PyAVSource, SourceSettings
from tests.support.servers import RtspServer

RATES = {480: 1_000_000, 720: 2_500_000}
WARMUP_S = 1.0  # a new RTSP session starts with a burst of the server's buffered frames: not measured


def make_clip(path: Path, height: int, seconds: int, gop_s: float) -> Path:
    """A camera panning across natural photographs, with sensor noise: what a real encoder sees, unlike
    noise (whose keyframes take the whole bitrate) or flat colours (which cost nothing to decode)."""
    from PIL import Image
    from skimage import data

    width, fps = height * 16 // 9 // 2 * 2, 25  # even width, for yuv420p
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    scene = np.concatenate([np.asarray(Image.fromarray(p).resize((height * p.shape[1] // p.shape[0], height),
                                                                  Image.BILINEAR)) for p in photos], axis=1)
    noise = np.random.default_rng(0).integers(-3, 4, (7, height, width, 3), dtype=np.int16)  # cycled: quicker
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        rate = RATES[height]
        stream.bit_rate = rate
        stream.options = {"tune": "zerolatency", "bf": "0", "g": str(round(gop_s * fps)), "preset": "veryfast",
                          "maxrate": str(rate), "bufsize": str(2 * rate)}
        for i in range(seconds * fps):
            x = int((scene.shape[1] - width) * (0.5 + 0.5 * np.sin(i / 150)))
            frame = scene[:, x:x + width].astype(np.int16) + noise[i % len(noise)]
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.clip(0, 255).astype(np.uint8), "rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def bare_decode(url: str, seconds: float, counts: list, index: int, ready: threading.Barrier,
                keyframes: bool = False) -> None:
    container = av.open(url, options={"rtsp_transport": "tcp", "timeout": "10000000"})
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    ready.wait()
    started = time.monotonic()
    for packet in container.demux(stream):
        if keyframes and not packet.is_keyframe:
            continue
        frames = len(packet.decode())
        if time.monotonic() > started + WARMUP_S:  # counted in measure_bare's window only
            counts[index] += frames
        if time.monotonic() > started + WARMUP_S + seconds:
            break
    container.close()


def measure_bare(url: str, n: int, seconds: float, keyframes: bool = False) -> tuple[float, float]:
    """Bare PyAV in a thread per stream: demux, decode (every frame, or keyframes only), nothing else."""
    counts = [0] * n
    ready = threading.Barrier(n + 1)
    threads = [threading.Thread(target=bare_decode, args=(url, seconds, counts, i, ready, keyframes))
               for i in range(n)]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(WARMUP_S)
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
    await asyncio.sleep(WARMUP_S)
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
    parser.add_argument("--gop-s", type=float, default=2.0, help="keyframe interval of the served clips (default 2)")
    args = parser.parse_args()
    seconds = 2.5 if args.quick else 8.0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        heights = (720,) if args.quick else (480, 720)
        for height, gop in [(h, args.gop_s) for h in heights] + [(720, 1.0)]:
            clip = make_clip(Path(tmp) / f"{height}-{gop}.mp4", height, int(max(seconds, 2 * gop) + 6), gop)  # replayed per session
            servers[height, gop] = RtspServer(file=str(clip)).start()
        try:
            print(f"{'res':>5} {'gop':>4} {'mode':<10} {'streams':>7} {'cpu s/stream-s':>15} {'min fps':>8}")
            for (height, gop), server in servers.items():
                url = server.url("file")
                # Keyframe modes are measured over whole GOPs (at least two): each window then holds as
                # many keyframes as any other.
                key_seconds = max(2, round(seconds / gop)) * gop
                rows = {"full": asyncio.run(measure_sources(url, args.streams, seconds, "full")),
                        "keyframes": asyncio.run(measure_sources(url, args.streams, key_seconds, "keyframes"))}
                if gop == args.gop_s:
                    rows = {"bare": measure_bare(url, args.streams, seconds), **rows,
                            "bare-key": measure_bare(url, args.streams, key_seconds, keyframes=True)}
                for name, (cpu, fps) in rows.items():
                    print(f"{height:>4}p {gop:>3g}s {name:<10} {args.streams:>7} {cpu:>15.4f} {fps:>8.1f}", flush=True)
                results[height, gop] = {name: cpu for name, (cpu, _) in rows.items()}
                if (height, gop) == (720, args.gop_s):
                    best = args.streams if rows["full"][1] >= 0.95 * 25 else 0
            levels = [n for n in ((4,) if args.quick else (4, 6, 8, 12, 16)) if best and n > args.streams]
            for n in levels:
                cpu, fps = asyncio.run(measure_sources(servers[720, args.gop_s].url("file"), n, seconds, "full"))
                print(f" 720p {args.gop_s:>3g}s full       {n:>7} {cpu:>15.4f} {fps:>8.1f}", flush=True)
                if fps < 0.95 * 25:
                    break
                best = n
        finally:
            for server in servers.values():
                server.stop()
    main_runs = [results[h, args.gop_s] for h in heights]
    bare, full, key = (np.mean([r[mode] for r in main_runs]) for mode in ("bare", "full", "keyframes"))
    bare_key = np.mean([r["bare-key"] for r in main_runs])
    gop1 = results[720, 1.0]["keyframes"] / results[720, 1.0]["full"]
    print(f"RESULT full_decode_overhead_ratio={full / bare:.3f} keyframe_vs_full_ratio={key / full:.3f} "
          f"max_streams_720p={best}{'+' if best and best == max(levels, default=args.streams) else ''} "
          f"keyframe_vs_full_ratio_gop1s={gop1:.3f} "
          f"keyframe_vs_bare_keyframes_ratio={key / bare_key:.3f}")


if __name__ == "__main__":
    main()
