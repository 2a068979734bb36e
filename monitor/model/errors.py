"""Errors of the model package, importable without torch."""

from ..errors import InputError, Unavailable


class CheckpointError(InputError):
    """A checkpoint that cannot be used, with a message that says why."""


class HubUnavailable(Unavailable):
    """The hub cannot be reached; the message says how to bring the file in by hand."""
