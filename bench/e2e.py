#!/usr/bin/env python3
"""The whole daemon on N concurrent RTSP streams, against the same work done bare on the same streams.

Starts a redis-server and GStreamer's RTSP server (as the tests do), serves an H.264 clip of faces, runs
`monitor run` as a child process with a tiny checkpoint in the published format (or `--size L14` on
`--device cuda`: the untrained full-size network), and measures: frames/s in, crops/s scored, frame-to-alert
latency (event `published_at` minus the newest frame in its window), the daemon's CPU per stream-second and
RSS over time; then, in this process, the same work without the daemon: a plain loop per stream that decodes
with PyAV, samples at the same rate, detects and aligns faces and scores the crops with the same checkpoint
(one model behind a lock, as the daemon has one device thread). The overhead ratio is the daemon's CPU per
stream-second over that loop's: what the queues, tracks, windows, alerts, Redis and HTTP cost on top of the
work itself. Last line:
`RESULT overhead_ratio=... frame_to_alert_p50_ms=... frame_to_alert_p99_ms=... streams=... rss_growth_mb=...
evidence_bytes_per_alert=...` (evidence is on, as by default: its cost is part of the daemon's; `--no-evidence`
measures without it).

  python bench/e2e.py --quick
  python bench/e2e.py --device cuda --size L14 --streams 16
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
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import av
import numpy as np
import redis

from monitor.faces.pipeline import FaceCropper, FaceSettings
from monitor.model import Detector
from monitor.sources.sampling import to_frame
from tests.support.faces import face_paths, load_crops
from tests.support.media import face_frames, write_mp4
from tests.support.servers import RedisServer, RtspServer, free_port

TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bare(url: str, seconds: float, fps: float, model: Detector, model_lock: threading.Lock, counts: list,
         index: int, start: threading.Barrier) -> None:
    """Decode -> sample -> detect + align faces -> score, in a plain loop: the daemon's work, bare."""
    container = av.open(url, options={"rtsp_transport": "tcp", "timeout": "10000000"}, timeout=(10, 5))
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    cropper = FaceCropper(FaceSettings())
    start.wait()
    deadline, next_sample, seq = time.monotonic() + seconds, 0.0, 0
    for frame in container.decode(stream):
        now = time.monotonic()
        if now >= next_sample:
            next_sample, seq = now + 1 / fps, seq + 1
            crops = cropper.process(to_frame(f"s{index}", seq, frame, time.time())).crops
            if crops:
                with model_lock:
                    model.score_uint8(np.stack([c.crop for c in crops]))
            counts[index] += len(crops)
        if now > deadline:
            break
    cropper.close()
    container.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--sample-fps", type=float, default=2.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", choices=("tiny", "L14"), default="tiny")
    parser.add_argument("--quick", action="store_true", help="2 streams for 10 s (< 1 min)")
    parser.add_argument("--no-evidence", action="store_true", help="the daemon without alert evidence")
    args = parser.parse_args()
    if args.quick:
        args.streams, args.seconds = 2, 10
    crops = load_crops(face_paths()[::4])
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        clip = write_mp4(tmp / "faces.mp4", face_frames(crops, int(25 * (args.seconds + 30)), size=(640, 480)))
        if args.size == "tiny":
            from tests.support.reference_models import make_lightning  # the published format, built small

            make_lightning(tmp / "model.ckpt", width=64, layers=1)
            model = f'path = "{tmp / "model.ckpt"}"'
            bare_model = Detector.load(tmp / "model.ckpt", device=args.device)
        else:
            from monitor.model import VIT_L14

            model = 'allow_untrained = true\nsize = "L14"'
            bare_model = Detector.untrained(VIT_L14, device=args.device)
        with RedisServer() as redis_server, RtspServer(file=str(clip)) as rtsp:
            port = free_port()
            streams = "".join(f'[[streams]]\nid = "s{i}"\nurl = "{rtsp.url("file")}"\n' for i in range(args.streams))
            (tmp / "monitor.toml").write_text(f"""
[model]
{model}
devices = ["{args.device}"]
[sampling]
sample_fps = {args.sample_fps}
[verdict]
suspicious = 0.01
manipulated = 0.99
enter_crops = 2
enter_seconds = 0
[window]
min_crops = 2
[alerts]
spool_dir = "{tmp / 'spool'}"
update_interval_s = 0
[evidence]
enabled = {str(not args.no_evidence).lower()}
[redis]
url = "{redis_server.url}"
[http]
port = {port}
[logging]
format = "json"
{streams}""")
            daemon = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(tmp / "monitor.toml")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline:
                    try:
                        if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200:
                            break
                    except OSError:
                        time.sleep(0.2)
                time.sleep(2 if args.quick else 5)  # streams open, tracks form
                status = lambda: json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/streams").read())["streams"]  # noqa: E731
                before = status()
                cpu0, wall0, rss = proc_cpu_s(daemon.pid), time.monotonic(), [proc_rss_mb(daemon.pid)]
                while time.monotonic() - wall0 < args.seconds:
                    time.sleep(min(5, args.seconds / 4))
                    rss.append(proc_rss_mb(daemon.pid))
                cpu, wall = proc_cpu_s(daemon.pid) - cpu0, time.monotonic() - wall0
                after = status()
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
            events = [json.loads(f["event"]) for _, f in
                      redis.Redis.from_url(redis_server.url, decode_responses=True).xrange("deepfake:events")]
            stored = redis.Redis.from_url(redis_server.url)
            evidence_sizes = [sum(len(v) for v in stored.hgetall(key).values())
                              for key in stored.scan_iter(match="deepfake:evidence:*")]
            frames_in = sum(a["frames_in"] - b["frames_in"] for a, b in zip(after, before)) / wall
            scored = sum(a["crops_scored"] - b["crops_scored"] for a, b in zip(after, before)) / wall
            latencies = [(e["times"]["published_at"] - e["times"]["last_frame"]) * 1e3 for e in events
                         if e["times"].get("last_frame") and e["type"] != "closed"]  # closes come after absence
            daemon_cpu = cpu / (args.streams * wall)
            counts, lock = [0] * args.streams, threading.Lock()
            barrier = threading.Barrier(args.streams + 1)
            threads = [threading.Thread(target=bare, args=(rtsp.url("file"), args.seconds, args.sample_fps, bare_model,
                                                           lock, counts, i, barrier)) for i in range(args.streams)]
            for t in threads:
                t.start()
            barrier.wait()
            bare_cpu0, bare_wall0 = time.process_time(), time.monotonic()
            for t in threads:
                t.join()
            bare_wall = time.monotonic() - bare_wall0
            bare_cpu = (time.process_time() - bare_cpu0) / (args.streams * bare_wall)
            bare_scored = sum(counts) / bare_wall
    p50, p99 = (np.percentile(latencies, [50, 99]) if latencies else (float("nan"), float("nan")))
    print(f"{args.streams} streams x {wall:.0f} s ({args.size} on {args.device}): {frames_in:.1f} frames/s in, "
          f"{scored:.1f} crops/s scored, {len(latencies)} alert events")
    print(f"daemon CPU {daemon_cpu:.3f} s per stream-second vs {bare_cpu:.3f} for the bare loop "
          f"({bare_scored:.1f} crops/s scored); "
          f"RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB; frame-to-alert p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    evidence_bytes = float(np.mean(evidence_sizes)) if evidence_sizes else float("nan")
    print(f"evidence: {len(evidence_sizes)} alerts, {evidence_bytes / 1e3:.0f} kB each on average")
    print(f"RESULT overhead_ratio={daemon_cpu / bare_cpu:.3f} frame_to_alert_p50_ms={p50:.1f} "
          f"frame_to_alert_p99_ms={p99:.1f} streams={args.streams} rss_growth_mb={rss[-1] - rss[0]:.1f} "
          f"evidence_bytes_per_alert={evidence_bytes:.0f}")


if __name__ == "__main__":
    main()
