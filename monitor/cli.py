"""The `monitor` command line.

Exit codes (`monitor.errors`): 0 success; 1 a runtime failure, or some inputs failed (the rest were
processed); 2 bad invocation, configuration or unusable input (arguments, config, checkpoint); 3 a network
resource a command needs is unreachable (the model hub for `model pull`; Redis for `record export`, `streams`
and `cluster status`). Errors the monitor raises on purpose are mapped to them once, in
`main`, as one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from .errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, ConfigError, MonitorError
from .redact import redact

EXIT_PARTIAL = EXIT_FAILURE  # some inputs failed, the rest were processed


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"monitor: error: {redact(message)}", file=sys.stderr)
    return code


def _add_model_options(parser: argparse.ArgumentParser, several: bool = False) -> None:
    from .model import PRECISIONS

    parser.add_argument("--model", required=True, metavar="PATH", action="append" if several else "store",
                        help="checkpoint: a native .safetensors from `monitor model convert/pull`, the published "
                             "Lightning model.ckpt, or GenD's model.safetensors (config.json beside it; CLIP, PE "
                             "or DINOv3 backbone)" + ("; repeat to compare models on the same data" if several else ""))
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="default: bf16-autocast on CUDA (the authors' mode), fp32 on CPU")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the first GPU, else cpu)")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N", help="crops per forward pass (default 16)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitor",
        description="Live deepfake monitor: scores faces in video with the CLIP ViT-L/14 deepfake detector "
                    "(Yermakov et al., 2025).",
        epilog="Exit codes: 0 ok, 1 a runtime failure or some inputs failed, 2 bad invocation, configuration or "
               "input (the message names the key or file), 3 a network resource unreachable (the model hub for "
               "`model pull`; Redis for `record export`, `streams`, `cluster status`).")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    model = commands.add_parser("model", help="install, convert and inspect detector checkpoints",
                                description="Install, convert and inspect detector checkpoints.")
    model_commands = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    convert = model_commands.add_parser(
        "convert", help="convert a published checkpoint to the native format",
        description="Convert a published checkpoint (Lightning model.ckpt or GenD model.safetensors) to the native "
                    "safetensors format in open_clip naming, recording its source sha256, format, architecture "
                    "and face template.")
    convert.add_argument("src", metavar="SRC", help="the published checkpoint (or a native one)")
    convert.add_argument("dst", metavar="DST", help="the .safetensors file to write")
    info = model_commands.add_parser("info", help="print a checkpoint's metadata",
                                     description="Print what a checkpoint is: model id, source, architecture, "
                                                 "face template. Reads any supported format.")
    info.add_argument("path", metavar="PATH")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    from .model.hub import DEFAULT_REPO, PUBLISHED
    pull = model_commands.add_parser(
        "pull", help="download a published checkpoint and convert it",
        description="Download a published checkpoint from the Hugging Face hub (through its cache) and convert "
                    "it to DEST/<name>.safetensors. Without network access it fails within seconds and says how "
                    "to copy the file in by hand.")
    pull.add_argument("--repo", choices=sorted(PUBLISHED), default=DEFAULT_REPO, help=f"default {DEFAULT_REPO}")
    pull.add_argument("--dest", type=Path, default=None,
                      help="folder for the converted file (default $MONITOR_MODELS_DIR or "
                           "~/.local/share/deepfake-monitor/models)")
    pull.add_argument("--revision", default=None, help="a branch, tag or commit of the repository")

    score_images = commands.add_parser(
        "score-images", help="score already-aligned face crops",
        description="Score already-aligned face crops (256x256 like the training data). Prints one JSON object "
                    "per line, {\"path\": ..., \"p_fake\": ...}, in input order. Unreadable images are reported "
                    "on stderr and make the exit code 1, after the readable ones are scored.")
    _add_model_options(score_images)
    score_images.add_argument("images", nargs="+", metavar="IMAGE")

    crop = commands.add_parser(
        "crop", help="write the aligned crop of the largest face in a picture",
        description="Detect the largest face in a picture and write its aligned 256x256 crop: exactly what the "
                    "model sees. Exit 2 when no face is found.")
    crop.add_argument("image", metavar="IMAGE")
    crop.add_argument("--out", required=True, metavar="CROP.png")
    crop.add_argument("--template", choices=("deepfakebench", "gend"), default="deepfakebench",
                      help="the crop template (deepfakebench: the paper's checkpoint; gend: GenD)")
    crop.add_argument("--min-confidence", type=float, default=0.5, help="face detector threshold (default 0.5)")

    score = commands.add_parser(
        "score", help="score a video file with the paper's protocol",
        description="Score a video file as the paper does: --frames uniformly spaced frames, the largest face of "
                    "each, video p_fake = mean of frame p_fake. Prints one JSON object. Crops are aligned with the "
                    "checkpoint's own face template.")
    _add_model_options(score)
    score.add_argument("video", metavar="VIDEO")
    score.add_argument("--frames", type=int, default=32, help="frames to sample (default 32)")
    score.add_argument("--per-track", action="store_true", help="score every face track, not only the largest face")

    evaluate = commands.add_parser(
        "eval", help="AUROC on a labelled list of videos or crop folders",
        description="Evaluate on LIST.csv rows `path,label` (label real/fake; path a video, or a folder of "
                    "already-aligned crops = one video; relative to the CSV). Prints frame- and video-level AUROC "
                    "(the paper's metric) and the threshold for --fpr on the real videos. With --model more than "
                    "once: one summary per model and their agreement (share of videos both call the same at their "
                    "own --fpr thresholds, correlation of video scores); the CSVs then carry a model_id column.")
    _add_model_options(evaluate, several=True)
    evaluate.add_argument("list", metavar="LIST.csv")
    evaluate.add_argument("--frames", type=int, default=32, help="frames sampled per video (default 32)")
    evaluate.add_argument("--fpr", type=float, default=0.01, help="target false-positive rate (default 0.01)")
    evaluate.add_argument("--out", metavar="VIDEOS.csv", help="write per-video scores here")
    evaluate.add_argument("--frames-out", metavar="FRAMES.csv", help="write per-frame scores (input for calibrate)")

    subscribe = commands.add_parser(
        "subscribe", help="print alert events as JSON lines (catch up, then follow)",
        description="Print alert events from Redis as JSON lines: first those in the durable log after --since "
                    "(or all with --from-start), then new ones as they arrive. Each line carries `log_id`, the "
                    "entry id to pass to --since to resume without gaps. Rides out Redis outages.")
    subscribe.add_argument("--redis", default=os.environ.get("MONITOR_REDIS_URL", "redis://127.0.0.1:6379/0"),
                           metavar="URL", help="default $MONITOR_REDIS_URL or redis://127.0.0.1:6379/0")
    subscribe.add_argument("--prefix", default="deepfake", help="key prefix (default deepfake)")
    subscribe.add_argument("--stream", default=None, metavar="ID", help="only this stream's events")
    start = subscribe.add_mutually_exclusive_group()
    start.add_argument("--since", default=None, metavar="LOG_ID", help="events after this log id")
    start.add_argument("--from-start", action="store_true", help="every event still in the log")
    subscribe.add_argument("--count", type=int, default=None, metavar="N", help="exit after N events")
    subscribe.add_argument("--timeout", type=float, default=None, metavar="S", help="exit after S seconds")

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

    record = commands.add_parser("record", help="the daemon's recorded scores ([record])",
                                 description="Work with the scores the daemon records for calibration ([record]).")
    record_commands = record.add_subparsers(dest="record_command", metavar="ACTION", required=True)
    export = record_commands.add_parser(
        "export", help="write recorded scores to the CSV that `monitor calibrate` reads",
        description="Write the score records of <prefix>:scores (one per scored crop of the streams with "
                    "`record = true`) to a CSV, selected by stream and frame time, each row labelled: `real` for "
                    "footage you know is authentic (what calibration needs), `fake` for a known manipulated "
                    "session (to measure detection). --append adds to an earlier export, so one CSV can hold "
                    "several labelled periods. Times: seconds since the epoch or ISO 8601 (no zone: local time).",
        epilog="Exit codes: 0 written, 2 bad arguments, 3 Redis unreachable.")
    export.add_argument("--redis", default=os.environ.get("MONITOR_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        metavar="URL", help="default $MONITOR_REDIS_URL or redis://127.0.0.1:6379/0")
    export.add_argument("--prefix", default="deepfake", help="key prefix (default deepfake)")
    export.add_argument("--stream", action="append", default=None, metavar="ID",
                        help="only this stream (repeat for several; default all)")
    export.add_argument("--since", default=None, metavar="TIME", help="frames at or after this time")
    export.add_argument("--until", default=None, metavar="TIME", help="frames before this time")
    export.add_argument("--label", required=True, choices=("real", "fake"),
                        help="what the selected footage is: real (authentic) or fake (manipulated)")
    export.add_argument("--out", required=True, metavar="SCORES.csv")
    export.add_argument("--append", action="store_true", help="add to SCORES.csv instead of replacing it")

    run = commands.add_parser(
        "run", help="run the daemon",
        description="Run the monitor daemon: ingest the configured streams (RTSP, files, WHIP), score faces, "
                    "publish verdicts and alerts to Redis, serve health, metrics, the stream API and WHIP over "
                    "HTTP. SIGHUP reloads the config file; SIGTERM/SIGINT stop cleanly (exit 0). Under systemd "
                    "it speaks the notify protocol (READY=1, STATUS=, WATCHDOG=1).")
    run.add_argument("--config", required=True, metavar="FILE", help="TOML config (see config/example.toml)")

    check = commands.add_parser(
        "check-config", help="validate a config file and this host's readiness for it",
        description="Validate a config file and print the effective configuration (defaults filled in) as JSON, "
                    "with secrets and URL credentials masked; then run the checks `monitor run` makes before it "
                    "loads a model: the spool folder is writable and no other daemon holds it, the HTTP port "
                    "(and a local redis-server's) can be listened on, every checkpoint file and device exists. "
                    "Each failure is one line naming the key; exit 2.")
    check.add_argument("config", metavar="FILE")
    check.add_argument("--other-host", action="store_true",
                       help="validate a file meant for another host: secrets not set here (${NAME}, "
                            "${credential:NAME}) are replaced by placeholders and listed, and the host checks are "
                            "not run")

    report = commands.add_parser(
        "report", help="write an alert's self-contained HTML report (and save its crops)",
        description="Write the report of one alert: stream, times, verdict history, thresholds, model id and "
                    "checkpoint sha256, the scored crops, the frame and the score timeline, in one HTML file with "
                    "everything inline (no external requests). --save-crops also writes the crops as stored, "
                    "for `monitor score-images`.")
    report.add_argument("alert_id", metavar="ALERT_ID")
    report.add_argument("--redis", default=os.environ.get("MONITOR_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        metavar="URL", help="default $MONITOR_REDIS_URL or redis://127.0.0.1:6379/0")
    report.add_argument("--prefix", default="deepfake", help="key prefix (default deepfake)")
    report.add_argument("--out", default=None, metavar="FILE.html", help="default alert-<ALERT_ID>.html")
    report.add_argument("--save-crops", default=None, metavar="DIR", help="also write crop-<n>.jpg and frame.jpg here")

    sinks = commands.add_parser("sinks", help="check the alert destinations of a config",
                                description="Check the alert destinations (Redis and every [[sinks]] entry) of a "
                                            "config file.")
    sink_commands = sinks.add_subparsers(dest="sinks_command", metavar="ACTION", required=True)
    sinks_test = sink_commands.add_parser(
        "test", help="send a signed test event to every sink and print what each answered",
        description="Send one test event (type `test`, stream `sinks-test`; not an alert) to every sink of the "
                    "config: Redis gets PING and a PUBLISH on <prefix>:sinks:test (not the alert channels or the "
                    "durable log), each webhook a signed POST. Prints one line per sink; exit 1 if any failed.")
    sinks_test.add_argument("--config", required=True, metavar="FILE", help="TOML config")
    sinks_test.add_argument("--json", action="store_true", help="one JSON object per sink")

    def redis_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--redis", default=os.environ.get("MONITOR_REDIS_URL", "redis://127.0.0.1:6379/0"),
                       metavar="URL", help="default $MONITOR_REDIS_URL or redis://127.0.0.1:6379/0 (redis+sentinel:// "
                                           "for Sentinel)")
        p.add_argument("--prefix", default="deepfake", help="key prefix (default deepfake)")

    streams = commands.add_parser(
        "streams", help="the cluster's stream registry in Redis",
        description="Read and change the stream registry that the daemons of a cluster share ([cluster] "
                    "enabled): each stream is validated as the daemon validates it, secrets stay ${...} references "
                    "(each daemon resolves them), and every daemon sees the change at once.",
        epilog="Exit codes: 0 done, 2 invalid stream or file (the message names the key), 3 Redis unreachable.")
    stream_commands = streams.add_subparsers(dest="streams_command", metavar="ACTION", required=True)
    add = stream_commands.add_parser("add", help="add a stream (or replace one with --replace)")
    add.add_argument("id", metavar="ID")
    add.add_argument("url", metavar="URL", help="as in [[streams]] url (a password as ${NAME}, resolved by each daemon)")
    add.add_argument("--model", default=None, help="the model that scores it (a [models.<name>] of the daemons)")
    add.add_argument("--shadow", default=None, help="a shadow model")
    add.add_argument("--token", default=None, help="a WHEP pull's bearer token (as ${credential:NAME})")
    add.add_argument("--record", action="store_true", help="record its scores ([record])")
    add.add_argument("--table", default=None, metavar="JSON", help="more keys, e.g. '{\"sampling\": {\"sample_fps\": 4}}'")
    add.add_argument("--replace", action="store_true", help="overwrite a stream with the same id")
    add.add_argument("--config", default=None, metavar="FILE", help="validate against this daemon config's "
                                                                     "defaults and model names")
    remove = stream_commands.add_parser("remove", help="remove a stream (its daemon stops it at once)")
    remove.add_argument("id", metavar="ID")
    listed = stream_commands.add_parser("list", help="the registry's streams and their owners")
    listed.add_argument("--json", action="store_true")
    imported = stream_commands.add_parser("import", help="every [[streams]] table of a TOML file",
                                          description="Import the [[streams]] tables of FILE.toml (a daemon config "
                                                      "or a file of streams): all are validated first; none is "
                                                      "written if one is invalid.")
    imported.add_argument("file", metavar="FILE.toml")
    imported.add_argument("--replace", action="store_true", help="overwrite streams already in the registry")
    imported.add_argument("--prune", action="store_true", help="remove registry streams the file does not have")
    imported.add_argument("--config", default=None, metavar="FILE", help="validate against this daemon config")
    for p in (add, remove, listed, imported):
        redis_options(p)

    cluster = commands.add_parser("cluster", help="the daemons of a cluster",
                                  description="The fleet as Redis sees it.")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    cluster_status = cluster_commands.add_parser(
        "status", help="live daemons and each stream's owner, lease and fencing token",
        description="Print the daemons (live, last heartbeat, streams held, capacity, version, public URL) and "
                    "each registry stream's owner, fencing token, lease time left and open alerts.")
    redis_options(cluster_status)
    cluster_status.add_argument("--lease-ttl", type=float, default=10.0, metavar="S",
                                help="the cluster's lease_ttl_s: a daemon unseen this long is not live (default 10)")
    cluster_status.add_argument("--json", action="store_true")

    demo = commands.add_parser(
        "demo", help="run the daemon on the built-in demo stream (no network needed)",
        description="Run the daemon on config/demo.toml: a built-in demo stream (made offline from a public-domain "
                    "photo, looped in real time), a local redis-server started for it, the pulled checkpoint if "
                    "there is one, else an UNTRAINED network (announced in the log, marked in every alert). "
                    "Watch the alerts with the `monitor subscribe` line it prints. Ctrl-C stops it.")
    demo.add_argument("--config", default=None, metavar="FILE", help="default: the repository's config/demo.toml")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"model": _model, "score-images": _score_images, "demo": _demo, "run": _run,
               "check-config": _check_config, "subscribe": _subscribe, "crop": _crop, "score": _score, "eval": _eval,
               "calibrate": _calibrate, "sinks": _sinks, "report": _report,
               "record": _record, "streams": _streams, "cluster": _cluster}[args.command]
    if args.command in ("crop", "score", "eval"):  # they run mediapipe: LiteRT's banners go to the log (debug)
        from .logs import capture_native_stderr

        capture_native_stderr()
    try:
        code = handler(args)
    except MonitorError as e:  # the one place errors become exit codes
        return _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        return 130
    if argv is None and args.command in ("run", "demo"):
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """The daemon has stopped: events delivered or spooled, servers and files closed. What is left is the
    interpreter's finalization (torch, mediapipe and a batch an abandoned device thread may still be running):
    about 2 s on a CPU host, for nothing. The process ends now instead."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# --- model ---------------------------------------------------------------------------------------------

def _model(args) -> int:
    from .model.hub import pull

    try:
        if args.model_command == "pull":
            print(f"installed {pull(args.repo, args.dest, args.revision)}")
            return EXIT_OK
        from .model import read_checkpoint, write_native

        if args.model_command == "convert":
            checkpoint = read_checkpoint(args.src)
            dst = write_native(checkpoint, args.dst)
            print(f"wrote {dst} ({checkpoint.architecture.describe()}, face template "
                  f"{checkpoint.face_template}, from {checkpoint.source_format} sha256 {checkpoint.source_sha256[:12]}…)")
        elif args.model_command == "info":
            metadata = read_checkpoint(args.path).metadata()
            if args.json:
                metadata["architecture"] = json.loads(metadata["architecture"])
                print(json.dumps(metadata, indent=2))
            else:
                width = max(map(len, metadata))
                for key, value in metadata.items():
                    print(f"{key:<{width}}  {value}")
    except OSError as e:
        return _fail(f"{e.filename or ''}: {e.strerror or e}")
    return EXIT_OK


# --- scoring crops -------------------------------------------------------------------------------------

def _load_detector(args):
    from .model import Detector

    return Detector.load(args.model, device=args.device, precision=args.precision)


def _score_paths(detector, paths: list[str], batch_size: int) -> int:
    """Score readable images in input order; report unreadable ones on stderr. Returns the failure count."""
    from PIL import Image, UnidentifiedImageError

    from .progress import progress

    if batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    failures = 0
    pending: list[tuple[str, Image.Image]] = []

    def flush() -> None:
        scores = detector.score_images([image for _, image in pending], batch_size=batch_size)
        for (path, _), score in zip(pending, scores):
            record = {"path": path, "p_fake": round(float(score), 6)}
            if detector.info.untrained:
                record["untrained_model"] = True
            print(json.dumps(record), flush=True)
        pending.clear()

    for path in progress(paths, desc="scoring", unit="crop"):
        try:
            with Image.open(path) as image:
                pending.append((path, image.convert("RGB")))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            # Keep stdout in input order: score what is pending before reporting the failure.
            flush()
            failures += 1
            reason = "not an image PIL can identify" if isinstance(e, UnidentifiedImageError) else (e.strerror or str(e))
            print(f"monitor: error: {path}: cannot read image: {reason}", file=sys.stderr)
            continue
        if len(pending) >= batch_size:
            flush()
    flush()
    return failures


def _score_images(args) -> int:
    try:
        detector = _load_detector(args)
        failures = _score_paths(detector, args.images, args.batch_size)
    except ValueError as e:
        return _fail(str(e))
    if failures:
        print(f"monitor: {failures} of {len(args.images)} images could not be read", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def _crop(args) -> int:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from .faces.align import align
    from .faces.detect import FaceDetector

    try:
        with Image.open(args.image) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        return _fail(f"{args.image}: cannot read image: {getattr(e, 'strerror', None) or e}")
    try:
        with FaceDetector(min_confidence=args.min_confidence) as detector:
            faces = detector.detect(pixels)
    except FileNotFoundError as e:
        return _fail(str(e))
    if not faces:
        return _fail(f"{args.image}: no face found (detector confidence >= {args.min_confidence})")
    aligned = align(pixels, faces[0].keypoints, args.template)
    Image.fromarray(aligned.crop).save(args.out)
    print(json.dumps({"image": args.image, "out": args.out, "template": args.template,
                      "confidence": round(faces[0].score, 4), "interocular_px": round(aligned.interocular_px, 1),
                      "alignment_residual_px": round(aligned.residual, 2), "faces": len(faces)}))
    return EXIT_OK


def _open_scoring(args):
    from .faces.pipeline import FaceCropper, FaceSettings

    if args.frames < 1:
        raise ValueError("--frames must be at least 1")
    detector = _load_detector(args)
    return detector, FaceCropper(FaceSettings(), template=detector.info.face_template)


def _score(args) -> int:
    from .offline import score_video

    try:
        detector, cropper = _open_scoring(args)
        with contextlib.closing(cropper):
            print(json.dumps(score_video(detector, cropper, args.video, args.frames, args.per_track)))
    except (ValueError, FileNotFoundError) as e:
        return _fail(str(e))
    return EXIT_OK


def _eval(args) -> int:
    import argparse as _argparse
    import csv

    from .offline import VideoError, agreement, auroc, score_crop_folder, score_video, threshold_for_fpr

    try:
        with open(args.list, newline="") as f:
            rows = [r for r in csv.DictReader(f)]
    except OSError as e:
        return _fail(f"{args.list}: {e.strerror}")
    if not rows or not {"path", "label"} <= set(rows[0]):
        return _fail(f"{args.list}: expected a header `path,label` and at least one row")
    for number, row in enumerate(rows, start=2):
        if row["label"] not in ("real", "fake"):
            return _fail(f"{args.list}: line {number}: label must be real or fake, got {row['label']!r}")
    if not 0 < args.fpr < 1:
        return _fail("--fpr must be between 0 and 1")
    base = Path(args.list).resolve().parent
    summaries, all_videos, all_frames, failures = [], [], [], 0
    for model_path in args.model:
        try:
            detector, cropper = _open_scoring(_argparse.Namespace(**{**vars(args), "model": model_path}))
        except (ValueError, FileNotFoundError) as e:
            return _fail(str(e))
        videos, frames, failures_before = [], [], failures
        with contextlib.closing(cropper):
            for row in rows:
                path = base / row["path"]
                label = 1 if row["label"] == "fake" else 0
                try:
                    if path.is_dir():
                        scores = score_crop_folder(detector, path)
                        indexed = list(enumerate(scores))
                    else:
                        report = score_video(detector, cropper, str(path), args.frames)
                        indexed = [(f["index"], f["p_fake"]) for f in report["frames"]]
                except VideoError as e:
                    print(f"monitor: error: {e}", file=sys.stderr)
                    failures += 1
                    continue
                if not indexed:
                    print(f"monitor: warning: {row['path']}: no face scored", file=sys.stderr)
                    continue
                videos.append((row["path"], row["label"], label, float(sum(s for _, s in indexed) / len(indexed)),
                               len(indexed)))
                frames += [(row["path"], row["label"], label, i, s) for i, s in indexed]
        real = [v[3] for v in videos if v[2] == 0]
        summaries.append({
            "videos": len(videos), "frames": len(frames), "failed": failures - failures_before,
            "frame_auroc": auroc([f[2] for f in frames], [f[4] for f in frames]),
            "video_auroc": auroc([v[2] for v in videos], [v[3] for v in videos]),
            "fpr": args.fpr, "video_threshold": threshold_for_fpr(real, args.fpr) if real else None,
            "model_id": detector.info.model_id, "backbone": detector.info.architecture.backbone,
        })
        all_videos.append(videos)
        all_frames.append(frames)
        del detector
    several = len(args.model) > 1
    ids = [s["model_id"] for s in summaries]
    if args.out:
        with open(args.out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label", "p_fake", "frames_scored"] + (["model_id"] if several else []))
            for model_id, videos in zip(ids, all_videos):
                writer.writerows([(v[0], v[1], round(v[3], 6), v[4]) + ((model_id,) if several else ()) for v in videos])
    if args.frames_out:
        with open(args.frames_out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["video", "label", "index", "p_fake"] + (["model_id"] if several else []))
            for model_id, frames in zip(ids, all_frames):
                writer.writerows([(fr[0], fr[1], fr[3], round(fr[4], 6)) + ((model_id,) if several else ())
                                  for fr in frames])
    if not several:
        print(json.dumps(summaries[0]))
    else:
        per_video = [{v[0]: v[3] for v in videos} for videos in all_videos]
        thresholds = [s["video_threshold"] for s in summaries]
        print(json.dumps({"models": summaries, "agreement": agreement(ids, per_video, thresholds)}))
    return EXIT_PARTIAL if failures else EXIT_OK


def _subscribe(args) -> int:
    import asyncio

    from pydantic import ValidationError

    from .alerts.subscribe import subscribe
    from .redis import RedisSettings

    try:
        settings = RedisSettings(url=args.redis, prefix=args.prefix)
    except ValidationError as e:
        return _fail(f"invalid Redis settings: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}")
    since = "0" if args.from_start else args.since
    try:
        asyncio.run(subscribe(settings, args.stream, since, args.count, args.timeout))
    except ValueError as e:  # e.g. a malformed URL
        return _fail(f"invalid Redis URL {args.redis}: {e}")
    except BrokenPipeError:
        pass
    return EXIT_OK


def _calibrate(args) -> int:
    if args.false_alerts_per_hour is not None:
        return _calibrate_budget(args)
    from .scoring.calibrate import calibrate

    if args.window_crops < 1 or args.min_crops < 1:
        return _fail("--window-crops and --min-crops must be at least 1")
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


def _calibrate_budget(args) -> int:
    from .config import MonitorConfig, load
    from .scoring.budget import CalibrationError, agreement, calibrate_budget, read_recording

    if not args.false_alerts_per_hour > 0:
        return _fail("--false-alerts-per-hour must be above 0")
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


def _redis_settings(args):
    from pydantic import ValidationError

    from .redis import RedisSettings

    try:
        return RedisSettings(url=args.redis, prefix=args.prefix)
    except ValidationError as e:
        error = e.errors()[0]
        raise ConfigError(f"invalid Redis settings: {error['loc'][0]}: {error['msg'].removeprefix('Value error, ')}"
                          ) from None


def _streams(args) -> int:
    import asyncio

    from .cluster import commands

    settings = _redis_settings(args)
    action = args.streams_command
    if action == "add":
        raw = commands.stream_table(args.id, args.url, args.model, args.shadow, args.token, args.record, args.table)
        job = commands.add(settings, raw, args.replace, args.config)
    elif action == "remove":
        job = commands.remove(settings, args.id)
    elif action == "list":
        job = commands.listing(settings, args.json)
    else:
        job = commands.import_file(settings, args.file, args.replace, args.prune, args.config)
    try:
        print(asyncio.run(job))
    except ValueError as e:  # a malformed URL
        return _fail(f"invalid Redis URL {args.redis}: {e}")
    return EXIT_OK


def _cluster(args) -> int:
    import asyncio

    from .cluster import commands

    try:
        print(asyncio.run(commands.status(_redis_settings(args), args.lease_ttl, args.json)))
    except ValueError as e:
        return _fail(f"invalid Redis URL {args.redis}: {e}")
    return EXIT_OK


def _record(args) -> int:
    import asyncio

    from pydantic import ValidationError

    from .recording import export, parse_time, progress_printer
    from .redis import RedisSettings

    try:
        settings = RedisSettings(url=args.redis, prefix=args.prefix)
    except ValidationError as e:
        return _fail(f"invalid Redis settings: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}")
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    if since is not None and until is not None and until <= since:
        return _fail("--until must be after --since")
    try:
        summary = asyncio.run(export(settings, args.out, args.label, args.stream, since, until, args.append,
                                     progress_printer()))
    except ValueError as e:  # e.g. a malformed URL
        return _fail(f"invalid Redis URL {args.redis}: {e}")
    except OSError as e:
        return _fail(f"{args.out}: {e.strerror or e}")
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(summary.describe(args.out, args.label))
    return EXIT_OK


def _run(args) -> int:
    import asyncio

    from .config import load
    from .logs import capture_native_stderr, configure
    from .preflight import preflight

    config = load(args.config)
    configure(config.logging.level, config.logging.format)
    preflight(config)  # before the daemon's imports (torch, seconds): a second daemon is refused at once
    from .daemon import run

    capture_native_stderr()  # native libraries' banners go to the log at debug level, not to the terminal
    try:
        code = asyncio.run(run(config, args.config))
    except OSError as e:
        return _fail(f"cannot start: {e}", EXIT_FAILURE)
    return code


def _report(args) -> int:
    import asyncio

    from .alerts.store import AlertStore
    from .redis import RedisSettings
    from .report import render

    async def fetch():
        store = AlertStore(RedisSettings(url=args.redis, prefix=args.prefix))
        try:
            return (await store.events(args.alert_id), await store.evidence(args.alert_id),
                    await store.files(args.alert_id))
        finally:
            await store.close()

    from redis.exceptions import RedisError

    from .redis import describe_error
    try:
        events, evidence, files = asyncio.run(fetch())
    except RedisError as e:
        return _fail(describe_error(e, args.redis), EXIT_FAILURE)
    if not events:
        return _fail(f"no alert {args.alert_id!r} in {redact(args.redis)} (unknown, or older than redis.alert_ttl_s)")
    out = Path(args.out or f"alert-{args.alert_id}.html")
    out.write_text(render(events, evidence, files, source=f" from {redact(args.redis)}"))
    print(f"wrote {out} ({len(files)} images inline)")
    if args.save_crops:
        folder = Path(args.save_crops)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        crops = sorted(n for n in files if n.startswith("crop-"))
        print(f"saved {len(files)} images in {folder}; re-score the crops with:\n  monitor score-images --model "
              f"CHECKPOINT {' '.join(str(folder / n) for n in crops)}")
    return EXIT_OK


def _sinks(args) -> int:
    import asyncio

    from .alerts.check import check_sinks
    from .config import load

    results = asyncio.run(check_sinks(load(args.config)))
    for result in results:
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{result['sink']}: {'ok' if result['ok'] else 'FAILED'}: {redact(result['answer'])}")
    return EXIT_OK if all(r["ok"] for r in results) else EXIT_FAILURE


def _check_config(args) -> int:
    from . import tls
    from .config import PLACEHOLDER, load, masked

    missing = [] if args.other_host else None
    try:
        config = load(args.config, missing)
    except ConfigError as e:
        if "is not set" in str(e) or "credential" in str(e):
            raise ConfigError(f"{e} (for a file meant for another host: check-config --other-host)") from None
        raise
    http = config.http
    if http.tls_cert and PLACEHOLDER not in http.tls_cert:  # readable, PEM, matching, not expired
        certificate = tls.load(http.tls_cert, http.tls_key)
        if certificate.days_left < tls.RENEW_BEFORE.days:
            print(f"monitor: warning: http.tls_cert expires in {certificate.days_left:.0f} days "
                  f"({certificate.not_after:%Y-%m-%d})", file=sys.stderr)
    elif tls.wants_tls(http) and not http.tls_cert:
        print(f"monitor: note: HTTPS with a self-signed certificate made in {http.tls_dir} at first start "
              f"(http.tls = \"{http.tls}\", host {http.host})", file=sys.stderr)
    print(json.dumps(masked(config), indent=2))
    if args.other_host:
        for reference in missing:
            print(f"monitor: note: not set on this host, validated with a placeholder: {reference}", file=sys.stderr)
        print("monitor: note: --other-host: host checks (spool, ports, devices, checkpoint files) not run",
              file=sys.stderr)
        print(f"monitor: {args.config}: valid", file=sys.stderr)
        return EXIT_OK
    from .preflight import preflight

    for line in preflight(config):
        print(f"monitor: ok: {line}", file=sys.stderr)
    print(f"monitor: {args.config}: valid, and this host is ready for it", file=sys.stderr)
    return EXIT_OK


def _demo(args) -> int:
    from .demo import make_demo_video

    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepfake-monitor" / "demo"
    os.environ.setdefault("MONITOR_DEMO_DIR", str(folder))
    os.environ.setdefault("MONITOR_DEMO_VIDEO", str(make_demo_video(folder / "astronaut.mp4")))
    args.config = args.config or str(Path(__file__).resolve().parents[1] / "config" / "demo.toml")
    if not Path(args.config).is_file():
        return _fail(f"{args.config}: demo config not found (pass --config)")
    print(f"monitor: demo stream {os.environ['MONITOR_DEMO_VIDEO']}", file=sys.stderr)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
