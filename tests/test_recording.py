"""Recording, export, calibration replay and drift, on a real daemon run: RTSP (GStreamer) in, Redis out.

The clip alternates two fixture faces every few seconds, one the tiny model scores high and one it scores
low, with `suspicious` between them: the daemon opens and closes alerts. Its recorded scores, exported with
`monitor record export` and replayed through the calibration code at the same thresholds, must give the same
alerts at the same times. The stream's drift baseline is set well below what the low face scores: one
`drift` event, however many checks run.
"""

import asyncio
import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from monitor.config import load
from monitor.model import Detector
from monitor.scoring.budget import read_recording
from monitor.scoring.replay import replay_all
from tests.support.cli import run_monitor
from tests.support.daemon import DaemonProcess, events, http, ready, value, wait_until
from tests.support.media import write_mp4
from tests.support.runtime import tiny_checkpoint
from tests.support.servers import RedisServer, RtspServer, free_port

SAMPLE_FPS = 4
PERIOD_S = 5  # each face stays this long


def alternating(high: np.ndarray, low: np.ndarray, seconds: int, fps: int = 25, size=(480, 360), face_px=170):
    width, height = size
    rng = np.random.default_rng(0)
    background = rng.integers(30, 80, size=(height, width, 3), dtype=np.uint8)
    faces = [np.asarray(Image.fromarray(c).resize((face_px, face_px), Image.BILINEAR)) for c in (high, low)]
    for i in range(seconds * fps):
        frame = background.copy()
        x, y = (width - face_px) // 2 + int(10 * np.sin(i / 20)), (height - face_px) // 2
        frame[y:y + face_px, x:x + face_px] = faces[(i // (PERIOD_S * fps)) % 2]
        yield frame


@pytest.fixture(scope="module")
def scene(tmp_path_factory, face_paths):
    folder = tmp_path_factory.mktemp("recording")
    checkpoint = tiny_checkpoint(folder)
    crops = [np.asarray(Image.open(p).convert("RGB")) for p in face_paths]
    scores = Detector.load(checkpoint, device="cpu").score_images([Image.fromarray(c) for c in crops])
    high, low = int(np.argmax(scores)), int(np.argmin(scores))
    clip = write_mp4(folder / "alternating.mp4", alternating(crops[high], crops[low], 40))
    return folder, checkpoint, clip, float(scores[high]), float(scores[low])


def config_text(folder, checkpoint, http_port, redis_port, rtsp_port, suspicious, baseline) -> str:
    return f"""
instance = "recorder"
[model]
path = "{checkpoint}"
devices = ["cpu"]
[worker]
max_batch = 4
max_wait_ms = 20
[sampling]
sample_fps = {SAMPLE_FPS}
[window]
seconds = 2
max_crops = 6
min_crops = 2
[verdict]
suspicious = {suspicious:.6f}
manipulated = 0.999
hysteresis = 0.005
enter_crops = 2
enter_seconds = 0
exit_seconds = 1
[alerts]
spool_dir = "{folder / 'spool'}"
update_interval_s = 0
[record]
enabled = true
[drift]
enabled = true
threshold = 0.05
min_crops = 10
check_every_s = 1
[redis]
url = "redis://127.0.0.1:{redis_port}/0"
[http]
port = {http_port}
[[streams]]
id = "cam"
url = "rtsp://127.0.0.1:{rtsp_port}/file"
record = true
drift_baseline = {baseline:.4f}
[[streams]]
id = "unrecorded"
url = "rtsp://127.0.0.1:{rtsp_port}/file"
"""


async def export(redis_url: str, out: Path, *args) -> subprocess.CompletedProcess:
    # In a thread: the command runs its own event loop.
    return await asyncio.to_thread(run_monitor, "record", "export", "--redis", redis_url, "--out", out, *args)


async def test_recorded_run_replays_to_the_same_alerts_and_drift_is_raised_once(scene, tmp_path):
    folder, checkpoint, clip, high, low = scene
    assert high - low > 0.05, (high, low)
    suspicious = (high + low) / 2
    with RedisServer() as redis_server, RtspServer(file=str(clip), size="480x360") as rtsp:
        port = free_port()
        config_path = tmp_path / "monitor.toml"
        config_path.write_text(config_text(folder, checkpoint, port, redis_server.port, rtsp.port, suspicious,
                                           max(0.0, low - 0.2)))
        daemon = DaemonProcess(config_path, tmp_path / "daemon.log")
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            assert await wait_until(lambda: ready(f"http://127.0.0.1:{port}"), 90), daemon.tail()

            def recovered() -> int:
                return sum(1 for e in events(client) if e["type"] == "closed" and e["stream_id"] == "cam")

            assert await wait_until(lambda: value(recovered() >= 3), 90), daemon.tail()
            _, metrics = await http("GET", f"http://127.0.0.1:{port}/metrics")
        finally:
            assert daemon.stop() == 0, daemon.tail()

        log = events(client)
        drift = [e for e in log if e["type"] == "drift"]
        assert len(drift) == 1, drift  # many checks ran (every second); one event
        assert drift[0]["stream_id"] == "cam" and drift[0]["schema"] == "deepfake-monitor/drift/v1"
        assert drift[0]["shift"] > 0.05 and drift[0]["alert_id"] is None
        assert 'deepfake_stream_score_drift{stream="cam"}' in metrics
        assert client.hlen("deepfake:drift:cam") >= 1  # the histograms a restart reloads
        assert client.hgetall("deepfake:alert:none") == {}  # drift events make no alert hash

        # Export: only the stream that opted in was recorded; the rows carry quality features.
        out = tmp_path / "scores.csv"
        result = await export(redis_server.url, out, "--label", "real")
        assert result.returncode == 0, result.stderr
        rows = list(csv.DictReader(out.open()))
        assert rows and {r["stream_id"] for r in rows} == {"cam"} and {r["label"] for r in rows} == {"real"}
        assert all(float(r["q_sharpness"]) > 0 and float(r["q_interocular_px"]) > 0 for r in rows)
        assert f"wrote {len(rows)} real record(s)" in result.stdout

        # Replay at the daemon's own thresholds: the same alerts, opened and closed at the same times.
        config = load(config_path)
        replayed = sorted(replay_all(read_recording(out).real, config.window, config.verdict),
                          key=lambda a: a.opened_at)
        cam = [e for e in log if e["stream_id"] == "cam"]
        opened = sorted((e for e in cam if e["type"] == "opened"), key=lambda e: e["times"]["opened_at"])
        closed = {e["alert_id"]: e for e in cam if e["type"] == "closed"}
        print(f"\nhigh {high:.3f} low {low:.3f}: the daemon opened {len(opened)} alerts, the replay {len(replayed)}")
        assert len(replayed) == len(opened) >= 3
        one_sample, deviations = 1 / SAMPLE_FPS, []
        for alert, event in zip(replayed, opened):
            deviations.append(abs(alert.opened_at - event["times"]["opened_at"]))
            assert deviations[-1] <= one_sample
            end = closed[event["alert_id"]]
            if end["close_reason"] == "recovered":
                assert alert.close_reason == "recovered"
                deviations.append(abs(alert.closed_at - end["times"]["scored_at"]))
                assert deviations[-1] <= one_sample
            else:  # still open when the daemon stopped: the replay leaves it open too
                assert alert.closed_at is None
        print(f"largest difference between the daemon's and the replay's open/close times: {max(deviations):.3f} s")

        # A time range and a label select what is written; --append adds a labelled period to the same file.
        middle = float(rows[len(rows) // 2]["frame_time"])
        assert (await export(redis_server.url, out, "--label", "real", "--until", str(middle))).returncode == 0
        first = list(csv.DictReader(out.open()))
        assert first and all(float(r["frame_time"]) < middle for r in first)
        assert (await export(redis_server.url, out, "--label", "fake", "--since", str(middle), "--append")).returncode == 0
        both = list(csv.DictReader(out.open()))
        assert len(both) == len(rows) and {r["label"] for r in both[len(first):]} == {"fake"}
        calibrated = await asyncio.to_thread(run_monitor, "calibrate", out, "--false-alerts-per-hour", "1000", "--json")
        assert calibrated.returncode == 0, calibrated.stderr
        assert json.loads(calibrated.stdout)["fake_tracks"] >= 1

        # Bad input: a Redis that is not there (exit 3, no secret), a bad time (exit 2).
        gone = await export(f"redis://:S3cretPass@127.0.0.1:{free_port()}/0", tmp_path / "x.csv", "--label", "real")
        assert gone.returncode == 3 and "S3cretPass" not in gone.stderr and "unreachable" in gone.stderr
        bad = await export(redis_server.url, tmp_path / "x.csv", "--label", "real", "--since", "yesterday")
        assert bad.returncode == 2 and "ISO 8601" in bad.stderr
    await asyncio.sleep(0)
