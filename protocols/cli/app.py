"""The ``insitu`` command line: the top-level parser, the error handling and :func:`main`.

Each command group is a module of this package with ``register(subparsers)``, which adds its
parser(s) and a handler that calls a workflow and prints; :data:`COMMANDS` lists them in the
order ``insitu --help`` shows them. Handlers import their workflow when they run, so that
``insitu --help`` and a typo answer at once, not after seconds of importing Bluesky and tiled.

Exit status: 0 done; 2 an error the user can fix (:data:`insitu.protocols.errors.USER_ERRORS`:
one line ``insitu: error: ...`` on stderr); 1 anything else, a bug (one line naming it, the
traceback with ``--debug``); 130 interrupted (Ctrl-C, SIGTERM or SIGHUP; every driver switched
its cell off on the way out).
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Sequence

from insitu.analysis.provenance import software_version

from ..errors import USER_ERRORS
from . import (
    analyze,
    catalog_server,
    experiment,
    export_volume,
    instrument,
    lab,
    queue_server,
    recon,
    runs,
    sim,
    tomo_scan,
)

__all__ = ["COMMANDS", "main"]

#: The command modules, in the order of ``insitu --help``.
COMMANDS = (
    experiment,
    lab,
    tomo_scan,
    recon,
    queue_server,
    analyze,
    export_volume,
    runs,
    catalog_server,
    sim,
    instrument,
)

_DEBUG_HELP = "on an error, print the traceback"


class _CommandParser(argparse.ArgumentParser):
    """A (sub)command's parser: also takes ``--debug``, so it may end the command line."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # SUPPRESS: without the flag here, the top-level parser's value stands.
        self.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insitu",
        description="Run and analyse in-situ experiments on solid-state battery cells.",
    )
    parser.add_argument("--version", action="version", version=f"insitu {software_version()}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser
    )
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _quiet_libraries(debug: bool) -> None:
    # Library chatter is not for the user of a command line: keep stdout for results and
    # stderr for our one-line errors and the progress bar.
    logging.getLogger("tiled").setLevel(logging.WARNING)
    # bluesky logs every failed or aborted run with its traceback ("Run aborted"), and the
    # error then reaches us anyway, to be printed in one line: its log only with --debug.
    logging.getLogger("bluesky").setLevel(logging.WARNING if debug else logging.CRITICAL)
    warnings.filterwarnings("ignore", message=".*httpx.*starlette.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


#: OS errors on a path that the user fixes (rights, a full or read-only disk, a file where a
#: folder should be), not the code: reported as user errors, naming the path.
_USER_OS_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.ENOSPC,
        errno.EROFS,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EDQUOT,
    }
)


def _is_user_os_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.filename is not None and exc.errno in _USER_OS_ERRNOS


def _message(exc: BaseException) -> str:
    if _is_user_os_error(exc):
        assert isinstance(exc, OSError)
        return f"cannot use {exc.filename}: {exc.strerror}"
    # KeyError's str() is the repr of its key; its first argument is the message.
    return str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)


def _report(exc: BaseException, *, debug: bool, user: bool) -> int:
    """Print the error in one line (after the traceback with --debug); the exit status."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if user:
        print(f"insitu: error: {_message(exc)}", file=sys.stderr)
        return 2
    first, *more = _message(exc).splitlines() or [""]
    hint = "" if debug else " (run with --debug for the traceback)"
    print(
        f"insitu: internal error: {type(exc).__name__}: {first}{' …' if more else ''}{hint}",
        file=sys.stderr,
    )
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``insitu`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    _quiet_libraries(bool(getattr(args, "debug", False)))
    if threading.current_thread() is threading.main_thread():
        # A polite kill (SIGTERM) or a closed terminal (SIGHUP) unwinds like Ctrl-C, so every
        # driver switches its cell off; while a plan runs, the workflows take these signals
        # over (workflows.interrupts) so that the RunEngine closes the run first.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        if hasattr(signal, "SIGHUP"):  # POSIX only
            signal.signal(signal.SIGHUP, _raise_keyboard_interrupt)
    try:
        status = args.func(args)
    except USER_ERRORS as exc:
        return _report(exc, debug=args.debug, user=True)
    except KeyboardInterrupt:
        _ignore_further_signals()
        print("insitu: interrupted; the cell was switched off", file=sys.stderr)
        return 130
    except Exception as exc:
        return _report(exc, debug=args.debug, user=_is_user_os_error(exc))
    if status == 130:  # a command that reported its own interruption
        _ignore_further_signals()
    return status


def _ignore_further_signals() -> None:
    """Once a command was interrupted, a second Ctrl-C (or kill) only ends the exit: the cell
    is already off, and a KeyboardInterrupt raised in the interpreter's shutdown hooks would
    print a traceback over the one-line message."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
