#!/usr/bin/env python3
"""Nothing lost, under churn and crashes: one daemon for N minutes with RTSP, file and WHIP streams, while

- streams are added and removed through the API every few seconds,
- WHIP publishers (aiortc) join and leave the `call` stream,
- the RTSP server is restarted, and `redis-server` is restarted (its append-only file keeps the durable log),
- the webhook receiver refuses every delivery for a while (HTTP 503),
- the daemon itself is killed with SIGKILL and started again on the same spool, `--restarts` times.

An independent subscriber follows the durable log (`XREAD`, reconnecting through the Redis restart) and a real
webhook receiver (signatures checked) records what it accepted; both deduplicate by event id. They are compared
with every alert event the daemon logged (its `alert` lines, written after the event is in the spool): an event
logged and missing at either sink is lost. After the run the daemon is stopped cleanly (and started once more if
its spool still held events), so every alert must have been closed: by recovery, the end of its track, the
shutdown, or, for those open at a SIGKILL, by the next start (reason `restart`).

Figures: events lost (per sink, summed), duplicates after dedupe (one alert transition, `alert_id` + `seq`, with
two event ids; or an alert closed twice), alerts never closed, and growth per hour of the daemon's RSS, open file
descriptors, threads and asyncio tasks: a line fitted within each daemon process from the second restart on
(after its first 30 s), averaged by how long each ran. The kills come in the first half of the run, so the last
process runs for the second half. Last line:
`RESULT lost_events=... duplicate_after_dedupe=... unclosed_alerts=... rss_growth_mb_per_h=... fd_growth=...
thread_growth=... task_growth=...` (the growths per hour).

  python bench/soak.py --quick            # 3 minutes, 5 restarts
  python bench/soak.py --minutes 30
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
import json
import signal
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import aiohttp
import numpy as np
import redis
import redis.asyncio as aioredis

from monitor.alerts.spool import Spool
from monitor.sources.webrtc import restrict_host_addresses
from tests.support.faces import face_paths, load_crops
from tests.support.media import face_frames, write_mp4
from tests.support.reference_models import make_lightning
from tests.support.servers import RedisServer, RtspServer, free_port
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.whip_client import WhipPublisher

API_TOKEN, WHIP_TOKEN, HOOK_SECRET = "soak-api-token", "soak-whip-token", "soak-hook-secret"
WARM_UP_S = 30.0  # a daemon process's first seconds (imports, model, streams, allocator pools) are not growth


def config_text(tmp: Path, clip: Path, rtsp_url: str, redis_url: str, hook_url: str, port: int) -> str:
    return f"""
instance = "soak"
[model]
path = "{tmp / 'model.ckpt'}"
devices = ["cpu"]
[worker]
max_batch = 8
buckets = [1, 8]
[sampling]
sample_fps = 3
[window]
seconds = 4
min_crops = 2
[verdict]
suspicious = 0.05
manipulated = 0.99
enter_crops = 2
enter_seconds = 0
exit_seconds = 1
[faces]
track_max_absence_s = 1.5
[alerts]
spool_dir = "{tmp / 'spool'}"
update_interval_s = 2
[evidence]
enabled = false
[redis]
url = "{redis_url}"
timeout_s = 1
[http]
port = {port}
token = "{API_TOKEN}"
[whip]
token = "{WHIP_TOKEN}"
host_addresses = ["127.0.0.1"]
[logging]
format = "json"
[[sinks]]
type = "webhook"
name = "hook"
url = "{hook_url}"
secret = "{HOOK_SECRET}"
timeout_s = 2
[[streams]]
id = "cam"
url = "{rtsp_url}"
[[streams]]
id = "file"
url = "{clip}"
sampling = {{ loop = true }}
[[streams]]
id = "call"
url = "whip"
"""


class Daemon:
    """`monitor run` as a child process, its output appended to one log across restarts."""

    def __init__(self, config: Path, log: Path, port: int):
        self.config, self.log_path, self.port = config, log, port
        self.process: subprocess.Popen | None = None
        self.restarts: list[float] = []  # monotonic times of the starts after a kill

    def start(self) -> None:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT)

    async def ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the daemon exited ({self.process.returncode}): see {self.log_path}")
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError("the daemon did not become ready")

    async def kill_and_restart(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.process.wait)
        self.restarts.append(time.monotonic())
        self.start()
        await self.ready()

    async def stop(self) -> int:
        """SIGTERM, waited for without blocking this loop (the webhook receiver answers on it)."""
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.process.wait, 60)


def sample(pid: int) -> dict | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "fds": fds, "threads": int(fields["Threads"])}


async def loop_tasks(port: int) -> int | None:
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=3)) as r:
                for line in (await r.text()).splitlines():
                    if line.startswith("deepfake_event_loop_tasks "):
                        return int(float(line.split()[1]))
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None
    return None


async def follow_log(url: str, got: dict, stop: asyncio.Event) -> None:
    """An independent subscriber: XREAD the durable log from the start, through outages, keeping every event."""
    last = "0-0"
    while not stop.is_set():
        client = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=3, socket_connect_timeout=1)
        try:
            while not stop.is_set():
                answer = await client.xread({"deepfake:events": last}, count=500, block=1000)
                for _, entries in answer or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        event = json.loads(fields["event"])
                        got.setdefault(event["event_id"], event)
        except (redis.RedisError, OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.5)
        finally:
            await client.aclose()


async def churn_api(port: int, clip: Path, stop: asyncio.Event, every_s: float, counts: dict) -> None:
    """A stream added every few seconds through the API; the one added two rounds before removed."""
    added: list[str] = []
    n = 0
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            n += 1
            try:
                body = {"id": f"api{n}", "url": str(clip), "sampling": {"loop": True}}
                async with http.post(f"http://127.0.0.1:{port}/streams", json=body, headers=headers) as r:
                    if r.status == 201:
                        added.append(body["id"])
                        counts["api_added"] += 1
                while len(added) > 2:
                    async with http.delete(f"http://127.0.0.1:{port}/streams/{added[0]}", headers=headers) as r:
                        if r.status in (200, 204, 404):
                            counts["api_removed"] += 1
                            added.pop(0)
                        else:
                            break
            except aiohttp.ClientError:
                pass  # the daemon is restarting
            await sleep_unless(stop, every_s)


async def churn_whip(port: int, clip: Path, stop: asyncio.Event, counts: dict) -> None:
    """WHIP publishers join the `call` stream for a few seconds, then leave."""
    base = f"http://127.0.0.1:{port}"
    while not stop.is_set():
        publisher = WhipPublisher(f"{base}/whip/call", WHIP_TOKEN)
        try:
            response = await publisher.publish(path=str(clip))
            if response.status == 201:
                counts["whip_sessions"] += 1
                await sleep_unless(stop, 6)
                await publisher.delete(base)
        except (aiohttp.ClientError, OSError, KeyError):
            pass
        finally:
            await publisher.close()
        await sleep_unless(stop, 3)


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


def logged_events(log: Path) -> tuple[dict[str, dict], int]:
    """Every alert event the daemon logged (after spooling it), and how many daemon processes logged `ready`."""
    events, readies = {}, 0
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "alert" and record.get("event_id"):
            events[record["event_id"]] = record
        elif record.get("event") == "ready":
            readies += 1
    return events, readies


def growth_per_hour(samples: list[dict], key: str, first: float) -> float:
    """Per-hour slope of `key` within each daemon process that ran after `first` (monotonic), after its warm-up
    (a least-squares line through its samples), averaged by how long each was watched."""
    slopes, weights = [], []
    by_pid = defaultdict(list)
    for s in samples:
        by_pid[s["pid"]].append(s)
    for rows in by_pid.values():
        start = rows[0]["t"]
        rows = [r for r in rows if r["t"] >= max(start + WARM_UP_S, first) and r.get(key) is not None]
        if len(rows) < 4 or rows[-1]["t"] - rows[0]["t"] < 10:
            continue
        t = np.array([r["t"] for r in rows])
        y = np.array([r[key] for r in rows], dtype=float)
        slopes.append(np.polyfit(t - t[0], y, 1)[0] * 3600)
        weights.append(t[-1] - t[0])
    return float(np.average(slopes, weights=weights)) if slopes else float("nan")


async def soak(args) -> None:
    restrict_host_addresses(["127.0.0.1"])
    duration = args.minutes * 60
    crops = load_crops(face_paths()[::4])
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp_name:
        tmp = Path(tmp_name)
        # Faces come and go (6 s in, 4 s out): tracks start and end, alerts open and close all the time.
        clip = write_mp4(tmp / "faces.mp4", face_frames(crops, 25 * 40, size=(480, 360), face_px=160,
                                                        faces_in=lambda i: (i // 25) % 10 < 6))
        make_lightning(tmp / "model.ckpt", width=64, layers=1)
        redis_server = RedisServer(args=("--appendonly", "yes", "--appendfsync", "always")).start()
        rtsp = RtspServer(file=str(clip), size="480x360").start()
        hook = await WebhookReceiver(HOOK_SECRET).start()
        failing = {"on": False}
        hook.answer = lambda event: 503 if failing["on"] else 200
        port = free_port()
        config = tmp / "monitor.toml"
        config.write_text(config_text(tmp, clip, rtsp.url("file"), redis_server.url, hook.url, port))
        daemon = Daemon(config, tmp / "daemon.log", port)
        got: dict[str, dict] = {}
        stop = asyncio.Event()
        counts = defaultdict(int)
        samples: list[dict] = []
        tasks = []
        try:
            daemon.start()
            await daemon.ready()
            started = time.monotonic()
            print(f"daemon ready; soaking {args.minutes:g} min with {args.restarts} SIGKILL restarts", flush=True)
            tasks = [asyncio.create_task(follow_log(redis_server.url, got, stop)),
                     asyncio.create_task(churn_api(port, clip, stop, 4.0, counts)),
                     asyncio.create_task(churn_whip(port, clip, stop, counts))]
            # The kills come in the first half: the last process then runs half the run, long enough to see growth.
            kills = [duration * f for f in np.linspace(0.1, 0.5, args.restarts)] if args.restarts else []
            faults = sorted([(t, "kill") for t in kills] + [
                (duration * 0.25, "rtsp_restart"), (duration * 0.45, "redis_restart"),
                (duration * 0.60, "hook_failing"), (duration * 0.75, "hook_healthy")])
            while (elapsed := time.monotonic() - started) < duration:
                while faults and faults[0][0] <= elapsed:
                    _, fault = faults.pop(0)
                    print(f"  {elapsed:6.1f} s: {fault.replace('_', ' ')}", flush=True)
                    if fault == "kill":
                        await daemon.kill_and_restart()
                    elif fault == "rtsp_restart":
                        rtsp.stop()
                        await asyncio.sleep(2)
                        rtsp.start()
                    elif fault == "redis_restart":
                        redis_server.stop()  # SIGTERM: the append-only file is complete
                        await asyncio.sleep(3)
                        redis_server.start()
                    else:
                        failing["on"] = fault == "hook_failing"
                row = sample(daemon.process.pid)
                if row is not None:
                    samples.append({"t": time.monotonic(), "pid": daemon.process.pid, **row,
                                    "tasks": await loop_tasks(port)})
                await asyncio.sleep(2)
            stop.set()
            await asyncio.gather(*tasks[1:], return_exceptions=True)
            # A clean stop: open alerts close (shutdown) and the spool flushes; whatever it could not deliver in
            # its bound is delivered by the next start, as in production.
            code = await daemon.stop()
            for _ in range(3):
                left = Spool(tmp / "spool", sinks=["redis", "hook"])
                pending = {s: left.pending(s) for s in ("redis", "hook")}
                left.close()
                if not any(pending.values()):
                    break
                print(f"  the stop left {pending} in the spool: starting once more to deliver it", flush=True)
                daemon.start()
                await daemon.ready()
                await asyncio.sleep(5)
                code = await daemon.stop()
            await asyncio.sleep(2)  # the subscriber reads the last entries
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if daemon.process and daemon.process.poll() is None:
                daemon.process.kill()
            await hook.stop()
            rtsp.stop()
        # The durable log as a whole too (the subscriber may have been between reconnects at the very end).
        for _, fields in redis.Redis.from_url(redis_server.url, decode_responses=True).xrange("deepfake:events"):
            event = json.loads(fields["event"])
            got.setdefault(event["event_id"], event)
        redis_server.stop()
        if args.keep:
            import shutil

            shutil.copytree(tmp, args.keep, dirs_exist_ok=True)
            Path(args.keep, "webhook.jsonl").write_text("".join(json.dumps(e) + "\n" for e in hook.accepted))
            Path(args.keep, "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))
        made, readies = logged_events(daemon.log_path)
        hooked = {e["event_id"]: e for e in hook.accepted}
        lost_redis = sorted(set(made) - set(got))
        lost_hook = sorted(set(made) - set(hooked))
        transitions = defaultdict(set)
        closes = defaultdict(set)
        for event in got.values():
            transitions[(event["alert_id"], event["seq"])].add(event["event_id"])
            if event["type"] == "closed":
                closes[event["alert_id"]].add(event["event_id"])
        duplicates = sum(len(ids) - 1 for ids in transitions.values()) + sum(
            len(ids) - 1 for ids in closes.values() if len(ids) > 1)
        opened = {e["alert_id"] for e in got.values() if e["type"] == "opened"}
        unclosed = sorted(opened - set(closes))
        reasons = defaultdict(int)
        for event in got.values():
            if event["type"] == "closed":
                reasons[event["close_reason"]] += 1
        unlogged = len(set(got) - set(made))
        first = daemon.restarts[1] if len(daemon.restarts) >= 2 else 0.0
        growth = {key: growth_per_hour(samples, key, first) for key in ("rss_mb", "fds", "threads", "tasks")}
    print(f"{readies} daemon starts, exit code {code}; API streams added {counts['api_added']}, removed "
          f"{counts['api_removed']}; WHIP sessions {counts['whip_sessions']}")
    print(f"alert events logged by the daemon {len(made)}; in the Redis log {len(got)} ({unlogged} not in the log "
          f"lines); accepted by the webhook {len(hooked)}; webhook requests {hook.requests}")
    print(f"lost: Redis {len(lost_redis)} {lost_redis[:5]}, webhook {len(lost_hook)} {lost_hook[:5]}; "
          f"duplicates after dedupe {duplicates}; alerts {len(opened)}, never closed {len(unclosed)} {unclosed[:5]}")
    print("close reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    print("growth per hour (within each process from the second restart on, after its warm-up): " +
          ", ".join(f"{k} {v:+.2f}" for k, v in growth.items()))
    print(f"RESULT lost_events={len(lost_redis) + len(lost_hook)} duplicate_after_dedupe={duplicates} "
          f"unclosed_alerts={len(unclosed)} rss_growth_mb_per_h={growth['rss_mb']:.1f} fd_growth={growth['fds']:.1f} "
          f"thread_growth={growth['threads']:.1f} task_growth={growth['tasks']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--restarts", type=int, default=5, help="SIGKILL + start again on the same spool")
    parser.add_argument("--quick", action="store_true", help="3 minutes")
    parser.add_argument("--keep", metavar="DIR", help="keep the daemon's log, config and spool in DIR")
    args = parser.parse_args()
    if args.quick:
        args.minutes = 3.0
    asyncio.run(soak(args))


if __name__ == "__main__":
    main()
