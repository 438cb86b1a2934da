"""The errors a user can cause, which the CLI turns into one line and a non-zero exit (never a traceback)."""
from __future__ import annotations


class UsageError(ValueError):
    """A problem with what the user asked for (names, files, parameters): the CLI prints it and exits with status 1."""
