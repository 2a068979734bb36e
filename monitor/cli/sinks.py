"""`monitor sinks test`: a signed test event to every alert destination."""

from __future__ import annotations

import json

from ..errors import EXIT_FAILURE, EXIT_OK
from ..redact import redact


def add_parser(commands) -> None:
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
    sinks.set_defaults(handler=run)


def run(args) -> int:
    import asyncio

    from ..alerts.check import check_sinks
    from ..config import load

    results = asyncio.run(check_sinks(load(args.config)))
    for result in results:
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{result['sink']}: {'ok' if result['ok'] else 'FAILED'}: {redact(result['answer'])}")
    return EXIT_OK if all(r["ok"] for r in results) else EXIT_FAILURE
