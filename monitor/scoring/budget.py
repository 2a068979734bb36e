"""Calibration to a false-alert budget: thresholds for at most X false alerts per stream-hour.

Recorded scores of authentic footage (`monitor record export ... --label real`) are replayed, track by track,
through the daemon's own window, verdict and alert code (`replay`), at candidate thresholds. The chosen
`suspicious` is the lowest whose false alerts on the data keep the one-sided 95 % Poisson upper bound of the
rate within the budget; `manipulated` likewise at a tenth of it. When even zero alerts cannot show the budget
with 95 % confidence (too few hours recorded) the answer says so instead of inventing a threshold.

Stream-hours: for each stream, the time between its consecutive recorded crops, counting only gaps of at most
`MAX_GAP_S` (the time faces were in view: hours without faces cannot raise alerts, so they prove nothing).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

from ..errors import EXIT_FAILURE, InputError
from .replay import Sample, Track, count, replay_all, window_statistics
from .verdict import MANIPULATED, VerdictPolicy
from .window import WindowPolicy


class CalibrationError(InputError):
    """Scores that cannot be calibrated on, or a target they cannot support; the message says why."""


class TooFewHours(CalibrationError):
    """The footage is too short to show the budget at all: a fact about the data, not a bad input."""

    exit_code = EXIT_FAILURE


MAX_GAP_S = 60.0
LINE = "\0line"  # each CSV row's line number, kept through filtering for error messages
CONFIDENCE = 0.95
ALMOST_ONE = 0.999999  # thresholds must stay below 1
DECIMALS = 6  # thresholds are printed (and measured) to this many decimals


def upper_rate(alerts: int, hours: float, confidence: float = CONFIDENCE) -> float:
    """One-sided upper confidence bound on a Poisson rate per hour, having seen `alerts` in `hours`."""
    from scipy.stats import chi2

    return chi2.ppf(confidence, 2 * alerts + 2) / 2 / hours


def hours_needed(target_per_hour: float, confidence: float = CONFIDENCE) -> float:
    """The hours of authentic footage needed to show `target` with no false alert at all."""
    return upper_rate(0, 1.0, confidence) / target_per_hour


@dataclass
class Recording:
    real: list[Track] = field(default_factory=list)
    fake: list[Track] = field(default_factory=list)
    hours: dict[str, float] = field(default_factory=dict)  # stream -> authentic stream-hours

    @property
    def total_hours(self) -> float:
        return sum(self.hours.values())

    def only(self, stream: str) -> "Recording":
        return Recording([t for t in self.real if t.stream_id == stream], [t for t in self.fake if t.stream_id == stream],
                         {stream: self.hours.get(stream, 0.0)})


def model_of(row: dict) -> str:
    return row.get("model") or row.get("model_id") or ""


def read_rows(path: str | Path) -> list[dict]:
    """A score CSV's rows, each with its line number under LINE. Input that is not what `monitor record export`,
    `score --csv` or `eval` write is a CalibrationError naming the file, the line and what is wrong."""
    rows: list[dict] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            try:
                for row in reader:
                    if None in row or None in row.values():  # DictReader's marks of extra or missing fields
                        found = len([v for k, v in row.items() if k is not None and v is not None]) + len(
                            row.get(None) or [])
                        raise CalibrationError(f"{path}: line {reader.line_num}: {found} fields where the header "
                                               f"has {len(reader.fieldnames)} (a truncated or malformed row)")
                    rows.append({**row, LINE: reader.line_num})
            except UnicodeDecodeError as e:  # decoded a buffer at a time: find the line in the bytes
                data = Path(path).read_bytes()
                line = data[:e.start].count(b"\n") + 1
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as exact:
                    line = data[:exact.start].count(b"\n") + 1
                raise CalibrationError(f"{path}: line {line}: not UTF-8 text (save the CSV as UTF-8)") from None
            except csv.Error as e:
                raise CalibrationError(f"{path}: line {reader.line_num}: not valid CSV ({e})") from None
    except OSError as e:
        raise CalibrationError(f"{path}: {e.strerror}") from None
    return rows


def round_up(value: float, decimals: int) -> float:
    """`value` rounded up to what is printed: a threshold pasted from the output alerts at most as often as
    stated (a higher threshold never alerts more)."""
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_CEILING))


def select_model(path, rows: list[dict], model: str | None) -> list[dict]:
    """The rows of one model (by the config's name or its model id, with or without the @sha); a CSV with
    several models' scores (a shadow's, or `eval` with several --model) needs one named."""
    present = sorted({model_of(r) for r in rows})
    if model is None:
        if len(present) > 1:
            raise CalibrationError(f"{path}: scores of several models ({', '.join(present)}): choose one with "
                                   f"--model (repeat it to compare them)")
        return rows
    chosen = [r for r in rows if model in (r.get("model"), r.get("model_id"))
              or (r.get("model_id") or "").split("@")[0] == model]
    if not chosen:
        raise CalibrationError(f"{path}: no scores of model {model!r} (models: {', '.join(present) or 'unnamed'})")
    return chosen


def read_recording(path: str | Path, model: str | None = None) -> Recording:
    """Tracks from a score CSV (`monitor record export`): columns stream_id, track_id, frame_time, p_fake, and
    optionally session, evaluated_at, label (default real), model / model_id (see `select_model`)."""
    rows = read_rows(path)
    needed = {"stream_id", "track_id", "frame_time", "p_fake"}
    if not rows or not needed <= set(rows[0]):
        raise CalibrationError(f"{path}: alert-level calibration needs the columns {', '.join(sorted(needed))} (what "
                    f"`monitor record export` writes)")
    rows = select_model(path, rows, model)
    tracks: dict[str, Track] = {}
    for row in rows:
        number = row[LINE]
        try:
            frame_time, p = float(row["frame_time"]), float(row["p_fake"])
            evaluated = float(row.get("evaluated_at") or frame_time)
        except ValueError:
            raise CalibrationError(f"{path}: line {number}: frame_time, evaluated_at and p_fake must be numbers") from None
        if not 0.0 <= p <= 1.0:
            raise CalibrationError(f"{path}: line {number}: p_fake {p} is outside [0, 1]")
        label = (row.get("label") or "real").strip().lower()
        if label not in ("real", "fake"):
            raise CalibrationError(f"{path}: line {number}: label must be real or fake, got {label!r}")
        key = f"{row['stream_id']}/{row.get('session', '')}/{row['track_id']}/{label}"
        track = tracks.setdefault(key, Track(row["stream_id"], key, [], label))
        track.samples.append(Sample(frame_time, evaluated, p))
    recording = Recording()
    for track in tracks.values():
        track.samples.sort(key=lambda s: s.evaluated_at)
        (recording.real if track.label == "real" else recording.fake).append(track)
    by_stream: dict[str, list[float]] = defaultdict(list)
    for track in recording.real:
        by_stream[track.stream_id].extend(s.frame_time for s in track.samples)
    for stream, times in by_stream.items():
        times.sort()
        recording.hours[stream] = sum(b - a for a, b in zip(times, times[1:]) if b - a <= MAX_GAP_S) / 3600
    return recording


@dataclass(frozen=True)
class BudgetCalibration:
    target_per_hour: float
    hours: float
    streams: int
    tracks: int
    suspicious: float
    manipulated: float | None  # None: the data cannot support the stricter budget
    alerts: int  # false alerts on the data at these thresholds
    alerts_per_hour: float
    upper_per_hour: float  # one-sided 95 % bound
    manipulated_alerts: int
    window_rate: float  # share of authentic windows at or above `suspicious`
    fake_tracks: int
    fake_alerted: float | None  # share of fake tracks that raised an alert
    median_time_to_alert_s: float | None  # from a fake track's first frame to `opened`
    baseline_median: float  # median p_fake of the authentic crops: the drift baseline

    @property
    def hours_for_manipulated(self) -> float:
        return hours_needed(self.target_per_hour / 10)

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["manipulated_target_per_hour"] = self.target_per_hour / 10
        return data

    def summary_lines(self) -> list[str]:
        """What the thresholds do on the data, as TOML comments."""
        lines = [
            f"# calibrated on {self.hours:.2f} stream-hours of authentic footage: {self.tracks} track(s) on "
            f"{self.streams} stream(s)",
            f"# at suspicious = {self.suspicious:.6f}: {self.alerts} false alert(s) on the data = "
            f"{self.alerts_per_hour:.4g}/stream-hour; 95 % upper bound {self.upper_per_hour:.4g}/stream-hour "
            f"(budget {self.target_per_hour:g})",
            f"# {self.window_rate:.4%} of authentic window evaluations reach suspicious",
        ]
        if self.fake_tracks:
            time_to_alert = ("no alert" if self.median_time_to_alert_s is None
                             else f"median {self.median_time_to_alert_s:.1f} s from the first fake frame to the alert")
            lines.append(f"# labelled fake: {self.fake_alerted:.1%} of {self.fake_tracks} fake track(s) alerted; "
                         f"{time_to_alert}")
        return lines

    def manipulated_toml(self) -> str:
        if self.manipulated is not None:
            return (f"manipulated = {self.manipulated:.6f}  # {self.manipulated_alerts} on the data; budget "
                    f"{self.target_per_hour / 10:g}/stream-hour")
        return (f"manipulated = {ALMOST_ONE}  # not calibrated: {self.hours:.2f} stream-hours cannot show "
                f"{self.target_per_hour / 10:g}/stream-hour; record at least {self.hours_for_manipulated:.1f} "
                f"(until then no track is called manipulated)")

    def toml(self) -> str:
        return "\n".join([*self.summary_lines(), "[verdict]", f"suspicious = {self.suspicious:.6f}",
                          self.manipulated_toml(), "", "[drift]",
                          f"baseline = {self.baseline_median:.4f}  # median p_fake of the authentic crops"])

    def stream_toml(self, stream_id: str) -> str:
        """The lines to add to that stream's [[streams]] table."""
        return "\n".join(["", f"# [[streams]] id = {stream_id!r}: add these lines to its table", *self.summary_lines(),
                          f"verdict = {{ suspicious = {self.suspicious:.6f}, manipulated = "
                          f"{self.manipulated if self.manipulated is not None else ALMOST_ONE:.6f} }}",
                          f"drift_baseline = {self.baseline_median:.4f}"])


def allowed_alerts(hours: float, target: float) -> int | None:
    """The most false alerts whose 95 % upper rate over `hours` stays within `target`; None if not even zero."""
    if upper_rate(0, hours) > target:
        return None
    k = 0
    while upper_rate(k + 1, hours) <= target:
        k += 1
    return k


def search(tracks: list[Track], hours: float, target: float, window: WindowPolicy, policy: VerdictPolicy,
           level: str, floor: float = 0.0) -> tuple[float, int] | None:
    """The lowest threshold (>= `floor`) whose alerts keep the 95 % upper rate within `target`, with its
    alert count; None when even no alert at all cannot show it."""
    allowed = allowed_alerts(hours, target)
    if allowed is None:
        return None
    # A track alerts at a threshold only if one of its window values reaches it: the others need no replay.
    per_track = [(track, window_statistics([track], window)) for track in tracks]
    peaks = [(track, max(values)) for track, values in per_track if values]
    values = sorted({v for _, track_values in per_track for v in track_values if v >= floor})
    # Thresholds just above each window value (that value no longer reaches it), and the floor itself.
    candidates = sorted({max(floor, 0.0) or 1e-6} | {min(math.nextafter(v, 1.0), ALMOST_ONE) for v in values})

    def alerts(threshold: float, stop_above: float = math.inf) -> int:
        if level == "any":
            chosen = policy.model_copy(update={"suspicious": threshold, "manipulated": ALMOST_ONE})
        else:
            chosen = policy.model_copy(update={"manipulated": max(threshold, policy.suspicious)})
        n = 0
        for track, peak in peaks:
            if peak >= threshold:
                n += count([track], window, chosen, level)
                if n > stop_above:
                    break  # already over the budget: the exact count does not matter
        return n

    low, high = 0, len(candidates) - 1  # the last candidate is above every window value: no alert, within target
    while low < high:  # the alert count falls as the threshold rises: the lowest that fits the budget
        middle = (low + high) // 2
        if alerts(candidates[middle], stop_above=allowed) <= allowed:
            high = middle
        else:
            low = middle + 1
    return candidates[low], alerts(candidates[low])


@dataclass(frozen=True)
class Measured:
    """What given thresholds do on a recording."""

    alerts: int
    alerts_per_hour: float
    upper_per_hour: float
    manipulated_alerts: int
    window_rate: float
    fake_alerted: float | None
    median_time_to_alert_s: float | None


def measure(recording: Recording, window: WindowPolicy, policy: VerdictPolicy) -> Measured:
    hours = recording.total_hours
    if hours <= 0:
        raise CalibrationError("no authentic stream-hours in the recording")
    real = replay_all(recording.real, window, policy)
    values = window_statistics(recording.real, window)
    fake = replay_all(recording.fake, window, policy)
    first_alerts: dict[str, float] = {}
    for a in fake:
        first_alerts[a.track] = min(first_alerts.get(a.track, math.inf), a.opened_at - a.first_frame)
    return Measured(
        len(real), len(real) / hours, upper_rate(len(real), hours),
        sum(1 for a in real if a.peak_verdict == MANIPULATED),
        sum(v >= policy.suspicious for v in values) / len(values) if values else 0.0,
        len(first_alerts) / len(recording.fake) if recording.fake else None,
        statistics.median(first_alerts.values()) if first_alerts else None)


def alerted(recording: Recording, window: WindowPolicy, policy: VerdictPolicy) -> set[str]:
    """The keys of the tracks (authentic and fake) that raise an alert at these thresholds."""
    return {a.track for a in replay_all([*recording.real, *recording.fake], window, policy)}


def agreement(names: list[str], recordings: list[Recording], results: list[BudgetCalibration],
              window: WindowPolicy, policy: VerdictPolicy) -> list[dict]:
    """For each pair of models, each at its own calibrated thresholds: on the tracks both scored, how often
    they agree (both alert or neither), and how many tracks each alerts on alone, authentic and fake apart."""
    sets, keys = [], []
    for recording, result in zip(recordings, results):
        chosen = policy.model_copy(update={"suspicious": result.suspicious,
                                           "manipulated": result.manipulated or ALMOST_ONE})
        sets.append(alerted(recording, window, chosen))
        keys.append({t.key: t.label for t in (*recording.real, *recording.fake)})
    pairs = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            common = set(keys[i]) & set(keys[j])
            entry = {"models": [names[i], names[j]], "tracks": len(common)}
            for label in ("real", "fake"):
                tracks = {k for k in common if keys[i][k] == label}
                a, b = sets[i] & tracks, sets[j] & tracks
                entry[label] = {"tracks": len(tracks), "both": len(a & b), "only_first": len(a - b),
                                "only_second": len(b - a),
                                "agree": round(1 - len(a ^ b) / len(tracks), 4) if tracks else None}
            pairs.append(entry)
    return pairs


def calibrate_budget(recording: Recording, target: float, window: WindowPolicy, policy: VerdictPolicy
                     ) -> BudgetCalibration:
    hours = recording.total_hours
    if not recording.real or hours <= 0:
        raise CalibrationError("no authentic tracks with timed scores to calibrate on")
    found = search(recording.real, hours, target, window, policy, "any")
    if found is None:
        raise TooFewHours(f"{hours:.2f} stream-hours of authentic footage cannot show {target:g} false alerts per "
                          f"stream-hour with 95 % confidence, even with no false alert at all: record at least "
                          f"{hours_needed(target):.1f} stream-hours (or accept a larger budget)")
    suspicious = min(round_up(found[0], DECIMALS), ALMOST_ONE)  # what is printed is what was measured
    strict = search(recording.real, hours, target / 10, window, policy.model_copy(update={"suspicious": suspicious}),
                    "manipulated", floor=suspicious)
    manipulated = min(round_up(strict[0], DECIMALS), ALMOST_ONE) if strict else None
    result = measure(recording, window,
                     policy.model_copy(update={"suspicious": suspicious, "manipulated": manipulated or ALMOST_ONE}))
    return BudgetCalibration(
        target, hours, len(recording.hours), len(recording.real), suspicious, manipulated, result.alerts,
        result.alerts_per_hour, result.upper_per_hour, result.manipulated_alerts, result.window_rate,
        len(recording.fake), result.fake_alerted, result.median_time_to_alert_s,
        statistics.median(s.p_fake for t in recording.real for s in t.samples))
