"""Errors a user of the analysis can cause: a file, a table or a setting it cannot use.

Every one derives from :class:`AnalysisInputError` (a ``ValueError``), so the ``insitu``
command line prints it in one line as the user's to fix; any other exception out of the
analysis is a bug. The message says what is wrong and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "AnalysisInputError",
    "InputFileNotFoundError",
    "MissingDependencyError",
    "OutputExistsError",
]


class AnalysisInputError(ValueError):
    """Input the analysis cannot use: a bad file, table or setting; the message says why."""


class InputFileNotFoundError(AnalysisInputError, FileNotFoundError):
    """A file or folder to analyse does not exist."""


class OutputExistsError(AnalysisInputError, FileExistsError):
    """An output exists and is not replaced unless the caller asks for it."""


class MissingDependencyError(AnalysisInputError, ImportError):
    """An optional package that this input needs is not installed (the message says how)."""
