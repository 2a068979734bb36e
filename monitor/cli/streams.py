"""`monitor streams`: the cluster's stream registry in Redis."""

from __future__ import annotations

from ..errors import EXIT_OK, InputError
from .base import redis_options, redis_settings


def add_parser(commands) -> None:
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
    streams.set_defaults(handler=run)


def run(args) -> int:
    import asyncio

    from ..cluster import commands

    settings = redis_settings(args)
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
        raise InputError(f"invalid Redis URL {args.redis}: {e}") from None
    return EXIT_OK
