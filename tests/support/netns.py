"""Run a piece of a test in a network namespace of its own (as root: `unshare -n`), where the loopback
interface also holds an address from the documentation range: a "non-loopback" host address that no traffic
can leave the namespace from. Browsers treat every 127.x address as a secure context; 192.0.2.10 is not one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ADDRESS = "192.0.2.10"
ROOT = Path(__file__).resolve().parents[2]
RUNNER = ("import importlib, json, sys; module, name = sys.argv[1].split(':'); "
          "result = getattr(importlib.import_module(module), name)(*json.loads(sys.argv[2])); "
          "print('NETNS-RESULT ' + json.dumps(result), flush=True)")


def available() -> str | None:
    """Why namespaces cannot be used here, or None."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare (util-linux) and ip (iproute2) are needed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -n is not permitted here: {probe.stderr.strip()}"


def run(target: str, *args, address: str = ADDRESS, timeout: float = 300):
    """`module:function(*args)` (JSON in, JSON out) in a fresh network namespace whose `lo` holds `address`."""
    why = available()
    if why:
        raise RuntimeError(why)
    script = 'ip link set lo up && ip addr add "$0"/32 dev lo && exec "$@"'
    command = ["unshare", "-n", "--", "sh", "-c", script, address, sys.executable, "-c", RUNNER, target,
               json.dumps(list(args))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    marked = [line for line in result.stdout.splitlines() if line.startswith("NETNS-RESULT ")]
    if result.returncode != 0 or not marked:
        raise AssertionError(f"{target} failed in its namespace (exit {result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    print(result.stdout[-2000:])
    return json.loads(marked[-1].removeprefix("NETNS-RESULT "))
