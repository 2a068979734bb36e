#!/usr/bin/env python3
"""Capacity: the most 720p25 RTSP streams one daemon sustains on this machine (tiny model, 2 fps sampling).

One real daemon (`monitor run`, a subprocess) and a GStreamer RTSP server serving a 720p25 H.264 clip of a
face moving over a background (2.5 Mbit/s, 2 s GOP, like an IP camera). Streams are added through the HTTP API
a few at a time; each level is measured over a window after a warm-up. A level is sustained when, for every
stream: in `full` mode, it decodes >= 95 % of 25 fps (live, no growing lag); in `keyframes` mode, it decodes
all but at most one of the keyframes in a window of 10 GOPs (5 in --quick); and in both, >= 80 % of the sampled frames are cropped and scored, with no crop
dropped as stale (scored within `worker.staleness_ms`). The daemon's and the RTSP server's CPU per
stream-second, and the machine's idle share, say what a stream costs and what runs out (the test server
shares this machine's cores); the README turns these figures into `cluster.max_streams` advice.
Last line: `RESULT max_streams_full_720p=... max_streams_keyframes_720p=... cpu_per_stream_full=...
cpu_per_stream_keyframes=...`.

  python bench/capacity.py --quick   # coarse steps, short windows: < 1 min... of measuring (plus start-up)
  python bench/capacity.py           # finer steps, 10 s windows (20 s for keyframes)
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
import json
import math
import tempfile
import time
import urllib.request
from pathlib import Path

import av
import psutil

from tests.support.daemon import DaemonProcess
from tests.support.faces import face_paths, load_crops
from tests.support.media import face_frames
from tests.support.runtime import tiny_checkpoint
from tests.support.servers import RedisServer, RtspServer, free_port

FPS, GOP_S, SAMPLE_FPS = 25, 2.0, 2.0


def make_clip(path: Path, seconds: int = 20) -> Path:
    crops = load_crops(face_paths()[::4])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.pix_fmt, stream.width, stream.height = "yuv420p", 1280, 720
        stream.bit_rate = 2_500_000
        stream.options = {"g": str(int(GOP_S * FPS)), "keyint_min": str(int(GOP_S * FPS)), "bf": "0",
                          "maxrate": "2500k", "bufsize": "5000k", "preset": "veryfast"}
        for image in face_frames(crops, seconds * FPS, size=(1280, 720), face_px=260):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def config(folder: Path, checkpoint: Path, redis_url: str, port: int) -> Path:
    path = folder / "capacity.toml"
    path.write_text(f"""
instance = "capacity"
[model]
path = "{checkpoint}"
devices = ["cpu"]
[worker]
max_batch = 16
buckets = [1, 4, 16]
[sampling]
sample_fps = {SAMPLE_FPS}
[verdict]
suspicious = 0.999
manipulated = 0.9999
[alerts]
spool_dir = "{folder / 'spool'}"
[evidence]
enabled = false
[redis]
url = "{redis_url}"
[http]
port = {port}
""")
    return path


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def request(method: str, url: str, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status


def counters(base: str) -> tuple[dict, float]:
    streams = {s["id"]: s for s in json.loads(get(base + "/streams"))["streams"]}
    stale = 0.0
    for line in get(base + "/metrics").splitlines():
        if line.startswith("deepfake_worker_crops_dropped_total") and 'reason="stale"' in line:
            stale += float(line.rsplit(" ", 1)[1])
    return streams, stale


def measure(base: str, process: psutil.Process, server: psutil.Process, mode: str, n: int, warmup_s: float,
            window_s: float) -> dict:
    ids = [f"{mode}-{i}" for i in range(n)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        streams, _ = counters(base)
        if all(streams.get(i, {}).get("frames_decoded", 0) > 0 for i in ids):
            break
        time.sleep(0.2)
    time.sleep(warmup_s)
    before, stale_before = counters(base)
    cpu_before, server_before, wall = sum(process.cpu_times()[:2]), sum(server.cpu_times()[:2]), time.monotonic()
    idle_before = psutil.cpu_times().idle
    time.sleep(window_s)
    after, stale_after = counters(base)
    cpu, wall = sum(process.cpu_times()[:2]) - cpu_before, time.monotonic() - wall
    server_cpu = sum(server.cpu_times()[:2]) - server_before
    idle = (psutil.cpu_times().idle - idle_before) / (wall * psutil.cpu_count())
    decoded = [after[i]["frames_decoded"] - before[i]["frames_decoded"] for i in ids]
    scored = [after[i]["crops_scored"] - before[i]["crops_scored"] for i in ids]
    if mode == "full":
        ok = min(decoded) >= 0.95 * FPS * wall and min(scored) >= 0.8 * SAMPLE_FPS * wall
    else:
        # One keyframe per GOP: a window holds one more or one fewer depending on where it starts (and how the
        # frames' arrival jitters), so a stream keeps up when it is at most one short of the whole GOPs in the
        # window; the window spans 10 GOPs in full runs (90 %), 5 in --quick.
        gops = math.floor(wall / GOP_S)
        ok = min(decoded) >= gops - 1 and min(scored) >= 0.8 * (gops - 1)
    ok = ok and stale_after == stale_before
    return {"n": n, "ok": ok, "min_decode_fps": min(decoded) / wall, "min_scored_per_s": min(scored) / wall,
            "stale": stale_after - stale_before, "cpu_per_stream": cpu / (n * wall),
            "server_cpu_per_stream": server_cpu / (n * wall), "idle": idle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max", type=int, default=48, help="the most streams to try (default 48)")
    args = parser.parse_args()
    warmup, window = (2.0, 4.0) if args.quick else (3.0, 10.0)
    key_window = (5 if args.quick else 10) * GOP_S + 0.5  # whole GOPs, and the counters' round trips
    steps = {"full": (2, 4, 6, 8, 10, 12, 16), "keyframes": (4, 8, 12, 16, 24, 32, 40, 48)}
    if args.quick:
        steps = {"full": (2, 4, 6), "keyframes": (4, 8, 16)}
    best = {"full": (0, None), "keyframes": (0, None)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = make_clip(folder / "720p.mp4")
        port = free_port()
        with RedisServer() as redis_server, RtspServer(file=str(clip), size="1280x720") as rtsp:
            daemon = DaemonProcess(config(folder, tiny_checkpoint(folder), redis_server.url, port),
                                   folder / "daemon.log")
            base = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    try:
                        if get(base + "/readyz"):
                            break
                    except OSError:
                        time.sleep(0.5)
                process, server = psutil.Process(daemon.process.pid), psutil.Process(rtsp.process.pid)
                print(f"{'mode':<10} {'streams':>7} {'min decode fps':>14} {'min scored/s':>12} {'stale':>5} "
                      f"{'daemon cpu/stream':>17} {'server cpu/stream':>17} {'idle':>5}  sustained")
                for mode in ("full", "keyframes"):
                    added = 0
                    for n in (s for s in steps[mode] if s <= args.max):
                        for i in range(added, n):
                            request("POST", base + "/streams", {"id": f"{mode}-{i}", "url": rtsp.url("file"),
                                                                "sampling": {"mode": mode}})
                        added = n
                        row = measure(base, process, server, mode, n, warmup,
                                      window if mode == "full" else key_window)
                        print(f"{mode:<10} {n:>7} {row['min_decode_fps']:>14.1f} {row['min_scored_per_s']:>12.2f} "
                              f"{row['stale']:>5.0f} {row['cpu_per_stream']:>17.3f} "
                              f"{row['server_cpu_per_stream']:>17.3f} {row['idle']:>5.0%}  "
                              f"{'yes' if row['ok'] else 'no'}", flush=True)
                        if not row["ok"]:
                            break
                        best[mode] = (n, row)
                    for i in range(added):
                        request("DELETE", base + f"/streams/{mode}-{i}")
            finally:
                daemon.stop()
    full, key = best["full"], best["keyframes"]
    top = {m: "+" if best[m][0] == max(steps[m]) else "" for m in best}
    cpu_full = full[1]["cpu_per_stream"] if full[1] else float("nan")
    cpu_key = key[1]["cpu_per_stream"] if key[1] else float("nan")
    print(f"{os.cpu_count()} CPU cores; a stream costs {cpu_full:.3f} CPU-s per second in full mode, {cpu_key:.3f} "
          f"in keyframes mode")
    print(f"RESULT max_streams_full_720p={full[0]}{top['full']} max_streams_keyframes_720p={key[0]}{top['keyframes']} "
          f"cpu_per_stream_full={cpu_full:.3f} cpu_per_stream_keyframes={cpu_key:.3f}")


if __name__ == "__main__":
    main()
