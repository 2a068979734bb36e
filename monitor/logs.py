"""Logging: structlog key-value events, JSON lines (console format on a TTY), credentials redacted from every
event.

Standard-library loggers (ours and libraries') go through the same processors, so nothing bypasses the
redaction. Native libraries (LiteRT under mediapipe) write to file descriptor 2 directly; the daemon routes
that into the log too (`capture_native_stderr`), at debug level, so a default start shows only our lines.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

import structlog

from .redact import redact


def _redact_event(logger, method, event: dict) -> dict:
    return {k: redact(v) if isinstance(v, str) else v for k, v in event.items()}


SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
    _redact_event,
]
# Configured once, at import: events become stdlib records, and the handler installed by `configure` renders
# them. Before `configure` (a library user, a test) warnings still reach stderr through logging's last resort.
structlog.configure(
    processors=[structlog.stdlib.filter_by_level, *SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)

_output = None  # where our log lines go once native stderr is captured (the original stderr)
NOISY = ("aioice", "aiortc", "aiohttp.access")


def configure(level: str = "info", fmt: str = "auto", stream=None) -> None:
    """Install the one handler (again, on reload: level and format apply at once)."""
    stream = stream or _output or sys.stderr
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer = structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *SHARED], processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get(name: str):
    return structlog.get_logger(name)


def log_thread_stacks(*_signal) -> None:
    """`kill -USR1`: every thread's stack, as one log event (a signal handler: it runs between two bytecodes of
    the main thread, so it answers even while the event loop is stuck in Python code)."""
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    stacks = {f"{names.get(ident, 'unknown')} ({ident})": "".join(traceback.format_stack(frame))
              for ident, frame in sys._current_frames().items()}
    get(__name__).warning("thread stacks (kill -USR1)", threads=stacks)


# glog (E0000 ..., F0000 ...) and TFLite (ERROR: ...) lines that report real failures.
_NATIVE_ERROR = re.compile(r"^(?:[EF]\d{4} |ERROR:|FATAL)")


def capture_native_stderr() -> None:
    """From now on, what native code writes to file descriptor 2 becomes log events of logger `native`:
    errors at error level, the rest (LiteRT's banners and warnings) at debug. Python's own stderr and our log
    handler keep writing to the original stderr."""
    global _output
    if _output is not None:
        return
    _output = os.fdopen(os.dup(2), "w", buffering=1)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.__stderr__):
            handler.setStream(_output)
    sys.stderr = _output
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    threading.Thread(target=_forward_native, args=(read_fd,), name="native-stderr", daemon=True).start()


def _forward_native(read_fd: int) -> None:
    native = logging.getLogger("native")
    with os.fdopen(read_fd, "r", errors="replace") as pipe:
        for line in pipe:
            line = line.rstrip()
            if line:
                native.log(logging.ERROR if _NATIVE_ERROR.match(line) else logging.DEBUG, "%s", line)
