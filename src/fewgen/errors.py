"""User-facing errors.

A :class:`FewgenError` is a problem with the user's input (a file, a value, a spec):
the CLI prints its message on one line and exits with status 2, never a traceback.
"""

from __future__ import annotations


class FewgenError(Exception):
    """A clear, one-line problem with user input (file, value, spec, checkpoint)."""

    exit_code = 2


class DataError(FewgenError):
    """A data source is missing, malformed or too small for the requested episodes."""


class ConfigError(FewgenError):
    """A configuration key or value is unknown or of the wrong type."""


class CheckpointError(FewgenError):
    """A checkpoint folder is missing, corrupted, or of another model / format version."""


class TrainingDiverged(FewgenError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
