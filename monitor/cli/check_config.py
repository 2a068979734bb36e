"""`monitor check-config`: a config file validated, and this host's readiness for it."""

from __future__ import annotations

import json
import sys

from ..errors import EXIT_OK, ConfigError


def add_parser(commands) -> None:
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
    check.set_defaults(handler=run)


def run(args) -> int:
    from .. import tls
    from ..config import PLACEHOLDER, load, masked

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
    from ..preflight import preflight

    for line in preflight(config):
        print(f"monitor: ok: {line}", file=sys.stderr)
    print(f"monitor: {args.config}: valid, and this host is ready for it", file=sys.stderr)
    return EXIT_OK
