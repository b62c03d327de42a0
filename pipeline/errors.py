"""Errors a user can act on, each with its own process exit code.

run.py prints ``str(error)`` as one line and exits with ``error.exit_code``;
tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations


class FrameGraphError(Exception):
    """Base class: a problem the user can fix, reported in one line."""

    exit_code = 1


class ConfigError(FrameGraphError):
    """The config file or a command-line option is invalid."""

    exit_code = 2


class SourceError(FrameGraphError):
    """An input cannot be opened or read (missing file, not a video, no camera)."""

    exit_code = 3


class StreamError(SourceError):
    """A network stream cannot be reached, or was lost and did not come back."""

    exit_code = 4


class SinkError(FrameGraphError):
    """An output cannot be written (bad path, no encoder, no display)."""

    exit_code = 5


class StageError(FrameGraphError):
    """A processing stage failed and its error policy is ``stop``."""

    exit_code = 6


class ModelError(FrameGraphError):
    """A model or its weights cannot be loaded (missing file, wrong checkpoint)."""

    exit_code = 7


EXIT_INTERRUPTED = 130
"""Exit code after a Ctrl-C / SIGTERM that drained and finalised the outputs."""
