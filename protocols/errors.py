"""Errors a user of the protocols can cause, and the user errors of every part in one tuple.

An error a user can fix (a bad option value, a missing file, an unknown run, a bad manifest)
is raised as a :class:`UserError`; the ``insitu`` command line prints it in one line and exits
with status 2. :data:`USER_ERRORS` adds the other parts' bases, and anything outside it is a
bug (exit 1, the traceback with ``--debug``). Each concrete type also derives from the
built-in exception that callers catching it before expect (``ValueError``,
``FileNotFoundError``...).
"""

from __future__ import annotations

from insitu.analysis.errors import AnalysisInputError
from insitu.instruments.errors import InstrumentError
from insitu.simulators.errors import SimulatorInputError

__all__ = [
    "USER_ERRORS",
    "InputNotFoundError",
    "InvalidInputError",
    "OutputExistsError",
    "UserError",
]


class UserError(Exception):
    """Base of the errors a user of the protocols can cause; the message says the fix."""


class InvalidInputError(UserError, ValueError):
    """A value the user gave (an option, a manifest, a file's contents) that cannot be used."""


class InputNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class OutputExistsError(UserError, FileExistsError):
    """An output the user named exists, and is replaced only when asked to (``--overwrite``)."""


#: The base of each part's user errors: the command line reports these as the user's to fix.
USER_ERRORS: tuple[type[Exception], ...] = (
    UserError,
    InstrumentError,
    AnalysisInputError,
    SimulatorInputError,
)
