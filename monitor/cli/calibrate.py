"""`monitor calibrate`: verdict thresholds for a false-alert budget (or a window FPR)."""

from __future__ import annotations

import json
import sys

from ..errors import EXIT_FAILURE, EXIT_OK, InputError


def add_parser(commands) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="verdict thresholds for a false-alert budget, from recorded authentic footage",
        description="Compute [verdict] thresholds from scores of AUTHENTIC footage. With --false-alerts-per-hour "
                    "(the operator's budget), every authentic track of SCORES.csv (from `monitor record export`) is "
                    "replayed through the daemon's own window, verdict and alert code at candidate thresholds; "
                    "`suspicious` is the lowest whose false alerts keep the one-sided 95 %% Poisson upper bound "
                    "within the budget, `manipulated` the same at a tenth of it. Exit 1 when the recorded hours "
                    "are too few to show the budget (the message says how many are needed). With --fpr (the "
                    "older mode): the smallest window threshold that at most that share of authentic windows "
                    "reach (any CSV with a p_fake column). Prints TOML to paste into the config.",
        epilog="Rows labelled fake (export --label fake) are not calibrated on: they measure how many fake "
               "tracks the thresholds catch and how fast.")
    calibrate.add_argument("scores", metavar="SCORES.csv")
    mode = calibrate.add_mutually_exclusive_group()
    mode.add_argument("--false-alerts-per-hour", type=float, default=None, metavar="X",
                      help="budget of false alerts per stream-hour (e.g. 0.01: one per 100 stream-hours)")
    mode.add_argument("--fpr", type=float, default=None,
                      help="target false-positive rate per window (default mode, 0.01)")
    calibrate.add_argument("--config", default=None, metavar="FILE",
                           help="take [window], [verdict] (and each stream's overrides) from this config; "
                                "default: the built-in defaults")
    calibrate.add_argument("--model", action="append", default=None, metavar="NAME",
                           help="the scores of this model (its config name or model id): needed when the CSV holds "
                                "several (a shadow's, or eval with several --model); repeat to compare models, each "
                                "calibrated on its own scores, with their agreement")
    calibrate.add_argument("--per-stream", action="store_true",
                           help="also thresholds per stream, for [[streams]] overrides (budget mode)")
    calibrate.add_argument("--window-crops", type=int, default=32, metavar="N",
                           help="--fpr mode: crops per window (default 32)")
    calibrate.add_argument("--statistic", choices=("mean", "median"), default="mean", help="--fpr mode")
    calibrate.add_argument("--min-crops", type=int, default=4, metavar="N",
                           help="--fpr mode: fewest crops for a window (default 4)")
    calibrate.add_argument("--json", action="store_true", help="print one JSON object")
    calibrate.set_defaults(handler=run)


def run(args) -> int:
    if args.false_alerts_per_hour is not None:
        return calibrate_budget_mode(args)
    from ..scoring.calibrate import calibrate

    if args.window_crops < 1 or args.min_crops < 1:
        raise InputError("--window-crops and --min-crops must be at least 1")
    fpr = 0.01 if args.fpr is None else args.fpr
    results = {model: calibrate(args.scores, fpr, args.window_crops, args.statistic, args.min_crops, model)
               for model in (args.model or [None])}
    if args.json:
        data = {m: r.__dict__ for m, r in results.items()}
        print(json.dumps(data[None] if None in data else {"models": data}))
        return EXIT_OK
    for model, result in results.items():
        if model is not None:
            print(f"\n# model {model}")
        print(f"# {result.windows} windows of up to {args.window_crops} crops ({args.statistic}) from "
              f"{result.groups} group(s), {result.crops} authentic crops")
        print(f"# at the threshold below, {result.achieved_fpr:.4f} of authentic windows alert (target {result.fpr})")
        print("[verdict]")
        print(f"suspicious = {result.threshold:.4f}")
        print(f"manipulated = {result.strict_threshold:.4f}  # at fpr {result.fpr / 10:g}")
    return EXIT_OK


def calibrate_budget_mode(args) -> int:
    from ..config import MonitorConfig, load
    from ..scoring.budget import CalibrationError, agreement, calibrate_budget, read_recording

    if not args.false_alerts_per_hour > 0:
        raise InputError("--false-alerts-per-hour must be above 0")
    config = load(args.config) if args.config else MonitorConfig()
    target, models = args.false_alerts_per_hour, args.model or [None]
    recordings = {model: read_recording(args.scores, model) for model in models}
    if sys.stderr.isatty():  # a long calibration says what it is working on
        for model, recording in recordings.items():
            crops = sum(len(t.samples) for t in recording.real)
            print(f"{'model ' + model + ': ' if model else ''}replaying {len(recording.real)} authentic tracks "
                  f"({crops} crops, {recording.total_hours:.1f} stream-hours) and {len(recording.fake)} fake "
                  f"ones...", file=sys.stderr)
    results = {model: calibrate_budget(r, target, config.window, config.verdict) for model, r in recordings.items()}
    per_stream: dict = {model: {} for model in models}
    failures: dict = {model: {} for model in models}
    if args.per_stream:
        configured = {s.id: s for s in config.streams}
        for model, recording in recordings.items():
            for stream in sorted(recording.hours):
                _, window, verdict = (config.stream_settings(configured[stream]) if stream in configured
                                      else (None, config.window, config.verdict))
                try:
                    per_stream[model][stream] = calibrate_budget(recording.only(stream), target, window, verdict)
                except CalibrationError as e:
                    failures[model][stream] = str(e)
    compared = (agreement(models, list(recordings.values()), list(results.values()), config.window, config.verdict)
                if len(models) > 1 else None)
    if args.json:
        tables = {model: {**result.as_dict(), "streams": {k: v.as_dict() for k, v in per_stream[model].items()},
                          "not_calibrated": failures[model]} for model, result in results.items()}
        print(json.dumps(tables[None] if None in tables else {"models": tables, "agreement": compared}))
    else:
        for model, result in results.items():
            if model is not None:
                print(f"\n# ===== model {model}: add `model = \"{model}\"` to the streams it scores, or use its "
                      f"[verdict] where it is the default =====")
            print(result.toml())
            for stream, calibration in per_stream[model].items():
                print(calibration.stream_toml(stream))
            for stream, reason in failures[model].items():
                print(f"\n# stream {stream}: not calibrated: {reason}")
        for pair in compared or []:
            first, second = pair["models"]
            for label in ("real", "fake"):
                part = pair[label]
                if part["tracks"]:
                    print(f"# agreement on {part['tracks']} {label} track(s): {part['agree']:.1%} (both alert "
                          f"{part['both']}, only {first} {part['only_first']}, only {second} {part['only_second']})")
    return EXIT_FAILURE if any(failures.values()) else EXIT_OK
