"""Calibration to a false-alert budget on synthetic traces with known statistics (tests/support/traces.py).

The oracle below counts alerts its own way, with numpy, for a policy simple enough to state in one line (an
alert opens when the window mean reaches the threshold and closes when it falls below it), so the figures
`monitor calibrate` reports are checked against a count it did not make.
"""

import json
import math
import subprocess
import tomllib

import numpy as np
import pytest

from monitor.config import parse
from monitor.scoring import VerdictPolicy, WindowPolicy
from monitor.scoring.budget import calibrate_budget, measure, read_recording
from tests.support.cli import run_monitor
from tests.support.traces import TraceSpec, write

WINDOW = WindowPolicy(seconds=10, max_crops=8, statistic="mean", min_crops=4)
SIMPLE = VerdictPolicy(suspicious=0.5, manipulated=0.99, hysteresis=0.0, enter_crops=1, enter_seconds=0,
                       exit_seconds=0)


def oracle_windows(track) -> list[float | None]:
    """Each evaluation's window mean (None: fewer than min_crops crops)."""
    times, values = np.array([s.frame_time for s in track.samples]), np.array([s.p_fake for s in track.samples])
    out = []
    for i, sample in enumerate(track.samples):
        inside = np.flatnonzero(times[:i + 1] >= sample.evaluated_at - WINDOW.seconds)[-WINDOW.max_crops:]
        out.append(float(values[inside].mean()) if len(inside) >= WINDOW.min_crops else None)
    return out


def oracle_alerts(windows: list[list[float | None]], threshold: float) -> int:
    alerts = 0
    for track in windows:
        open_ = False
        for value in track:
            if value is None:
                continue  # too few crops: the verdict holds
            if value >= threshold and not open_:
                alerts, open_ = alerts + 1, True
            elif value < threshold:
                open_ = False
    return alerts


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("traces") / "scores.csv"
    hours = write(path, TraceSpec(hours=20, track_s=60), fake_tracks=30, shift=4.0)
    return read_recording(path), hours


def test_reported_rate_matches_a_direct_count(recording):
    data, hours = recording
    assert data.total_hours == pytest.approx(hours, rel=1e-6)  # the stream-hours are the tracks' spans
    result = calibrate_budget(data, 1.0, WINDOW, SIMPLE)
    windows = [oracle_windows(t) for t in data.real]
    direct = oracle_alerts(windows, result.suspicious)
    print(f"\n{hours:.1f} h: suspicious {result.suspicious:.4f}, {direct} alerts by direct count, reported "
          f"{result.alerts} ({result.alerts_per_hour:.3f}/h, 95 % bound {result.upper_per_hour:.3f}/h)")
    assert result.alerts == direct > 0
    assert result.alerts_per_hour == pytest.approx(direct / hours)
    assert result.alerts_per_hour <= result.upper_per_hour <= 1.0
    # The lowest such threshold at the printed resolution (6 decimals): the next printable value below it raises
    # more alerts than the budget allows.
    assert result.suspicious == round(result.suspicious, 6)
    below = round(result.suspicious - 1e-6, 6)
    more = oracle_alerts(windows, below)
    assert more > direct
    assert measure(data, WINDOW, SIMPLE.model_copy(update={"suspicious": below})).upper_per_hour > 1.0
    # The window-level rate is the share of evaluations at or above the threshold.
    values = [v for track in windows for v in track if v is not None]
    assert result.window_rate == pytest.approx(np.mean(np.array(values) >= result.suspicious))
    # Fake tracks (shifted by 4 in logit space) are nearly all caught, within their 60 s.
    assert result.fake_tracks == 30 and result.fake_alerted >= 0.9
    assert 0 <= result.median_time_to_alert_s < 60


def test_upper_bound_covers_the_rate_and_shrinks_with_hours(tmp_path):
    """At a threshold that alerts often, the bound's margin over the observed rate shrinks as hours grow; at one
    that never alerts, the bound is the zero-event one, -ln(0.05) / hours."""
    often, never = SIMPLE.model_copy(update={"suspicious": 0.3}), SIMPLE.model_copy(update={"suspicious": 0.98})
    margins, zero_bounds = [], []
    for hours in (2.5, 10, 40):
        path = tmp_path / f"{hours}.csv"
        write(path, TraceSpec(hours=hours, track_s=60), seed=7)
        data = read_recording(path)
        result = measure(data, WINDOW, often)
        print(f"{hours:>5} h: {result.alerts} alerts, {result.alerts_per_hour:.3f}/h, bound {result.upper_per_hour:.3f}/h")
        assert result.upper_per_hour >= result.alerts_per_hour
        margins.append(result.upper_per_hour / result.alerts_per_hour - 1)
        quiet = measure(data, WINDOW, never)
        assert quiet.alerts == 0 and quiet.upper_per_hour == pytest.approx(-math.log(0.05) / hours, rel=1e-6)
        zero_bounds.append(quiet.upper_per_hour)
    assert margins[0] > margins[1] > margins[2]
    assert zero_bounds[0] > zero_bounds[1] > zero_bounds[2]


def run_cli(*args) -> subprocess.CompletedProcess:
    return run_monitor("calibrate", *args)


def test_cli_says_when_the_hours_are_too_few(tmp_path):
    path = tmp_path / "short.csv"
    write(path, TraceSpec(hours=2, track_s=60))
    result = run_cli(path, "--false-alerts-per-hour", "0.1")
    assert result.returncode == 1, result.stderr
    # With no alert at all, 95 % confidence needs -ln(0.05) / 0.1 = 29.96 stream-hours.
    assert "2.00 stream-hours" in result.stderr and "at least 30.0 stream-hours" in result.stderr
    assert result.stdout == ""


def test_cli_prints_toml_to_paste_and_json(tmp_path):
    path = tmp_path / "scores.csv"
    write(path, TraceSpec(hours=12, track_s=60), fake_tracks=10)
    config = tmp_path / "monitor.toml"
    config.write_text('[window]\nseconds = 10\nmax_crops = 8\nmin_crops = 4\n[verdict]\nhysteresis = 0.02\n'
                      '[[streams]]\nid = "cam-1"\nurl = "rtsp://127.0.0.1/x"\nwindow = { max_crops = 4 }\n')
    text = run_cli(path, "--false-alerts-per-hour", "0.5", "--config", config, "--per-stream")
    assert text.returncode == 1, text.stderr  # 4 h per stream cannot show 0.5/h... but the whole can
    pasted = tomllib.loads(text.stdout.split("\n# [[streams]]")[0])
    assert set(pasted) == {"verdict", "drift"} and 0 < pasted["verdict"]["suspicious"] <= pasted["verdict"]["manipulated"] < 1
    parse({**pasted, "model": {"path": "x"}})  # valid config as printed
    assert "not calibrated" in text.stdout and "cam-1" in text.stdout

    result = json.loads(run_cli(path, "--false-alerts-per-hour", "0.5", "--config", config, "--json").stdout)
    assert result["suspicious"] == pytest.approx(pasted["verdict"]["suspicious"], abs=1e-6)
    assert result["upper_per_hour"] <= 0.5 and result["hours"] == pytest.approx(12, rel=1e-3)
    assert result["fake_tracks"] == 10 and result["baseline_median"] == pytest.approx(pasted["drift"]["baseline"],
                                                                                      abs=1e-4)
    # The stricter level has a tenth of the budget: 12 h cannot show 0.05/h (needs 59.9 h), so it says so.
    assert result["manipulated"] is None and "at least 59.9" in text.stdout

    per_stream = json.loads(run_cli(path, "--false-alerts-per-hour", "1", "--config", config, "--json",
                                    "--per-stream").stdout)
    assert set(per_stream["streams"]) == {"cam-0", "cam-1", "cam-2"}
    assert all(math.isclose(s["hours"], 4, rel_tol=1e-3) for s in per_stream["streams"].values())


def test_bad_inputs_name_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("stream_id,track_id,frame_time,p_fake\ncam,1,10,0.5\ncam,1,11,1.5\n")
    result = run_cli(path, "--false-alerts-per-hour", "0.1")
    assert result.returncode == 2 and "line 3" in result.stderr
    path.write_text("p_fake\n0.5\n")
    result = run_cli(path, "--false-alerts-per-hour", "0.1")
    assert result.returncode == 2 and "stream_id" in result.stderr
    assert run_cli(path, "--false-alerts-per-hour", "0").returncode == 2


def test_models_are_calibrated_apart_and_compared(tmp_path):
    """A recording with a model and its shadow: each calibrated on its own rows; a copy agrees with itself
    everywhere, a noisier copy less."""
    import csv

    source = tmp_path / "one.csv"
    write(source, TraceSpec(hours=12, track_s=60), fake_tracks=10, seed=2)
    rows = list(csv.DictReader(source.open()))
    rng = np.random.default_rng(0)
    path = tmp_path / "models.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, [*rows[0], "model"])
        writer.writeheader()
        for row in rows:
            noisy = float(np.clip(float(row["p_fake"]) + rng.normal(0, 0.15), 0, 1))
            writer.writerows([{**row, "model": "clip"}, {**row, "model": "copy"},
                              {**row, "model": "noisy", "p_fake": f"{noisy:.6f}"}])
    unnamed = run_cli(path, "--false-alerts-per-hour", "1")
    assert unnamed.returncode == 2 and "several models (clip, copy, noisy)" in unnamed.stderr
    result = run_cli(path, "--false-alerts-per-hour", "1", "--json", "--model", "clip", "--model", "copy",
                     "--model", "noisy")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    single = json.loads(run_cli(source, "--false-alerts-per-hour", "1", "--json").stdout)
    assert report["models"]["clip"]["suspicious"] == single["suspicious"]  # its own rows only
    pairs = {tuple(p["models"]): p for p in report["agreement"]}
    same = pairs[("clip", "copy")]
    assert same["real"]["agree"] == same["fake"]["agree"] == 1.0 and same["fake"]["tracks"] == 10
    assert same["real"]["only_first"] == same["real"]["only_second"] == 0
    noisy = pairs[("clip", "noisy")]
    assert noisy["real"]["agree"] < 1.0 and noisy["real"]["tracks"] == same["real"]["tracks"]
    text = run_cli(path, "--false-alerts-per-hour", "1", "--model", "clip", "--model", "noisy").stdout
    assert "# ===== model noisy" in text and "# agreement on" in text


def test_the_printed_thresholds_pasted_and_replayed_give_what_is_stated(tmp_path):
    """What `calibrate` prints is what a user pastes: replayed, it must give the stated alert count and keep the
    budget (6 decimals rounded to nearest could land below the measured threshold: 12 alerts instead of 11)."""
    import re

    path = tmp_path / "scores.csv"
    write(path, TraceSpec(hours=20, track_s=60), seed=3)
    config = tmp_path / "monitor.toml"
    config.write_text('[window]\nseconds = 10\nmax_crops = 8\nmin_crops = 4\n[verdict]\nhysteresis = 0.02\n')
    for budget in ("1", "2.25", "0.7"):
        out = run_cli(path, "--false-alerts-per-hour", budget, "--config", config).stdout
        pasted = tomllib.loads(out.split("\n# [[streams]]")[0])["verdict"]
        stated = int(re.search(r"at suspicious = [0-9.]+: (\d+) false alert", out)[1])
        policy = parse({"verdict": {**pasted, "hysteresis": 0.02}}).verdict
        replayed = measure(read_recording(path), WINDOW, policy)
        print(f"budget {budget}/h: pasted suspicious {pasted['suspicious']}, stated {stated}, replayed "
              f"{replayed.alerts} ({replayed.upper_per_hour:.3f}/h bound)")
        assert replayed.alerts == stated and replayed.upper_per_hour <= float(budget)


@pytest.mark.parametrize("content,needle", [
    (b"stream_id,track_id,frame_time,p_fake\ncam,1,10,0.5\ncam,1,11,\xff\xfe0.5\n", "line 3: not UTF-8"),
    (b"stream_id,track_id,frame_time,p_fake\ncam,1,10,0.5\ncam,1,11\n", "line 3: 3 fields where the header has 4"),
    (b"stream_id,track_id,frame_time,p_fake,model\ncam,1,10,0.5,default\ncam,1,11,0.4\n",
     "line 3: 4 fields where the header has 5"),
    (b"stream_id,track_id,frame_time,p_fake\ncam,1,10,0.5,extra\n", "line 2: 5 fields where the header has 4")])
@pytest.mark.parametrize("mode", [["--false-alerts-per-hour", "0.1"], ["--fpr", "0.1", "--window-crops", "1",
                                                                        "--min-crops", "1"]])
def test_malformed_files_exit_2_naming_the_file_and_the_line(tmp_path, content, needle, mode):
    path = tmp_path / "scores.csv"
    path.write_bytes(content)
    result = run_cli(path, *mode)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and str(path) in result.stderr and needle in result.stderr, result.stderr
