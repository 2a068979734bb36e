"""Thresholds from scores of authentic footage at a target false-positive rate.

Input: a CSV with a `p_fake` column (as written by `monitor score --csv` / `monitor eval`), optionally a
grouping column (`video`, `path` or `stream_id` + `track_id`), an order column (`index` or `frame_time`)
and a `label` column (only `real` rows are used). For every group, the windows the daemon would see
(`window_crops` consecutive crops, statistic mean or median) are formed; the threshold is the smallest value
that at most `fpr` of those windows reach.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from .budget import LINE, CalibrationError, read_rows, round_up, select_model


@dataclass(frozen=True)
class Calibration:
    windows: int
    groups: int
    crops: int
    fpr: float
    threshold: float
    strict_threshold: float  # at fpr / 10, a candidate for `manipulated`
    achieved_fpr: float


def read_scores(path: str | Path, model: str | None = None) -> dict[str, list[float]]:
    rows = read_rows(path)
    if not rows:
        raise CalibrationError(f"{path}: no rows")
    columns = set(rows[0]) - {LINE}
    if "p_fake" not in columns:
        raise CalibrationError(f"{path}: no p_fake column (columns: {', '.join(sorted(columns))})")
    rows = select_model(path, rows, model)
    group_keys = next((keys for keys in (("video",), ("path",), ("stream_id", "track_id")) if set(keys) <= columns), ())
    order_key = next((k for k in ("index", "frame_time") if k in columns), None)
    groups: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        number = row[LINE]
        if "label" in columns and row["label"].strip().lower() != "real":
            continue
        try:
            p = float(row["p_fake"])
            order = float(row[order_key]) if order_key else float(number)
        except (TypeError, ValueError):
            raise CalibrationError(f"{path}: line {number}: p_fake or {order_key} is not a number") from None
        if not 0.0 <= p <= 1.0 or math.isnan(p):
            raise CalibrationError(f"{path}: line {number}: p_fake {p} is outside [0, 1]")
        groups.setdefault("/".join(row[k] for k in group_keys) or "all", []).append((order, p))
    if not groups:
        raise CalibrationError(f"{path}: no rows labelled real")
    return {key: [p for _, p in sorted(values)] for key, values in groups.items()}


def window_statistics(groups: dict[str, list[float]], window_crops: int, statistic: str, min_crops: int) -> list[float]:
    stat = statistics.fmean if statistic == "mean" else statistics.median
    values = []
    for scores in groups.values():
        if len(scores) < min_crops:
            continue
        if len(scores) <= window_crops:
            values.append(stat(scores))
            continue
        values.extend(stat(scores[i:i + window_crops]) for i in range(len(scores) - window_crops + 1))
    return values


def threshold_at(values: list[float], fpr: float) -> tuple[float, float]:
    """Smallest threshold t with fraction(values >= t) <= fpr; returns (t, achieved fraction)."""
    ordered = sorted(values, reverse=True)
    allowed = math.floor(fpr * len(ordered))
    t = math.nextafter(ordered[allowed], math.inf) if allowed < len(ordered) else ordered[-1]
    t = min(t, 1.0)
    achieved = sum(v >= t for v in ordered) / len(ordered)
    return t, achieved


def calibrate(path: str | Path, fpr: float, window_crops: int = 32, statistic: str = "mean",
              min_crops: int = 4, model: str | None = None) -> Calibration:
    if not 0.0 < fpr < 1.0:
        raise CalibrationError(f"--fpr must be between 0 and 1, got {fpr}")
    groups = read_scores(path, model)
    values = window_statistics(groups, window_crops, statistic, min_crops)
    if not values:
        raise CalibrationError(f"{path}: no group has the {min_crops} crops a window needs")
    # Rounded up to the 4 decimals printed, and the rate stated at that value: pasted, it does what is said.
    threshold = min(round_up(threshold_at(values, fpr)[0], 4), 1.0)
    strict = min(round_up(threshold_at(values, fpr / 10)[0], 4), 1.0)
    achieved = sum(v >= threshold for v in values) / len(values)
    return Calibration(len(values), len(groups), sum(map(len, groups.values())), fpr, threshold, max(strict, threshold),
                       achieved)
