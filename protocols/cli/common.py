"""What the command modules share: option groups, value checks, the run store, printing.

Not a command module: every command module may import it, and it imports none of them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError
from ..secrets import read_api_key

if TYPE_CHECKING:
    from ..storage.catalog import RunStore

__all__ = [
    "EMULATORS",
    "add_emulator_option",
    "add_output_options",
    "add_storage_options",
    "emit",
    "floats",
    "number_pair",
    "open_store",
    "print_json",
    "require_positive",
]

#: The instruments a simulated bench can emulate.
EMULATORS = ("keithley2450", "methodscript")


def floats(text: str) -> list[float]:
    """An argparse type: numbers separated by commas (``0.1,0.25,0.5``)."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None


def number_pair(text: str) -> tuple[float, float]:
    """An argparse type: two numbers separated by a comma (``0.5,1.5``)."""
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers 'A,B', got {text!r}") from None
    return a, b


def require_positive(**values: float) -> None:
    """Check what the user typed before any instrument or emulator is touched.

    Parameters
    ----------
    **values : float
        Option values by option name (``area_cm2`` stands for ``--area-cm2``).

    Raises
    ------
    InvalidInputError
        For the first value that is not positive, naming its option.
    """
    for name, value in values.items():
        if not value > 0:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be positive, got {value:g}")


def add_emulator_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    default: str | None,
    help: str,
    old_name: str = "--sim-protocol",
) -> None:
    """``--emulator keithley2450|methodscript``, and its old name, accepted but not shown.

    The wire side is an emulator; the word "protocol" is kept for experiment procedures.
    """
    parser.add_argument("--emulator", choices=EMULATORS, default=default, help=help)
    parser.add_argument(
        old_name,
        dest="emulator",
        choices=EMULATORS,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,  # deprecated spelling of --emulator
    )


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--catalog``, ``--api-key-file``: where runs are stored and read back."""
    store = parser.add_argument_group("storage")
    store.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="folder of the embedded catalog (default ./insitu-data or $INSITU_DATA)",
    )
    store.add_argument("--catalog", metavar="URI", help="a tiled server instead of the folder")
    store.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="file holding the tiled server's API key (default: $TILED_API_KEY)",
    )
    store.add_argument(
        "--api-key",
        help="API key of the tiled server (visible to other users in `ps`: prefer "
        "--api-key-file or $TILED_API_KEY)",
    )


def add_output_options(parser: argparse.ArgumentParser, progress: bool = False) -> None:
    """``--json`` (one JSON object on stdout) and, for long commands, ``--quiet``."""
    parser.add_argument("--json", action="store_true", help="print one JSON object with results")
    if progress:
        parser.add_argument("--quiet", action="store_true", help="no progress bar")


@contextmanager
def open_store(args: argparse.Namespace) -> Iterator[RunStore]:
    """The run store that ``--data``/``--catalog``/``--api-key`` name, closed afterwards."""
    # Imported here: tiled takes a second to import, which commands without storage skip.
    from ..storage.catalog import RunStore

    uri = getattr(args, "catalog", None)
    api_key = getattr(args, "api_key", None)
    if uri and not api_key:
        api_key = read_api_key(getattr(args, "api_key_file", None))
    store = RunStore(getattr(args, "data", None), uri=uri, api_key=api_key)
    try:
        yield store
    finally:
        store.close()


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):  # np.float64 out of a table is a number to JSON
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def print_json(result: Any, *, default: Callable[[Any], Any] = _json_default, **kw: Any) -> None:
    """Print one JSON object on one line, flushed (numpy scalars as numbers; ``kw``: dumps)."""
    print(json.dumps(result, default=default, **kw), flush=True)


def emit(args: argparse.Namespace, result: Mapping[str, Any], human: list[str]) -> int:
    """Print ``result`` as one JSON object with ``--json``, else the ``human`` lines; 0."""
    if getattr(args, "json", False):
        print_json(result)
    else:
        print("\n".join(human))
    return 0
