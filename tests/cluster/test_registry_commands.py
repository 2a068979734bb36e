"""The registry commands against a real redis-server: `monitor streams import FILE` refuses a file it cannot
read, naming it; a malformed stream is refused naming the key; a password written out is never shown."""

import json
import subprocess
import sys
import time

import pytest
import redis

from monitor.cluster.commands import read_streams
from monitor.errors import EXIT_BAD_INPUT, MonitorError
from tests.support.servers import RedisServer


def monitor(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("text, message", [
    (None, "no such config file"),
    ("[[streams]\nid = 'a'\n", "not valid TOML"),
    ("[model]\nname = 'x'\n", "no [[streams]] tables"),
    ("streams = 3\n", "no [[streams]] tables"),
])
def test_unreadable_files_are_refused(tmp_path, text, message):
    path = tmp_path / "streams.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(MonitorError) as raised:
        read_streams(str(path))
    assert raised.value.exit_code == EXIT_BAD_INPUT
    assert str(path) in str(raised.value) and message in str(raised.value)


def test_tables_are_returned_as_written(tmp_path):
    path = tmp_path / "streams.toml"
    path.write_text('[[streams]]\nid = "lobby"\nurl = "rtsp://cam:${PW}@10.0.0.5/live"\n')
    assert read_streams(str(path)) == [{"id": "lobby", "url": "rtsp://cam:${PW}@10.0.0.5/live"}]


@pytest.mark.parametrize("password", ["P@ss:w%rd", "P%40ss%2Fw%3A"])
def test_a_written_out_password_is_stored_but_never_shown(password):
    """The registry keeps a stream as written (an inline password is allowed, with a warning), but no command
    that lists the fleet shows it."""
    with RedisServer() as server:
        url = f"rtsp://admin:{password}@127.0.0.1:8554/live"
        added = monitor("streams", "add", "cam", url, "--redis", server.url)
        assert added.returncode == 0 and "written out" in added.stderr, added.stderr
        assert json.loads(redis.Redis.from_url(server.url).hget("deepfake:registry", "cam"))["url"] == url
        outputs = [added.stdout + added.stderr]
        for args in (("streams", "list"), ("streams", "list", "--json"), ("cluster", "status"),
                     ("cluster", "status", "--json")):
            shown = monitor(*args, "--redis", server.url)
            assert shown.returncode == 0, shown.stderr
            outputs.append(shown.stdout + shown.stderr)
        assert "cam" in outputs[1] and "admin:***@127.0.0.1:8554/live" in outputs[1]
        for text in outputs:
            assert password not in text and "P@ss" not in text and "P%40" not in text


def test_a_malformed_stream_is_refused_naming_the_key():
    with RedisServer() as server:
        refused = monitor("streams", "add", "cam", "rtsp://h/x", "--table", '{"sampling": {"sample_fps": "fast"}}',
                          "--redis", server.url)
        assert refused.returncode == 2 and "sampling.sample_fps" in refused.stderr, refused.stderr
        bad_json = monitor("streams", "add", "cam", "rtsp://h/x", "--table", "{nope", "--redis", server.url)
        assert bad_json.returncode == 2 and "--table" in bad_json.stderr, bad_json.stderr
        assert redis.Redis.from_url(server.url).hlen("deepfake:registry") == 0


@pytest.mark.parametrize("command", [("streams", "list"), ("cluster", "status"), ("streams", "remove", "cam")])
def test_an_unusable_or_unreachable_redis_fails_clearly_without_the_password(command):
    # A raw '/' in the password would make any URL parser take part of it for the host (and print that).
    cut = monitor(*command, "--redis", "redis://:Se/cr@t-pw@127.0.0.1:1/0")
    assert cut.returncode == 2 and "percent-encoded" in cut.stderr and "cr@t" not in cut.stderr, cut.stderr
    gone = monitor(*command, "--redis", "redis://:Se%2Fcr@t-pw@127.0.0.1:1/0")
    assert gone.returncode == 3 and "unreachable" in gone.stderr, gone.stderr
    assert "cr@t" not in gone.stderr and "Se%2F" not in gone.stderr and "Se/" not in gone.stderr


def test_adding_to_a_registry_no_daemon_watches_warns_that_nothing_will_run_it(tmp_path):
    with RedisServer() as server:
        added = monitor("streams", "add", "lobby", "rtsp://127.0.0.1:8554/lobby", "--redis", server.url)
        assert added.returncode == 0 and "added lobby" in added.stdout
        assert "no cluster daemon is alive" in added.stderr and "nothing runs stream 'lobby'" in added.stderr
        path = tmp_path / "streams.toml"
        path.write_text('[[streams]]\nid = "hall"\nurl = "rtsp://127.0.0.1:8554/hall"\n')
        imported = monitor("streams", "import", str(path), "--redis", server.url)
        assert imported.returncode == 0 and "no cluster daemon is alive" in imported.stderr
        # A daemon heartbeating on the registry (as ClusterCoordinator does): no warning.
        redis.Redis.from_url(server.url).zadd("deepfake:cluster:members", {"host-a": time.time()})
        quiet = monitor("streams", "add", "desk", "rtsp://127.0.0.1:8554/desk", "--redis", server.url)
        assert quiet.returncode == 0 and "no cluster daemon" not in quiet.stderr
