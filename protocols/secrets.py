"""API keys from where secrets belong: a key file or the environment, never a config file.

A key in an experiment file is copied wherever the file's settings go (the experiment's
``experiment.yaml``, its journal, every run's start document in the catalog), and a key on
the command line is visible to every user of the machine in ``ps``. So the tiled server's
key is read from a file (``api_key_file``, ``--api-key-file``; kept readable by its owner
only) or from ``TILED_API_KEY``, the variable tiled's own client reads.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputNotFoundError, InvalidInputError

__all__ = ["API_KEY_ENV", "read_api_key"]

#: The environment variable of the tiled server's key (tiled's own name for it).
API_KEY_ENV = "TILED_API_KEY"


def read_api_key(key_file: str | Path | None = None) -> str | None:
    """The tiled API key: from ``key_file`` if given, else ``$TILED_API_KEY``, else None.

    Parameters
    ----------
    key_file : str or Path, optional
        A file whose first line is the key.

    Returns
    -------
    str or None

    Raises
    ------
    InputNotFoundError
        ``key_file`` does not exist.
    InvalidInputError
        ``key_file`` is empty, or other users may read it (``chmod 600`` fixes that).
    """
    if key_file is None:
        return os.environ.get(API_KEY_ENV) or None
    path = Path(key_file).expanduser()
    if not path.is_file():
        raise InputNotFoundError(f"no API key file at {path}")
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInputError(
            f"the API key file {path} is readable by other users; restrict it with "
            f"`chmod 600 {path}`"
        )
    lines = path.read_text().strip().splitlines()
    if not lines or not lines[0].strip():
        raise InvalidInputError(f"the API key file {path} is empty; put the key on its first line")
    return lines[0].strip()
