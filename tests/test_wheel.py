"""The package as users install it: an sdist and a wheel built from the sources (setuptools' PEP 517 hooks, as
`python -m build --no-isolation` calls them), the wheel installed on its own into an empty folder, then run from
there, far from this checkout: `monitor --help`, `check-config` on the example config, and the console's pages
served from the installed package data. Test data is never packaged."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SERVE_PAGES = """
import asyncio, sys
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
import monitor
from monitor import pages

async def main():
    app = web.Application()
    pages.add_static_routes(app)
    app.router.add_get("/", lambda request: pages.asset("console.html"))
    app.router.add_get("/publish", lambda request: pages.asset("publish.html"))
    async with TestClient(TestServer(app)) as client:
        for path in ("/", "/publish", "/static/console.js", "/static/console.css", "/static/publish.js"):
            response = await client.get(path)
            body = await response.read()
            print(path, response.status, response.content_type, len(body))
    print("package", monitor.__file__)

asyncio.run(main())
"""


def build(tmp_path: Path) -> tuple[Path, Path]:
    """sdist and wheel from a copy of the sources (the build writes egg-info and build/ beside them)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "monitor", source / "monitor", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    # (build_meta rewrites sys.argv: the folder is read first)
    script = "import sys; from setuptools import build_meta as b; d = sys.argv[1]; b.build_sdist(d); b.build_wheel(d)"
    result = subprocess.run([sys.executable, "-c", script, str(dist)], cwd=source, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (sdist,), (wheel,) = list(dist.glob("*.tar.gz")), list(dist.glob("*.whl"))
    return sdist, wheel


def test_the_wheel_installs_alone_and_runs(tmp_path):
    sdist, wheel = build(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("monitor/cli/__main__.py", "monitor/redis/fencing.py", "monitor/scoring/judge.py",
                   "monitor/pages/static/console.html", "monitor/pages/static/console.js",
                   "monitor/pages/static/publish.html", "monitor/pages/static/login.html"):
        assert needed in names, f"{needed} missing from the wheel"
    assert not [n for n in names if n.startswith("tests/") or "fixtures" in n], "test data in the wheel"
    with tarfile.open(sdist) as archive:
        assert any(n.endswith("monitor/pages/static/console.html") for n in archive.getnames())

    target = tmp_path / "installed"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                             "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # Run from an empty folder with only the installed package first on the path (its dependencies come from this
    # environment): never this checkout.
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "HOME": str(tmp_path / "home")}

    def monitor(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "monitor.cli", *args], cwd=away, env=env, capture_output=True,
                              text=True, timeout=300)

    helped = monitor("--help")
    assert helped.returncode == 0 and "check-config" in helped.stdout and "demo" in helped.stdout, helped.stderr
    script = target / "bin" / "monitor"
    assert script.is_file(), "no console script"
    version = subprocess.run([str(script), "--version"], cwd=away, env=env, capture_output=True, text=True,
                             timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("monitor "), version.stderr
    checked = monitor("check-config", str(REPO / "config" / "example.toml"), "--other-host")
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert '"streams"' in checked.stdout and "valid" in checked.stderr

    served = subprocess.run([sys.executable, "-c", SERVE_PAGES], cwd=away, env=env, capture_output=True, text=True,
                            timeout=120)
    assert served.returncode == 0, served.stderr[-2000:]
    lines = served.stdout.splitlines()
    print("\n".join(lines))
    assert lines[-1].startswith(f"package {target}"), "the checkout's package ran, not the installed one"
    for line in lines[:-1]:
        path, status, content_type, size = line.split()
        assert status == "200" and int(size) > 100, line
