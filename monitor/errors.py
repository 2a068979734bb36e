"""The monitor's errors: one hierarchy, each class with its exit code, mapped once in `cli.main`.

Exit codes: 0 success; 1 a runtime failure, or some inputs failed while the rest were processed; 2 bad
configuration or unusable input (the message names the config key or the file); 3 a network resource (the
model hub, or Redis for the registry commands and record export) is unreachable. Messages are one line and never
hold a credential.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3


class MonitorError(Exception):
    """Base of every error the monitor raises on purpose."""

    exit_code = EXIT_FAILURE


class ConfigError(MonitorError):
    """A configuration problem; the message names the key (`model.devices: ...`)."""

    exit_code = EXIT_BAD_INPUT


class InputError(MonitorError):
    """An input that cannot be used (a checkpoint, a video, a CSV); the message names it and says why."""

    exit_code = EXIT_BAD_INPUT


class Unavailable(MonitorError):
    """A network resource the command needs (the model hub; Redis for the registry and record export) cannot be
    reached."""

    exit_code = EXIT_UNAVAILABLE


class StreamExists(MonitorError):
    """A stream with that id is already running (or, in cluster mode, in the registry)."""

    exit_code = EXIT_BAD_INPUT


class RuntimeFailure(MonitorError):
    """The daemon cannot go on (a supervised task failed for good)."""

    exit_code = EXIT_FAILURE
