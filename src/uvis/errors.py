"""Error types. Every error a user can cause by giving bad input is a :class:`UvisError`.

The CLI prints these as one line (``error: <file>: <problem>``) and exits with status 2,
never with a traceback.
"""

from __future__ import annotations

from os import PathLike


class UvisError(Exception):
    """Base class of errors caused by input, configuration or environment."""


class DataError(UvisError):
    """A data file is missing, unreadable or not in the expected format.

    The message always names the file, so a user can find and fix it.
    """

    def __init__(self, path: str | PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{self.path}: {problem}")


class ConfigError(UvisError):
    """The configuration is invalid; the message names the offending key."""
