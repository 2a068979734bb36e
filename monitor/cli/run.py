"""`monitor run`: the daemon."""

from __future__ import annotations

from ..errors import RuntimeFailure


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "run", help="run the daemon",
        description="Run the monitor daemon: ingest the configured streams (RTSP, files, WHIP), score faces, "
                    "publish verdicts and alerts to Redis, serve health, metrics, the stream API and WHIP over "
                    "HTTP. SIGHUP reloads the config file; SIGTERM/SIGINT stop cleanly (exit 0). Under systemd "
                    "it speaks the notify protocol (READY=1, STATUS=, WATCHDOG=1).")
    parser.add_argument("--config", required=True, metavar="FILE", help="TOML config (see config/example.toml)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    import asyncio

    from ..config import load
    from ..logs import capture_native_stderr, configure
    from ..preflight import preflight

    config = load(args.config)
    configure(config.logging.level, config.logging.format)
    preflight(config)  # before the daemon's imports (torch, seconds): a second daemon is refused at once
    from ..daemon import run as run_daemon

    capture_native_stderr()  # native libraries' banners go to the log at debug level, not to the terminal
    try:
        code = asyncio.run(run_daemon(config, args.config))
    except OSError as e:
        raise RuntimeFailure(f"cannot start: {e}") from None
    return code
