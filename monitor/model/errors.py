"""Errors of the model package, importable without torch."""


class CheckpointError(Exception):
    """A checkpoint that cannot be used, with a message that says why."""
