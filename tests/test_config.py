"""Config validation: malformed files exit 2 naming the key and start nothing; secrets by reference."""

import json
import socket
from pathlib import Path

import pytest

from monitor import cli
from monitor.config import ConfigError, load, masked, parse

STREAM = '[[streams]]\nid = "cam1"\nurl = "rtsp://127.0.0.1:8554/live"\n'

MALFORMED = {
    "wrong type": ('[worker]\nmax_batch = "many"\n', "worker.max_batch"),
    "negative batch": ("[worker]\nmax_batch = -4\n", "worker.max_batch"),
    "unknown compile mode": ("[worker]\ncompile = \"fastest\"\n", "worker.compile"),
    "unknown top key": ("colour = 1\n", "colour: unknown key"),
    "unknown nested key": ("[redis]\nhostname = 'x'\n", "redis.hostname: unknown key"),
    "missing env secret": ('[redis]\nurl = "redis://:${NO_SUCH_SECRET_VAR}@127.0.0.1/0"\n', "redis.url"),
    "missing credential dir": ('[http]\ntoken = "${credential:api-token}"\n', "http.token"),
    "bad stream url scheme": ('[[streams]]\nid = "a"\nurl = "ftp://host/x"\n', "streams.0.url"),
    "rtsp url without host": ('[[streams]]\nid = "a"\nurl = "rtsp:///path"\n', "streams.0.url"),
    "url with spaces": ('[[streams]]\nid = "a"\nurl = "rtsp://host/a b"\n', "streams.0.url"),
    "negative sample rate": ("[sampling]\nsample_fps = -1\n", "sampling.sample_fps"),
    "zero sample rate": ("[sampling]\nsample_fps = 0\n", "sampling.sample_fps"),
    "threshold above 1": ("[verdict]\nsuspicious = 1.5\n", "verdict.suspicious"),
    "threshold negative": ("[verdict]\nmanipulated = -0.1\n", "verdict.manipulated"),
    "thresholds out of order": ("[verdict]\nsuspicious = 0.9\nmanipulated = 0.8\n", "manipulated threshold"),
    "duplicate stream ids": (STREAM + STREAM, "duplicate stream id 'cam1'"),
    "stream without url": ('[[streams]]\nid = "a"\n', "streams.0.url"),
    "bad stream id": ('[[streams]]\nid = "a b/c"\nurl = "x.mp4"\n', "streams.0.id"),
    "bad per-stream override": ('[[streams]]\nid = "a"\nurl = "x.mp4"\nverdict = { suspicious = 2 }\n',
                                "streams.0.verdict"),
    "unknown per-stream override": ('[[streams]]\nid = "a"\nurl = "x.mp4"\nsampling = { fps = 2 }\n',
                                    "streams.0.sampling"),
    "bad precision": ('[model]\nprecision = "int4"\n', "model.precision"),
    "empty devices": ("[model]\ndevices = []\n", "model.devices"),
    "bad port": ("[http]\nport = 70000\n", "http.port"),
    "bad statistic": ('[window]\nstatistic = "max"\n', "window.statistic"),
    "negative window": ("[window]\nseconds = -5\n", "window.seconds"),
    "bad mode": ('[sampling]\nmode = "some"\n', "sampling.mode"),
    "bad transport": ('[sampling]\ntransport = "quic"\n', "sampling.transport"),
    "empty prefix": ('[redis]\nprefix = ""\n', "redis.prefix"),
    "redis password with a raw slash": ('[redis]\nurl = "redis://:Pa/ss@127.0.0.1:6379/0"\n', "redis.url: the password"),
    "bad log level": ('[logging]\nlevel = "loud"\n', "logging.level"),
    "whip sessions zero": ("[whip]\nmax_sessions = 0\n", "whip.max_sessions"),
    "not toml": ("[worker\nmax_batch = 3\n", "not valid TOML"),
    "webhook without url": ('[[sinks]]\ntype = "webhook"\n', "sinks.0.url"),
    "webhook with a bad url": ('[[sinks]]\ntype = "webhook"\nurl = "ftp://h/x"\n', "sinks.0.url"),
    "unknown sink type": ('[[sinks]]\ntype = "email"\nurl = "https://h/x"\n', "sinks.0.type"),
    "duplicate sink names": ('[[sinks]]\ntype = "webhook"\nname = "a"\nurl = "https://h/x"\n' * 2, "sinks.1.name"),
    "a sink named redis": ('[[sinks]]\ntype = "webhook"\nname = "redis"\nurl = "https://h/x"\n', "sinks.0.name"),
    "bad verdict filter": ('[[sinks]]\ntype = "webhook"\nurl = "https://h/x"\nverdicts = ["bad"]\n',
                           "sinks.0.verdicts"),
    "negative webhook timeout": ('[[sinks]]\ntype = "webhook"\nurl = "https://h/x"\ntimeout_s = -1\n',
                                 "sinks.0.timeout_s"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_configs_exit_2_naming_the_key(name, tmp_path, capsys, monkeypatch):
    text, key = MALFORMED[name]
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    assert cli.main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert key in err, err


def test_run_with_a_bad_config_starts_nothing(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "monitor.toml"
    path.write_text(f"[http]\nport = {port}\n[redis]\nstart_local = true\nurl = 'redis://127.0.0.1:{port}/0'\n"
                    "[verdict]\nsuspicious = 7\n")
    assert cli.main(["run", "--config", str(path)]) == 2
    assert "verdict.suspicious" in capsys.readouterr().err
    with socket.socket() as s:  # nothing bound the port, no redis-server was started on it
        s.bind(("127.0.0.1", port))


def test_secrets_by_reference_and_masked_output(tmp_path, monkeypatch, capsys):
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "api-token").write_text("tok-from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    monkeypatch.setenv("CAM_PASSWORD", "cam-secret-77")
    path = tmp_path / "monitor.toml"
    path.write_text('[http]\ntoken = "${credential:api-token}"\n[whip]\nstream_tokens = { call = "w-secret-9" }\n'
                    '[[streams]]\nid = "cam"\nurl = "rtsp://admin:${CAM_PASSWORD}@127.0.0.1/x"\n')
    config = load(path)
    assert config.http.token == "tok-from-credential"
    assert config.streams[0].url == "rtsp://admin:cam-secret-77@127.0.0.1/x"
    assert cli.main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["http"]["token"] == "***" and shown["whip"]["stream_tokens"] == {"call": "***"}
    assert shown["streams"][0]["url"] == "rtsp://admin:***@127.0.0.1/x"
    for secret in ("tok-from-credential", "cam-secret-77", "w-secret-9"):
        assert secret not in out
    assert masked(config)["sampling"]["sample_fps"] == 2.0


def test_example_and_demo_configs_are_valid(monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("REDIS_PASSWORD", "x")
    monkeypatch.setenv("LOBBY_CAMERA_PASSWORD", "y")
    monkeypatch.setenv("MONITOR_DEMO_VIDEO", "/tmp/demo.mp4")
    monkeypatch.setenv("MONITOR_DEMO_DIR", "/tmp/demo")
    creds = Path(__file__).parent
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with pytest.raises(ConfigError, match="credential 'api-token' not found"):
        load(root / "config" / "example.toml")
    assert load(root / "config" / "demo.toml").streams[0].url == "/tmp/demo.mp4"
    assert parse({}).streams == []


def test_the_shipped_example_is_valid_for_another_host(capsys, monkeypatch):
    """config/example.toml references secrets this host does not have: check-config says which and fails;
    with --other-host it validates the file with placeholders, lists them, and runs no host checks."""
    for name in ("REDIS_PASSWORD", "LOBBY_CAMERA_PASSWORD", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    example = Path(__file__).resolve().parents[1] / "config" / "example.toml"
    assert cli.main(["check-config", str(example)]) == 2
    err = capsys.readouterr().err
    assert "redis.url: environment variable REDIS_PASSWORD is not set" in err and "--other-host" in err
    assert cli.main(["check-config", "--other-host", str(example)]) == 0
    captured = capsys.readouterr()
    shown = json.loads(captured.out)
    assert shown["http"]["token"] == "***" and "placeholder" not in captured.out
    for reference in ("redis.url: ${REDIS_PASSWORD}", "http.token: ${credential:api-token}",
                      "streams.0.url: ${LOBBY_CAMERA_PASSWORD}"):
        assert f"validated with a placeholder: {reference}" in captured.err
    assert "host checks (spool, ports, devices, checkpoint files) not run" in captured.err


def test_other_host_still_refuses_what_is_wrong_in_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "monitor.toml"
    path.write_text('[http]\ntoken = "${credential:api-token}"\n[verdict]\nsuspicious = 7\n')
    assert cli.main(["check-config", "--other-host", str(path)]) == 2
    assert "verdict.suspicious" in capsys.readouterr().err
