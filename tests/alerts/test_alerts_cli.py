"""`monitor subscribe` and `monitor calibrate` as real subprocesses."""

import asyncio
import csv
import json
import os
import subprocess
import sys

import numpy as np
from prometheus_client import CollectorRegistry

from monitor.alerts import AlertPublisher, PublisherMetrics, Spool
from monitor.redis import RedisSettings
from tests.support.servers import RedisServer

MONITOR = [sys.executable, "-m", "monitor.cli"]


def run(*args, timeout=60):
    return subprocess.run([*MONITOR, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def publish(url, spool_dir, events):
    pub = AlertPublisher(RedisSettings(url=url), Spool(spool_dir), "h", PublisherMetrics(CollectorRegistry()))
    await pub.start()
    for event in events:
        await pub.publish(event)
    assert await pub.flush(5)
    await pub.close()


def events(prefix, n, stream="cam1"):
    return [{"event_id": f"{prefix}{i}", "alert_id": "a", "type": "updated", "stream_id": stream} for i in range(n)]


async def test_subscribe_catches_up_then_follows(redis_server, tmp_path):
    await publish(redis_server.url, tmp_path / "a", events("old", 3) + events("other", 2, stream="cam2"))
    follower = subprocess.Popen([*MONITOR, "subscribe", "--redis", redis_server.url, "--from-start", "--stream", "cam1",
                                 "--count", "5", "--timeout", "30"], stdout=subprocess.PIPE, text=True)
    await asyncio.sleep(1.5)
    await publish(redis_server.url, tmp_path / "b", events("new", 2))
    out, _ = follower.communicate(timeout=40)
    lines = [json.loads(line) for line in out.splitlines()]
    assert follower.returncode == 0
    assert [e["event_id"] for e in lines] == ["old0", "old1", "old2", "new0", "new1"]
    # Resuming after a log id gives exactly what came after it.
    resumed = run("subscribe", "--redis", redis_server.url, "--since", lines[2]["log_id"], "--timeout", "1")
    assert [json.loads(line)["event_id"] for line in resumed.stdout.splitlines()] == ["other0", "other1", "new0", "new1"]
    resumed = run("subscribe", "--redis", redis_server.url, "--since", lines[2]["log_id"], "--stream", "cam1",
                  "--timeout", "1")
    assert [json.loads(line)["event_id"] for line in resumed.stdout.splitlines()] == ["new0", "new1"]
    # Without --since/--from-start only new events are printed.
    quiet = run("subscribe", "--redis", redis_server.url, "--timeout", "1")
    assert quiet.returncode == 0 and quiet.stdout == ""


def test_subscribe_wrong_password_exits_2_without_secret(tmp_path):
    with RedisServer(password="hunter22") as server:
        result = run("subscribe", "--redis", server.url.replace("hunter22", "not-it-9"), "--timeout", "3")
    assert result.returncode == 2
    assert "authentication failed" in result.stderr
    assert "not-it-9" not in result.stderr + result.stdout and "hunter22" not in result.stderr


def test_subscribe_bad_url_exits_2():
    result = run("subscribe", "--redis", "http://user:pw9@127.0.0.1:1/0", "--timeout", "1")
    assert result.returncode == 2 and "pw9" not in result.stderr


def write_scores(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_calibrate_threshold_meets_the_target_rate(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"video": f"v{v}", "index": i, "p_fake": float(rng.beta(2, 5)), "label": "real"}
            for v in range(20) for i in range(60)]
    rows += [{"video": "fake1", "index": i, "p_fake": 0.99, "label": "fake"} for i in range(60)]  # ignored
    write_scores(tmp_path / "scores.csv", rows)
    result = run("calibrate", tmp_path / "scores.csv", "--fpr", "0.05", "--window-crops", "8", "--json")
    assert result.returncode == 0, result.stderr
    calibration = json.loads(result.stdout)
    # Recompute the windows independently and check the promise: at most 5 % reach the threshold.
    windows = [np.mean([r["p_fake"] for r in rows if r["video"] == f"v{v}"][i:i + 8])
               for v in range(20) for i in range(60 - 8 + 1)]
    assert calibration["windows"] == len(windows) == 20 * 53
    reached = np.mean(np.array(windows) >= calibration["threshold"])
    assert reached <= 0.05
    assert np.mean(np.array(windows) >= calibration["threshold"] - 0.01) > 0.05  # and it is the smallest such
    assert calibration["strict_threshold"] >= calibration["threshold"]
    text = run("calibrate", tmp_path / "scores.csv", "--fpr", "0.05", "--window-crops", "8")
    assert "[verdict]" in text.stdout and f"suspicious = {calibration['threshold']:.4f}" in text.stdout


def test_calibrate_bad_input(tmp_path):
    write_scores(tmp_path / "no_col.csv", [{"score": 0.3}])
    result = run("calibrate", tmp_path / "no_col.csv")
    assert result.returncode == 2 and "no p_fake column" in result.stderr
    write_scores(tmp_path / "bad.csv", [{"p_fake": 0.3}, {"p_fake": "abc"}])
    assert "line 3" in run("calibrate", tmp_path / "bad.csv").stderr
    write_scores(tmp_path / "range.csv", [{"p_fake": 1.3}])
    assert "outside [0, 1]" in run("calibrate", tmp_path / "range.csv").stderr
    assert run("calibrate", tmp_path / "range.csv", "--fpr", "2").returncode == 2
    assert run("calibrate", tmp_path / "absent.csv").returncode == 2
