#!/usr/bin/env python3
"""Cluster failover: three daemons (real processes, tiny model) share six RTSP streams through one Redis; random
daemons are killed (-9) or stopped (SIGTERM) and started again, over and over, while a sampler asks every
daemon every 100 ms which streams it runs under a lease it trusts.

Measured per event: from the kill -9 until each of the victim's streams scores on another daemon (its state
hash written by the new owner with crops scored), and from the SIGTERM until each of the leaving daemon's
streams does. Counted over the run: samples in which two daemons both trusted their lease of one stream
(must be 0), alert ids opened twice (0), and alerts opened and never closed once every daemon has stopped (0).
Every face alerts (threshold 0.01), so every stream always has an open alert to move.
Last line: `RESULT failover_s_p50=... failover_s_max=... handoff_s_max=... dual_owner_samples=...
duplicate_alerts=... lost_closes=...`.

  python bench/cluster.py --quick   # one kill -9 and one SIGTERM
  python bench/cluster.py           # about three minutes of them
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
import random
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support.cluster import Sampler, leases, log_events, start_node
from tests.support.daemon import ready, wait_until
from tests.support.faces import face_paths, load_crops
from tests.support.media import face_frames, write_mp4
from tests.support.runtime import tiny_checkpoint
from tests.support.servers import RedisServer, RtspServer

TTL = 3.0
STREAMS = [f"cam-{i}" for i in range(6)]
NAMES = ("node-a", "node-b", "node-c")


async def run(args) -> dict:
    failovers, handoffs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = write_mp4(folder / "faces.mp4", face_frames(load_crops(face_paths()[::8]), 10 * 30, size=(320, 240),
                                                           face_px=110), fps=10)
        checkpoint = tiny_checkpoint(folder)
        with RedisServer() as redis_server, RtspServer(file=str(clip), size="320x240") as rtsp:
            url = redis_server.url
            client = redis.Redis.from_url(url, decode_responses=True)
            streams = folder / "streams.toml"
            streams.write_text("".join(f'[[streams]]\nid = "{s}"\nurl = "rtsp://127.0.0.1:{rtsp.port}/file"\n'
                                       for s in STREAMS))
            subprocess.run([sys.executable, "-m", "monitor.cli", "streams", "import", str(streams), "--redis", url],
                           check=True, capture_output=True)
            nodes = {n: start_node(folder, n, checkpoint, url, ttl=TTL) for n in NAMES}
            sampler = Sampler(list(nodes.values()))
            try:
                for node in nodes.values():
                    assert await wait_until(lambda node=node: ready(node.base), 120), node.process.tail()
                sampler.start()

                def owners():
                    return {s: (o[0] if o else None) for s, o in leases(client, STREAMS).items()}

                def scoring_on_others(moved, gone) -> bool:
                    now = owners()
                    return all(now[s] not in (None, gone) and client.hget(f"deepfake:stream:{s}", "instance") == now[s]
                               and int(client.hget(f"deepfake:stream:{s}", "crops_scored") or 0) > 0 for s in moved)

                await wait_until(lambda: _value(None not in owners().values()), 30)
                rounds = 1 if args.quick else None
                end = time.monotonic() + args.seconds
                done = 0
                while (rounds is None and time.monotonic() < end) or (rounds is not None and done < rounds):
                    for kind in ("kill", "term"):
                        alive = [n for n in NAMES if nodes[n].alive() and n in owners().values()]
                        name = random.choice(alive)
                        moved = [s for s, o in owners().items() if o == name]
                        started = time.monotonic()
                        nodes[name].kill(signal.SIGKILL if kind == "kill" else signal.SIGTERM)
                        await wait_until(lambda m=moved, g=name: _value(scoring_on_others(m, g)), 30, step=0.05)
                        took = time.monotonic() - started
                        (failovers if kind == "kill" else handoffs).append(took)
                        print(f"{'kill -9' if kind == 'kill' else 'SIGTERM'} {name}: {len(moved)} stream(s) scoring "
                              f"elsewhere after {took:.2f} s", flush=True)
                        nodes[name].process.process.wait(30)
                        nodes[name].process.log.close()
                        nodes[name] = start_node(folder, name, checkpoint, url, ttl=TTL)  # back for the next round
                        sampler.nodes.append(nodes[name])
                        await wait_until(lambda n=nodes[name]: ready(n.base), 120)
                        await asyncio.sleep(TTL)
                    done += 1
            finally:
                await sampler.stop()
                for node in nodes.values():
                    if node.alive():
                        node.process.stop(timeout=30)
            log = log_events(client)
    opened = [e["alert_id"] for e in log if e["type"] == "opened"]
    closed = {e["alert_id"] for e in log if e["type"] == "closed"}
    return {"failover": failovers, "handoff": handoffs, "dual": len(sampler.dual), "samples": sampler.samples,
            "duplicates": len(opened) - len(set(opened)), "lost_closes": len(set(opened) - closed),
            "alerts": len(set(opened))}


async def _value(x):
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=180, help="how long to keep killing (default 180)")
    args = parser.parse_args()
    random.seed(0)
    result = asyncio.run(run(args))
    failover, handoff = result["failover"], result["handoff"]
    print(f"{len(failover)} kill -9, {len(handoff)} SIGTERM; {result['samples']} sampler rounds; "
          f"{result['alerts']} alerts (lease TTL {TTL} s, renewal every {TTL / 3:.0f} s)")
    print(f"RESULT failover_s_p50={statistics.median(failover):.2f} failover_s_max={max(failover):.2f} "
          f"handoff_s_max={max(handoff):.2f} dual_owner_samples={result['dual']} "
          f"duplicate_alerts={result['duplicates']} lost_closes={result['lost_closes']}")


if __name__ == "__main__":
    main()
