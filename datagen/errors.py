"""The one error hierarchy of datagen.

    DatagenError            anything datagen raises on purpose; the CLI prints it in one line
    ├── UsageError          the user asked for something impossible (exit code 2)
    │   └── OutputExistsError   the output folder exists and neither --overwrite nor --resume
    └── RunError            the run itself failed (exit code 1)
        └── TemplateError   a template is missing or references an undefined name
"""

from __future__ import annotations

__all__ = ["DatagenError", "OutputExistsError", "RunError", "TemplateError", "UsageError"]


class DatagenError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(DatagenError):
    """Bad options or input: the message says what was wrong and how to fix it."""

    exit_code = 2


class OutputExistsError(UsageError):
    """The output folder is already there."""


class RunError(DatagenError):
    """The run failed for a reason other than the user's options."""


class TemplateError(RunError):
    """A template could not be found or rendered."""
