"""`monitor model`: install, convert and inspect detector checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import EXIT_OK, InputError


def add_parser(commands) -> None:
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
    from ..model.hub import DEFAULT_REPO, PUBLISHED
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
    model.set_defaults(handler=run)


def run(args) -> int:
    from ..model.hub import pull

    try:
        if args.model_command == "pull":
            print(f"installed {pull(args.repo, args.dest, args.revision)}")
            return EXIT_OK
        from ..model import read_checkpoint, write_native

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
        raise InputError(f"{e.filename or ''}: {e.strerror or e}") from None
    return EXIT_OK
