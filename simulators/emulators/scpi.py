"""A small SCPI parser for instrument emulators (the instrument end of the wire).

It implements the parts of IEEE 488.2 / SCPI-99 that real instruments' command parsers share:

* program messages of several commands separated by ``;``, where a command that does not
  start with ``:`` or ``*`` continues from the path of the previous one
  (``:SOUR:FUNC CURR;CURR 1e-3`` sets ``:SOUR:CURR``);
* mnemonics in short or long form, case-insensitive (``SOUR``, ``source``, never ``SOURC``),
  optional nodes in square brackets, an optional numeric suffix ``1``;
* queries ending in ``?``, whose replies are joined with ``;`` into one response message;
* parameters separated by commas, with quoted strings (``"..."`` or ``'...'``) kept whole;
* the standard error queue (``SYST:ERR?``) with the standard negative error codes.

Command sets register patterns written as in instrument manuals, e.g.
``"[:SOURce[1]]:CURRent[:LEVel][:IMMediate][:AMPLitude]"``, with a setter, a query, or both.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "STANDARD_ERRORS",
    "Command",
    "CommandSet",
    "ErrorQueue",
    "SCPIError",
    "check_count",
    "one_param",
    "parse_bool",
    "parse_choice",
    "parse_int",
    "parse_number",
    "parse_string",
    "split_message",
]

#: Messages of the standard SCPI error codes (as the Keithley 2400-series instruments word them).
STANDARD_ERRORS: dict[int, str] = {
    0: "No error",
    -100: "Command error",
    -101: "Invalid character",
    -102: "Syntax error",
    -103: "Invalid separator",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -112: "Program mnemonic too long",
    -113: "Undefined header",
    -114: "Header suffix out of range",
    -120: "Numeric data error",
    -141: "Invalid character data",
    -150: "String data error",
    -151: "Invalid string data",
    -200: "Execution error",
    -213: "Init ignored",
    -220: "Parameter error",
    -221: "Settings conflict",
    -222: "Parameter data out of range",
    -223: "Too much data",
    -224: "Illegal parameter value",
    -225: "Out of memory",
    -230: "Data corrupt or stale",
    -350: "Queue overflow",
    -363: "Input buffer overrun",
    -410: "Query INTERRUPTED",
    -420: "Query UNTERMINATED",
}


class SCPIError(Exception):
    """An error a command puts into the instrument's error queue.

    Parameters
    ----------
    code : int
        SCPI error code, e.g. ``-113``.
    message : str, optional
        Error text; defaults to the standard message of ``code``.
    """

    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        self.text = message or STANDARD_ERRORS.get(code, "Execution error")
        super().__init__(f'{code},"{self.text}"')


class ErrorQueue:
    """The instrument's first-in first-out error queue.

    Parameters
    ----------
    size : int
        Capacity; when full, the last entry is replaced by ``-350,"Queue overflow"`` as SCPI
        requires.
    """

    def __init__(self, size: int = 100) -> None:
        self._size = size
        self._queue: deque[tuple[int, str]] = deque()

    def push(self, code: int, message: str | None = None) -> None:
        """Add an error."""
        text = message or STANDARD_ERRORS.get(code, "Execution error")
        if len(self._queue) >= self._size:
            self._queue[-1] = (-350, STANDARD_ERRORS[-350])
            return
        self._queue.append((code, text))

    def pop(self) -> tuple[int, str]:
        """Remove and return the oldest error, or ``(0, "No error")``."""
        return self._queue.popleft() if self._queue else (0, STANDARD_ERRORS[0])

    def clear(self) -> None:
        """Remove all errors."""
        self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)

    @staticmethod
    def format(entry: tuple[int, str]) -> str:
        """The reply of ``SYST:ERR?`` for one entry: ``-113,"Undefined header"``."""
        code, text = entry
        return f'{code},"{text}"'


# --- lexical level ---------------------------------------------------------------------------
def split_message(message: str, separator: str = ";") -> list[str]:
    """Split ``message`` at ``separator`` outside quoted strings; items are stripped.

    Raises
    ------
    SCPIError
        ``-151`` for an unterminated quoted string.
    """
    items: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for ch in message:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch == separator:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if quote:
        raise SCPIError(-151)
    items.append("".join(current).strip())
    return items


@dataclass
class Command:
    """One parsed command of a program message."""

    nodes: list[str]  # upper-case mnemonics with any numeric suffix, without ':' or '?'
    query: bool
    params: list[str]
    common: bool  # an IEEE 488.2 common command (``*IDN?``)
    text: str = ""


_HEADER_RE = re.compile(r"^[A-Za-z*][A-Za-z0-9_]*$")


def parse_command(text: str, path: list[str]) -> tuple[Command, list[str]]:
    """Parse one command; ``path`` is the current path. Returns the command and the new path."""
    header, _, rest = text.partition(" ")
    if "\t" in header:
        header, _, more = header.partition("\t")
        rest = more + " " + rest
    header = header.strip()
    query = header.endswith("?")
    if query:
        header = header[:-1]
    params = [p for p in split_message(rest, ",")] if rest.strip() else []
    if any(p == "" for p in params):
        raise SCPIError(-103 if len(params) > 1 else -102)
    if header.startswith("*"):
        if not _HEADER_RE.match(header):
            raise SCPIError(-102)
        return Command([header.upper()], query, params, True, text), path
    absolute = header.startswith(":")
    nodes = header.lstrip(":").split(":")
    if not nodes or any(not n or not _HEADER_RE.match(n) or n.startswith("*") for n in nodes):
        raise SCPIError(-102)
    if len(nodes) and any(len(n) > 12 + 2 for n in nodes):
        raise SCPIError(-112)
    full = ([] if absolute else list(path)) + [n.upper() for n in nodes]
    return Command(full, query, params, False, text), full[:-1]


# --- header patterns -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Node:
    short: str
    long: str
    optional: bool


def _parse_pattern(pattern: str) -> list[_Node]:
    """Turn ``"[:SOURce[1]]:CURRent[:LEVel]"`` into a list of nodes."""
    nodes: list[_Node] = []
    for m in re.finditer(r"(\[)?:?([A-Za-z*]+)(?:\[1\])?(\])?", pattern):
        opt_open, name, opt_close = m.groups()
        short = "".join(c for c in name if c.isupper() or c == "*")
        nodes.append(_Node(short, name.upper(), bool(opt_open and opt_close)))
    return nodes


def _node_matches(node: _Node, received: str) -> bool:
    # A numeric suffix "1" is accepted on any node (SOURce1, SENSe1); others are out of range.
    m = re.match(r"^([A-Z*]+?)(\d*)$", received)
    if not m:
        return False
    name, suffix = m.groups()
    if suffix and suffix != "1":
        return False
    return name in (node.short, node.long)


def _match(nodes: Sequence[_Node], received: Sequence[str]) -> bool:
    if not nodes:
        return not received
    head, tail = nodes[0], nodes[1:]
    if received and _node_matches(head, received[0]) and _match(tail, received[1:]):
        return True
    return head.optional and _match(tail, received)


Handler = Callable[[list[str]], str | None]


@dataclass
class _Entry:
    pattern: str
    nodes: list[_Node]
    setter: Handler | None
    getter: Handler | None


@dataclass
class CommandSet:
    """A table of command patterns and their handlers.

    Handlers receive the list of parameter strings. A setter returns ``None``; a query returns
    the reply text. Either raises :class:`SCPIError` to put an error into the queue.
    """

    entries: list[_Entry] = field(default_factory=list)
    _cache: dict[tuple[tuple[str, ...], bool], _Entry | None] = field(default_factory=dict)

    def add(
        self, pattern: str, setter: Handler | None = None, getter: Handler | None = None
    ) -> None:
        """Register ``pattern`` (manual notation) with a setter and/or a query handler."""
        self.entries.append(_Entry(pattern, _parse_pattern(pattern), setter, getter))
        self._cache.clear()

    def find(self, command: Command) -> Handler:
        """The handler for ``command``.

        Raises
        ------
        SCPIError
            ``-113`` when no pattern matches, or when it matches but not as a query / command.
        """
        key = (tuple(command.nodes), command.query)
        if key not in self._cache:
            self._cache[key] = None
            for entry in self.entries:
                if not _match(entry.nodes, command.nodes):
                    continue
                if (entry.getter if command.query else entry.setter) is not None:
                    self._cache[key] = entry
                    break
        entry = self._cache[key]
        if entry is None:
            raise SCPIError(-113)
        handler = entry.getter if command.query else entry.setter
        assert handler is not None
        return handler


# --- parameter parsing -----------------------------------------------------------------------
_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _keyword(text: str, short: str, long: str) -> bool:
    return text.upper() in (short, long)


def parse_number(
    text: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    default: float | None = None,
) -> float:
    """Parse a numeric parameter (decimal, ``MIN``/``MAX``/``DEF`` keywords).

    Raises
    ------
    SCPIError
        ``-104`` for non-numeric data, ``-222`` when outside ``[minimum, maximum]``.
    """
    t = text.strip()
    if _keyword(t, "MIN", "MINIMUM") and minimum is not None:
        return minimum
    if _keyword(t, "MAX", "MAXIMUM") and maximum is not None:
        return maximum
    if _keyword(t, "DEF", "DEFAULT") and default is not None:
        return default
    if not _NUMBER_RE.match(t):
        raise SCPIError(-104)
    value = float(t)
    if not math.isfinite(value):
        raise SCPIError(-120)
    # Instruments compare against their ranges with a tiny tolerance for decimal round-off.
    if minimum is not None and value < minimum - 1e-12 * max(1.0, abs(minimum)):
        raise SCPIError(-222)
    if maximum is not None and value > maximum + 1e-12 * max(1.0, abs(maximum)):
        raise SCPIError(-222)
    return value


def parse_int(text: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Parse an integer parameter (a decimal that is a whole number is accepted and rounded)."""
    value = parse_number(text, minimum=minimum, maximum=maximum)
    return round(value)


def parse_bool(text: str) -> bool:
    """Parse a boolean parameter: ``ON``/``OFF``/``1``/``0`` (or any number, non-zero = on)."""
    t = text.strip().upper()
    if t == "ON":
        return True
    if t == "OFF":
        return False
    if _NUMBER_RE.match(t):
        return round(float(t)) != 0
    raise SCPIError(-104 if t.startswith(('"', "'")) else -141)


def parse_choice(text: str, choices: Sequence[str]) -> str:
    """Parse character data against ``choices`` written in manual notation (``"CURRent"``).

    Returns the short form of the matched choice (``"CURR"``).
    """
    t = text.strip().upper()
    for choice in choices:
        short = "".join(c for c in choice if c.isupper() or c.isdigit())
        if t in (short, choice.upper()):
            return short
    raise SCPIError(-141)


def parse_string(text: str, *, required_quotes: bool = False) -> str:
    """Parse a string parameter (``"..."`` or ``'...'``); unquoted text is accepted unless
    ``required_quotes``."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        return t[1:-1]
    if required_quotes or not t:
        raise SCPIError(-151 if t[:1] in "\"'" else -104)
    return t


# --- parameter counts ------------------------------------------------------------------------
def check_count(params: Sequence[str], minimum: int, maximum: int) -> None:
    """Check that a command got ``minimum`` to ``maximum`` parameters.

    Raises
    ------
    SCPIError
        ``-109`` when too few, ``-108`` when too many.
    """
    if len(params) < minimum:
        raise SCPIError(-109)
    if len(params) > maximum:
        raise SCPIError(-108)


def one_param(params: Sequence[str]) -> str:
    """The only parameter of a command that takes exactly one (see :func:`check_count`)."""
    check_count(params, 1, 1)
    return params[0]
