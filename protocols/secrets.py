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

__all__ = ["API_KEY_ENV", "ZMQ_KEY_ENV", "read_api_key", "read_zmq_private_key"]

#: The environment variable of the tiled server's key (tiled's own name for it).
API_KEY_ENV = "TILED_API_KEY"
#: The environment variable of the queue server's ZeroMQ private key (bluesky-queueserver's
#: own name for it).
ZMQ_KEY_ENV = "QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER"


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
    return _read_secret(key_file, API_KEY_ENV, "API key")


def read_zmq_private_key(key_file: str | Path | None = None) -> str | None:
    """The queue server's ZeroMQ (CurveZMQ) private key: from ``key_file`` if given, else
    ``$QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER``, else None.

    A pair is made with ``qserver-zmq-keys``; clients need the public half. Errors as
    :func:`read_api_key`'s, and a key that is not a CurveZMQ key is refused.
    """
    key = _read_secret(key_file, ZMQ_KEY_ENV, "ZeroMQ private key")
    if key is not None:
        from bluesky_queueserver import validate_zmq_key

        try:
            validate_zmq_key(key)
        except Exception:
            where = key_file or f"${ZMQ_KEY_ENV}"
            raise InvalidInputError(
                f"{where} does not hold a ZeroMQ private key (40 Z85 characters); make a "
                "pair with `qserver-zmq-keys`"
            ) from None
    return key


def _read_secret(key_file: str | Path | None, env_var: str, what: str) -> str | None:
    if key_file is None:
        return os.environ.get(env_var) or None
    if not isinstance(key_file, str | os.PathLike):
        raise InvalidInputError(f"the {what} file must be a path, got {key_file!r}")
    path = Path(key_file).expanduser()
    try:
        found = path.is_file()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte in it
        raise InvalidInputError(
            f"the {what} file {str(path)[:80]!r} is not a usable path: {exc}"
        ) from None
    if not found:
        raise InputNotFoundError(f"no {what} file at {path}")
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInputError(
            f"the {what} file {path} is readable by other users; restrict it with "
            f"`chmod 600 {path}`"
        )
    lines = path.read_text().strip().splitlines()
    if not lines or not lines[0].strip():
        raise InvalidInputError(f"the {what} file {path} is empty; put the key on its first line")
    return lines[0].strip()
