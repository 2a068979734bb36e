"""The `monitor` command line, run as a real subprocess."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.reference_models import make_gend, make_lightning

MONITOR = [sys.executable, "-m", "monitor.cli"]
REPO = Path(__file__).resolve().parents[1]


def run(*args, env=None, timeout=120):
    return subprocess.run([*MONITOR, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    make_lightning(path)
    return path


def test_convert_then_info(ckpt, tmp_path):
    native = tmp_path / "out" / "detector.safetensors"
    result = run("model", "convert", ckpt, native)
    assert result.returncode == 0, result.stderr
    assert native.is_file() and "wrote" in result.stdout
    info = run("model", "info", native, "--json")
    assert info.returncode == 0, info.stderr
    metadata = json.loads(info.stdout)
    import hashlib
    assert metadata["source_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert metadata["source_format"] == "lightning"
    assert metadata["face_template"] == "deepfakebench"
    assert metadata["architecture"] == {"backbone": "clip", "image_size": 224, "patch_size": 14, "width": 128,
                                        "layers": 2, "mlp_width": 512, "num_classes": 2, "registers": 0,
                                        "native_image_size": 0}
    text = run("model", "info", ckpt)
    assert text.returncode == 0 and "face_template" in text.stdout and "deepfakebench" in text.stdout


def test_gend_convert_records_gend_template(tmp_path):
    make_gend(tmp_path / "model.safetensors")
    result = run("model", "convert", tmp_path / "model.safetensors", tmp_path / "gend.safetensors")
    assert result.returncode == 0, result.stderr
    assert json.loads(run("model", "info", tmp_path / "gend.safetensors", "--json").stdout)["face_template"] == "gend"


def test_convert_rejects_bad_input_with_exit_2(tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    result = run("model", "convert", tmp_path / "junk.ckpt", tmp_path / "out.safetensors")
    assert result.returncode == 2
    assert "truncated or corrupt" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.safetensors").exists()
    assert run("model", "info", tmp_path / "absent").returncode == 2


def test_score_images_in_order_with_unreadable_files(ckpt, face_paths, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    missing = tmp_path / "missing.png"
    inputs = [face_paths[0], bad, face_paths[5], missing, face_paths[9]]
    result = run("score-images", "--model", ckpt, "--batch-size", "2", *inputs)
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in lines] == [str(face_paths[0]), str(face_paths[5]), str(face_paths[9])]
    assert all(0.0 < r["p_fake"] < 1.0 for r in lines)
    assert f"{bad}: cannot read image: " in result.stderr
    assert f"{missing}: cannot read image: No such file or directory" in result.stderr
    assert "2 of 5 images could not be read" in result.stderr
    # The same crops scored in one call through the library give the same numbers.
    from PIL import Image

    from monitor.model import Detector
    expected = Detector.load(ckpt, device="cpu").score_images([Image.open(face_paths[i]) for i in (0, 5, 9)])
    assert [r["p_fake"] for r in lines] == pytest.approx(expected.tolist(), abs=2e-6)


def test_score_images_bad_arguments(ckpt, face_paths):
    assert run("score-images", "--model", ckpt, "--precision", "int4", face_paths[0]).returncode == 2
    result = run("score-images", "--model", ckpt, "--batch-size", "0", face_paths[0])
    assert result.returncode == 2 and "--batch-size must be at least 1" in result.stderr
    result = run("score-images", "--model", ckpt, "--device", "quantum", face_paths[0])
    assert result.returncode == 2 and "device" in result.stderr


def test_pull_offline_fails_fast_with_manual_instructions(tmp_path):
    start = time.monotonic()
    result = run("model", "pull", "--dest", tmp_path, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 3
    assert time.monotonic() - start < 30
    assert "monitor model convert" in result.stderr and "model.ckpt" in result.stderr
    assert "Traceback" not in result.stderr


def test_pull_unreachable_hub_fails_within_seconds(tmp_path):
    # Online mode against an endpoint where nothing listens: the probe fails, the client never retries.
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    result = run("model", "pull", "--repo", "yermandy/GenD_CLIP_L_14", "--dest", tmp_path,
                 env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")})
    elapsed = time.monotonic() - start
    print(f"pull against a closed port failed after {elapsed:.1f} s")
    assert result.returncode == 3
    assert elapsed < 20
    assert "cannot reach" in result.stderr and "config.json" in result.stderr


def test_help_explains_every_command():
    for args in (["--help"], ["model", "--help"], ["model", "pull", "--help"], ["score-images", "--help"], ["demo", "--help"]):
        result = run(*args)
        assert result.returncode == 0 and "usage: monitor" in result.stdout
    assert run().returncode == 2


def test_help_and_readme_state_the_same_exit_code_3():
    """`--help` said exit 3 was only the model hub while the registry commands also exit 3 when Redis is away."""
    import re

    help_text = " ".join(run("--help").stdout.split())
    readme = " ".join((REPO / "README.md").read_text().split())
    said = re.search(r"3 a network resource unreachable \(([^)]*)\)", help_text)
    assert said and "model hub" in said[1] and "Redis" in said[1], help_text
    for command in ("record export", "streams", "cluster status"):
        assert command in said[1]
        assert re.search(r"\*\*3\*\* a network resource \(the model hub, or Redis for [^)]*" + command, readme)


def demo_config(tmp_path) -> tuple[str, int]:
    """The shipped demo config on free ports (the tests never take 8089 or 6390, which a user's demo may hold)."""
    from tests.support.servers import free_port

    port, redis_port = free_port(), free_port()
    text = (REPO / "config" / "demo.toml").read_text()
    text = text.replace("port = 8089", f"port = {port}").replace("127.0.0.1:6390", f"127.0.0.1:{redis_port}")
    path = tmp_path / "demo.toml"
    path.write_text(text)
    return str(path), port


def start_demo(config: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([*MONITOR, "demo", "--config", config], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def read_until_ready(demo: subprocess.Popen, timeout: float = 240) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    for line in demo.stderr:
        lines.append(line.rstrip("\n"))
        if '"event": "ready"' in line or time.monotonic() > deadline:
            break
    return lines


def delivered_alerts(port: int) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("deepfake_alerts_delivered_total"))


def wait_for_delivery(port: int, timeout: float = 150) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if delivered := delivered_alerts(port):
            return delivered
        time.sleep(1)
    return 0.0


def stop(demo: subprocess.Popen) -> float:
    """Ctrl-C; the seconds until the process ended."""
    import signal

    started = time.monotonic()
    if demo.poll() is None:
        os.killpg(demo.pid, signal.SIGINT)
    demo.wait(timeout=60)
    return time.monotonic() - started


def test_demo_as_a_user_runs_it_twice_and_again(tmp_path):
    """`monitor demo` as a user starts it: native libraries (LiteRT under mediapipe) print banners and warnings
    to stderr; they go to the log at debug level, so up to `ready` every line is the monitor's own. A second
    demo started beside it is refused at once (exit 2, naming the spool). After Ctrl-C, a demo started again on
    the same spool delivers its alerts (the spool used to number them behind its saved cursor and drop them)."""
    config, port = demo_config(tmp_path)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    demo = start_demo(config, env)
    try:
        lines = read_until_ready(demo)
        assert lines and '"event": "ready"' in lines[-1], lines[-10:]
        foreign = []
        for line in lines:
            if line.startswith("monitor: demo stream "):
                continue
            try:
                json.loads(line)["event"]
            except (ValueError, KeyError, TypeError):
                foreign.append(line)
        print(f"{len(lines)} lines up to ready; not the monitor's: {foreign}")
        assert not foreign

        started = time.monotonic()
        second = subprocess.run([*MONITOR, "demo", "--config", config], capture_output=True, text=True, env=env,
                                timeout=60)
        took = time.monotonic() - started
        print(f"second demo refused in {took:.2f} s: {second.stderr.strip().splitlines()[-1]}")
        assert second.returncode == 2 and "alerts.spool_dir" in second.stderr and "in use" in second.stderr
        assert took < 10  # 2 s on an idle machine; a loose bound here, the exit before the model is the point
        assert "model" not in second.stderr.lower().replace("monitor:", "")

        assert wait_for_delivery(port) >= 1, "the first demo delivered no alert"
    finally:
        stop(demo)
    again = start_demo(config, env)
    try:
        assert '"event": "ready"' in read_until_ready(again)[-1]
        assert wait_for_delivery(port) >= 1, "the demo started again delivered none of its alerts"
    finally:
        took = stop(again)
    # The README's bound: crops that take seconds each on a CPU are not all drained (worker.drain_s), and the
    # process does not wait for torch's finalization. (It took 5-17 s, once 40 s.)
    print(f"the demo stopped {took:.2f} s after Ctrl-C, with an alert open")
    assert again.returncode == 0 and took < 5
