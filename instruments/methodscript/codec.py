"""PalmSens MethodSCRIPT wire codec, shared by the driver and the emulator.

Everything here is pure text processing: no I/O, no threads. Sources (read, not copied):

* MethodSCRIPT manual v1.2 (PalmSens BV, 2020) §4.3 as transcribed at
  https://fdocuments.in/document/methodscript-v1-4222020-hhhhhhh-hexadecimal-value-p-prefix-character.html
  ("0.01 would be represented as ``800000Am``"), and the current manual at
  https://dev.palmsens.com/methodscript/latest/methodscript/methodscript_main.html.
* PalmSens' reference parser ``palmsens/mscript.py`` in
  https://github.com/PalmSens/MethodSCRIPT_Examples (variable types, metadata, loop markers).
* PalmSens' example scripts ``Example_MethodSCRIPTs/Measurement_Loops/*.mscr`` in the same
  repository (argument order of ``meas_loop_cp``, ``meas_loop_ocp``, ``meas_loop_eis``,
  ``meas_loop_geis``).
* The pypalmsens documentation (``t``, ``i``, ``v`` replies of an EmStat4:
  ``tes4_lr1500#Mar 12 2026 14:28:01`` / ``R*``, ``iES4LR20B0008``, ``v01.09.00``).

Wire format summary
-------------------
Every line ends with ``\\n``. A data package is ``P`` followed by variables separated by ``;``.
A variable is a two-letter type code (``ab`` measured potential, ``ba`` WE current, ``eb``
time, ``dc`` frequency, ``cc``/``cd`` real/imaginary impedance, ...), seven hexadecimal
digits holding ``value + 0x8000000`` and one SI-prefix character, then optional metadata
``,<id><hex>`` (id ``1``: status flags, id ``2``: range index). Loop output is framed by
``M<4 hex>`` ... ``*`` (measurement loops), ``L`` ... ``+`` (plain loops) and ``C<4 hex>`` ...
``-`` (scans). Errors are ``!XXXX`` (4 hex digits) optionally followed by
``: Line L, Col C``. In scripts, numbers are integers with an SI prefix (``100m``, ``-500n``,
``10k``; ``M`` is mega, ``m`` milli), integers carry an ``i`` suffix (``51i``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import InstrumentProtocolError

__all__ = [
    "DAMAGE_LIMIT",
    "DEVICE_MODELS",
    "ERROR_CODES",
    "MIN_PACKAGE_LENGTH",
    "OFFSET",
    "SI_PREFIXES",
    "STATUS_OVERLOAD",
    "STATUS_OVERLOAD_WARNING",
    "STATUS_TIMING_ERROR",
    "STATUS_UNDERLOAD",
    "TECHNIQUE_IDS",
    "VAR_TYPES",
    "DamagedKind",
    "ErrorReply",
    "FirmwareInfo",
    "PackageColumn",
    "PackageColumns",
    "PackageError",
    "VarType",
    "Variable",
    "classify_damaged",
    "damaged_error",
    "decode_value",
    "encode_value",
    "encode_values",
    "error_text",
    "format_error",
    "format_firmware",
    "format_literal",
    "format_package",
    "format_packages",
    "is_damaged",
    "is_damaged_form_of",
    "is_loop_end",
    "is_loop_start",
    "parse_error",
    "parse_firmware",
    "parse_literal",
    "parse_package",
    "parse_packages",
    "split_script_line",
]

#: Offset added to the signed 28-bit mantissa so it is sent as 7 unsigned hex digits.
OFFSET = 0x8000000
_MANTISSA_MAX = OFFSET - 1
_MANTISSA_MIN = -OFFSET

#: SI prefix characters of package values and script literals. ``" "`` is no prefix; ``"i"``
#: marks an integer (package values only; in scripts it is a suffix of integer literals).
SI_PREFIXES: dict[str, float] = {
    "a": 1e-18,
    "f": 1e-15,
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    " ": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "i": 1.0,
}
# Exact exponents, so encoding never suffers from 1e-6 not being exactly representable.
_PREFIX_EXPONENT = {"a": -18, "f": -15, "p": -12, "n": -9, "u": -6, "m": -3, " ": 0}
_PREFIX_EXPONENT.update({"k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18})
_NAN_FIELD = "     nan"
_HEX_CHARS = frozenset("0123456789abcdefABCDEF")

#: Status flags of metadata id 1.
STATUS_TIMING_ERROR = 0x1
STATUS_OVERLOAD = 0x2
STATUS_UNDERLOAD = 0x4
STATUS_OVERLOAD_WARNING = 0x8

#: Technique ids of the ``M<id>`` measurement-loop marker.
TECHNIQUE_IDS: dict[str, int] = {
    "meas_loop_lsv": 0x0000,
    "meas_loop_dpv": 0x0001,
    "meas_loop_swv": 0x0002,
    "meas_loop_npv": 0x0003,
    "meas_loop_acv": 0x0004,
    "meas_loop_cv": 0x0005,
    "meas_loop_ca": 0x0007,
    "meas_loop_pad": 0x0008,
    "meas_loop_cp": 0x000A,
    "meas_loop_ocp": 0x000B,
    "meas_loop_eis": 0x000D,
    "meas_loop_geis": 0x000E,
    "meas_loop_lsp": 0x000F,
}

#: Error codes and their texts (MethodSCRIPT manual, appendix "error codes"). Codes below
#: 0x4000 are device/runtime errors; 0x4000 and up are script (parse) errors.
ERROR_CODES: dict[int, str] = {
    0x0001: "An unspecified error has occurred",
    0x0002: "An invalid variable type has been used",
    0x0003: "The command was not recognized",
    0x0006: "Command not allowed in the present communication mode (e.g. no script running)",
    0x0007: "An argument has an unexpected value",
    0x0008: "Command exceeds maximum length",
    0x0009: "The command has timed out",
    0x000B: "Cannot reserve the memory needed for this variable",
    0x000C: "Cannot run a script without loading one first",
    0x000D: "The given (or calculated) time value is invalid for this command",
    0x000E: "An overflow has occurred while averaging a measured value",
    0x000F: "The given potential is not valid",
    0x0010: "A variable has become either NaN or inf",
    0x0011: "The input frequency is invalid",
    0x0012: "The input amplitude is invalid",
    0x0014: "Cannot perform OCP measurement when cell on",
    0x001B: "This command or part of this command is not supported by the current device",
    0x0021: "The specified PGStat mode is not supported",
    0x0023: "Command is invalid for the selected PGStat mode",
    0x0028: "Variable divided by zero",
    0x4000: "The script contains a syntax error",
    0x4001: "The script command is unknown",
    0x4002: "An argument was invalid for this command",
    0x4003: "An argument was out of range",
    0x4004: "An unexpected character was encountered",
    0x4005: "The script is too large for the internal script memory",
    0x4006: "The variable type specified is unknown",
    0x4007: "The variable has not been declared",
    0x4008: "This optional argument is not valid for this command",
    0x400B: "Measurement loops cannot be placed inside other measurement loops",
    0x4018: "The script has ended unexpectedly",
    0x4026: "The variable already exists when declared",
    0x4027: "This command requires the cell to be enabled with cell_on",
    0x7FFF: "A fatal error has occurred, the device must be reset",
}


def error_text(code: int) -> str:
    """Text of a MethodSCRIPT error code (``"unknown error"`` when not listed)."""
    return ERROR_CODES.get(code, f"unknown error 0x{code:04X} (see the MethodSCRIPT manual)")


# --- variable types ----------------------------------------------------------------------
@dataclass(frozen=True)
class VarType:
    """A MethodSCRIPT variable type: two-letter code, meaning and SI unit."""

    code: str
    name: str
    unit: str


#: The variable types this project uses (a subset of the manual's list).
VAR_TYPES: dict[str, VarType] = {
    v.code: v
    for v in (
        VarType("aa", "unknown", ""),
        VarType("ab", "WE vs RE potential", "V"),
        VarType("ag", "WE vs CE potential", "V"),
        VarType("ba", "WE current", "A"),
        VarType("ca", "phase", "deg"),
        VarType("cb", "impedance modulus", "ohm"),
        VarType("cc", "impedance real part", "ohm"),
        VarType("cd", "impedance imaginary part", "ohm"),
        VarType("da", "set potential", "V"),
        VarType("db", "set current", "A"),
        VarType("dc", "set frequency", "Hz"),
        VarType("dd", "set AC amplitude", "V"),
        VarType("eb", "time", "s"),
        VarType("ja", "generic 1", ""),
        VarType("jb", "generic 2", ""),
        VarType("jc", "generic 3", ""),
        VarType("jd", "generic 4", ""),
    )
}
_VAR_CODE_RE = re.compile(r"[a-z]{2}\Z")


# --- values ------------------------------------------------------------------------------
class PackageError(InstrumentProtocolError, ValueError):
    """A package or value that does not follow the MethodSCRIPT format.

    An :class:`~insitu.instruments.errors.InstrumentProtocolError` (a reply that cannot be
    parsed), and a ``ValueError`` as before.
    """


def encode_value(value: float, *, integer: bool = False) -> str:
    """Encode ``value`` as the 8-character package field ``HHHHHHHp``.

    The finest SI prefix whose mantissa fits in 28 signed bits is used, as the instruments do
    (0.1 V is sent as ``DF5E100n``), so the resolution is about 7 significant digits.

    Parameters
    ----------
    value : float
        Value in SI units; NaN gives the manual's ``"     nan"`` field.
    integer : bool
        Send an integer with the ``i`` prefix (``value`` must be integral and fit 28 bits).

    Returns
    -------
    str
        Seven hex digits plus the prefix character.
    """
    if integer:
        mantissa = int(value)
        if mantissa != value or not _MANTISSA_MIN <= mantissa <= _MANTISSA_MAX:
            raise ValueError(f"{value!r} is not an integer that fits in a MethodSCRIPT package")
        return f"{mantissa + OFFSET:07X}i"
    value = float(value)
    if math.isnan(value):
        return _NAN_FIELD
    if math.isinf(value):
        raise ValueError("infinite values cannot be encoded in a MethodSCRIPT package")
    if abs(value) < 1.0 and round(value * 10.0 ** -_PREFIX_EXPONENT["a"]) == 0:
        # 0, or below half the finest step (1e-18), which every prefix rounds to 0.
        return f"{OFFSET:07X} "
    for prefix, exponent in sorted(_PREFIX_EXPONENT.items(), key=lambda kv: kv[1]):
        scaled = value * 10.0 ** (-exponent)
        if not abs(scaled) <= OFFSET:  # also inf: round() of it would raise OverflowError
            continue
        mantissa = round(scaled)
        if _MANTISSA_MIN <= mantissa <= _MANTISSA_MAX:
            if mantissa == 0:
                continue  # too small for this prefix (cannot happen for the finest fitting one)
            return f"{mantissa + OFFSET:07X}{prefix}"
    raise ValueError(f"{value!r} is too large for a MethodSCRIPT package")


def decode_value(text: str) -> float:
    """Decode the 8-character package field ``HHHHHHHp`` (or ``"     nan"``) to a float.

    A field whose trailing space prefix was stripped (7 characters) is accepted as well.
    """
    if text == _NAN_FIELD or text.strip() == "nan":
        return math.nan
    if len(text) == 7:
        text += " "
    if len(text) != 8:
        raise PackageError(f"value field {text!r} must be 7 hex digits and an SI prefix")
    digits, prefix = text[:7], text[7]
    if prefix not in SI_PREFIXES:
        raise PackageError(f"unknown SI prefix {prefix!r} in value field {text!r}")
    # int(..., 16) alone would also take a sign, "0x", "_" and spaces: a garbled field.
    if not all(c in _HEX_CHARS for c in digits):
        raise PackageError(f"value field {text!r} has non-hexadecimal digits")
    mantissa = int(digits, 16) - OFFSET
    if prefix == "i":
        return float(mantissa)
    exponent = _PREFIX_EXPONENT[prefix]
    # Divide by a power of ten rather than multiply by 1e-6 etc.: the result is then the
    # correctly rounded decimal the instrument meant (-0.01 stays -0.01, not -0.010000000000000002).
    return mantissa / 10.0 ** (-exponent) if exponent < 0 else mantissa * 10.0**exponent


# --- packages ----------------------------------------------------------------------------
@dataclass
class Variable:
    """One variable of a data package.

    Attributes
    ----------
    type : str
        Two-letter variable type code (see :data:`VAR_TYPES`).
    value : float
        Value in SI units.
    status : int or None
        Status flags (metadata id 1): ``STATUS_*`` bits, 0 for OK.
    range : int or None
        Range index (metadata id 2), instrument specific.
    extra : dict
        Other metadata, id → raw hex text.
    """

    type: str
    value: float
    status: int | None = None
    range: int | None = None
    extra: dict[int, str] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        """SI unit of the variable type (``""`` when unknown)."""
        vt = VAR_TYPES.get(self.type)
        return vt.unit if vt else ""


def parse_package(line: str) -> list[Variable]:
    """Parse a data package line ``P<var>;<var>...`` (trailing ``\\n`` allowed).

    Raises
    ------
    PackageError
        If the line is not a well-formed package.
    """
    line = line.rstrip("\r\n")
    if not line.startswith("P") or len(line) < 2:
        raise PackageError(f"not a MethodSCRIPT data package: {line!r}")
    out = []
    for part in line[1:].split(";"):
        head, *meta = part.split(",")
        code = head[:2]
        if not _VAR_CODE_RE.match(code) or len(head) not in (9, 10):
            raise PackageError(f"malformed variable {part!r} in package {line!r}")
        var = Variable(code, decode_value(head[2:]))
        for token in meta:
            if len(token) < 2 or not all(c in "0123456789abcdefABCDEF" for c in token):
                raise PackageError(f"malformed metadata {token!r} in package {line!r}")
            kind, payload = int(token[0], 16), token[1:]
            if kind == 1:
                var.status = int(payload, 16)
            elif kind == 2:
                var.range = int(payload, 16)
            else:
                var.extra[kind] = payload
        out.append(var)
    return out


def format_package(variables: Iterable[Variable | tuple]) -> str:
    """Format variables as a package line (without the trailing ``\\n``).

    Items are :class:`Variable` or tuples ``(type, value[, status[, range]])``. Integer-typed
    values are sent with the ``i`` prefix when ``value`` is an ``int``.
    """
    parts = []
    for item in variables:
        var = item if isinstance(item, Variable) else Variable(*item)
        if not _VAR_CODE_RE.match(var.type):
            raise ValueError(f"variable type {var.type!r} must be two lowercase letters")
        text = var.type + encode_value(var.value, integer=isinstance(var.value, int))
        if var.status is not None:
            text += f",1{var.status:X}"
        if var.range is not None:
            text += f",2{var.range:02X}"
        for kind, payload in sorted(var.extra.items()):
            text += f",{kind:X}{payload}"
        parts.append(text)
    if not parts:
        raise ValueError("a package needs at least one variable")
    return "P" + ";".join(parts)


# --- batches of packages (vectorised; identical results to the per-value functions) -------
_HEX_DIGITS = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_NAN_BYTES = np.frombuffer(_NAN_FIELD.encode("ascii"), dtype=np.uint8)
_ENC_PREFIXES = sorted(_PREFIX_EXPONENT, key=_PREFIX_EXPONENT.__getitem__)  # finest first
_ENC_PREFIX_BYTES = np.frombuffer("".join(_ENC_PREFIXES).encode("ascii"), dtype=np.uint8)
# The same Python expression as encode_value, so the products are bit-identical.
_ENC_SCALES = np.array([10.0 ** (-_PREFIX_EXPONENT[p]) for p in _ENC_PREFIXES])
_NIBBLE_SHIFTS = np.arange(24, -1, -4, dtype=np.int64)


def encode_values(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Encode many values at once; row ``k`` holds the bytes of ``encode_value(values[k])``.

    Parameters
    ----------
    values : array_like of float
        Values in SI units (NaN allowed).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(n, 8)``: seven hex digits and the SI prefix per value.

    Raises
    ------
    ValueError
        For infinite values or values too large for a package, as :func:`encode_value`.
    """
    v = np.asarray(values, dtype=float).reshape(-1)
    out = np.empty((v.size, 8), dtype=np.uint8)
    if v.size == 0:
        return out
    nan = np.isnan(v)
    with np.errstate(invalid="ignore", over="ignore"):
        mant = np.rint(v[:, None] * _ENC_SCALES[None, :])  # (n, prefixes), finest first
        fits = (mant >= _MANTISSA_MIN) & (mant <= _MANTISSA_MAX) & (mant != 0)
    choice = fits.argmax(axis=1)
    # 0, or below half the finest step, which every prefix rounds to 0 (as encode_value).
    zero = (mant[:, 0] == 0) & ~nan
    bad = ~(fits.any(axis=1) | zero | nan)
    if bad.any():
        encode_value(float(v[bad.argmax()]))  # raises the per-value error
        raise ValueError(f"{v[bad.argmax()]!r} cannot be encoded")  # pragma: no cover
    rows = np.arange(v.size)
    picked = np.where(zero | nan, 0.0, mant[rows, choice]).astype(np.int64) + OFFSET
    out[:, :7] = _HEX_DIGITS[(picked[:, None] >> _NIBBLE_SHIFTS[None, :]) & 0xF]
    out[:, 7] = _ENC_PREFIX_BYTES[choice]
    out[zero, 7] = ord(" ")
    out[nan] = _NAN_BYTES
    return out


#: One column of :func:`format_packages`: ``(type, values, status, range)``. ``values`` is an
#: array of ``n`` floats or one scalar for every row (an ``int`` scalar is sent with the ``i``
#: prefix, as in :func:`format_package`); ``status`` is ``None``, an int or an array of ints;
#: ``range`` is ``None`` or an int.
PackageColumn = tuple[str, object, object, object]


def _column_bytes(column: PackageColumn, n: int) -> list[np.ndarray]:
    code, values, status, rng = column
    if not _VAR_CODE_RE.match(code):
        raise ValueError(f"variable type {code!r} must be two lowercase letters")
    pieces = [np.broadcast_to(np.frombuffer(code.encode("ascii"), dtype=np.uint8), (n, 2))]
    if np.ndim(values) == 0:
        field_text = encode_value(values, integer=isinstance(values, int))  # type: ignore[arg-type]
        pieces.append(
            np.broadcast_to(np.frombuffer(field_text.encode("ascii"), dtype=np.uint8), (n, 8))
        )
    else:
        if len(values) != n:  # type: ignore[arg-type]
            raise ValueError("every column of a package batch needs one value per row")
        pieces.append(encode_values(values))  # type: ignore[arg-type]
    if status is not None:
        if np.ndim(status) == 0:
            meta = f",1{int(status):X}".encode("ascii")  # type: ignore[call-overload]
            pieces.append(np.broadcast_to(np.frombuffer(meta, dtype=np.uint8), (n, len(meta))))
        else:
            st = np.asarray(status, dtype=np.int64)
            if st.shape != (n,) or st.min() < 0 or st.max() > 0xF:
                raise _NotBatchable
            block = np.empty((n, 3), dtype=np.uint8)
            block[:, 0], block[:, 1], block[:, 2] = ord(","), ord("1"), _HEX_DIGITS[st]
            pieces.append(block)
    if rng is not None:
        meta = f",2{int(rng):02X}".encode("ascii")  # type: ignore[call-overload]
        pieces.append(np.broadcast_to(np.frombuffer(meta, dtype=np.uint8), (n, len(meta))))
    return pieces


class _NotBatchable(Exception):
    """Rows of a batch would not all have the same width: format them one by one."""


def format_packages(columns: Sequence[PackageColumn], n: int) -> str:
    """Format ``n`` packages with the same variables at once.

    Row ``k`` is exactly ``format_package([(type, values[k], status[k], range), ...])`` (for
    scalar values/status the same scalar in every row), so the result equals
    ``"".join(format_package(...) + "\n" for each row)``.

    Parameters
    ----------
    columns : sequence of PackageColumn
        ``(type, values, status, range)`` per variable, in package order.
    n : int
        Number of packages.

    Returns
    -------
    str
        ``n`` package lines, each ending with ``\n`` (``""`` when ``n`` is 0).
    """
    if not columns:
        raise ValueError("a package needs at least one variable")
    if n <= 0:
        return ""
    try:
        pieces = [np.full((n, 1), ord("P"), dtype=np.uint8)]
        for k, column in enumerate(columns):
            if k:
                pieces.append(np.full((n, 1), ord(";"), dtype=np.uint8))
            pieces.extend(_column_bytes(column, n))
        pieces.append(np.full((n, 1), ord("\n"), dtype=np.uint8))
    except _NotBatchable:
        return "".join(
            format_package(
                (code, _row(values, k), _row(status, k), rng)
                for code, values, status, rng in columns
            )
            + "\n"
            for k in range(n)
        )
    return np.concatenate(pieces, axis=1).tobytes().decode("ascii")


def _row(value: object, k: int) -> object:
    if value is None or np.ndim(value) == 0:
        return value
    item = value[k]  # type: ignore[index]
    return int(item) if isinstance(item, np.integer) else float(item)


_HEX_VALUE = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_VALUE[_c] = _i
    _HEX_VALUE[bytes([_c]).upper()[0]] = _i
_PREFIX_INDEX = np.full(256, -1, dtype=np.int64)
_DEC_PREFIXES = list(SI_PREFIXES)
for _i, _p in enumerate(_DEC_PREFIXES):
    _PREFIX_INDEX[ord(_p)] = _i
# decode_value divides by 10**-e for negative exponents and multiplies by 10**e otherwise;
# (m / div) * mul with the unused factor 1.0 gives the same correctly rounded result.
_DEC_DIV = np.array(
    [
        10.0 ** (-_PREFIX_EXPONENT.get(p, 0)) if _PREFIX_EXPONENT.get(p, 0) < 0 else 1.0
        for p in _DEC_PREFIXES
    ]
)
_DEC_MUL = np.array(
    [
        10.0 ** _PREFIX_EXPONENT.get(p, 0) if _PREFIX_EXPONENT.get(p, 0) >= 0 else 1.0
        for p in _DEC_PREFIXES
    ]
)
_NIBBLE_WEIGHTS = 16 ** np.arange(6, -1, -1, dtype=np.int64)


@dataclass
class PackageColumns:
    """One variable of a batch of packages parsed by :func:`parse_packages`.

    Attributes
    ----------
    type : str
        Two-letter variable type code.
    values : numpy.ndarray
        Values in SI units, one per package.
    status, range : numpy.ndarray or None
        Metadata ids 1 and 2 per package, ``None`` where the packages carry none.
    """

    type: str
    values: np.ndarray
    status: np.ndarray | None = None
    range: np.ndarray | None = None


def _hex_ints(block: np.ndarray) -> np.ndarray | None:
    digits = _HEX_VALUE[block]
    if (digits < 0).any():
        return None
    weights = 16 ** np.arange(block.shape[1] - 1, -1, -1, dtype=np.int64)
    return digits @ weights


def parse_packages(lines: Sequence[bytes]) -> list[PackageColumns] | None:
    """Parse many package lines of one layout at once (a fast path for :func:`parse_package`).

    The lines (bytes, without ``\n``) must all have the layout of the first one: the same
    variables in the same order with full 8-character value fields and the same metadata
    (ids 1 and 2 only) of the same widths. Then the result holds, per variable, exactly the
    values, status and range :func:`parse_package` gives line by line. Anything else (another
    layout, a malformed line, other metadata) returns ``None``: parse those lines one by one
    with :func:`parse_package`, which also reports what is wrong with them.
    """
    n = len(lines)
    if n == 0:
        return None
    first = lines[0]
    width = len(first)
    if width < 2 or first[:1] != b"P" or any(len(line) != width for line in lines):
        return None
    try:
        text = first.decode("ascii")
        parse_package(text)
    except (UnicodeDecodeError, PackageError):
        return None
    # Layout of the first line: structural bytes must repeat in every line.
    structural = np.zeros(width, dtype=bool)
    structural[0] = True
    layout: list[tuple[str, int, list[tuple[int, int, int]]]] = []
    cursor = 1
    for number, part in enumerate(text[1:].split(";")):
        if number:
            structural[cursor] = True  # the ";"
            cursor += 1
        head, *meta = part.split(",")
        if len(head) != 10:
            return None
        structural[cursor : cursor + 2] = True
        value_at = cursor + 2
        cursor += 10
        metas = []
        for token in meta:
            kind = int(token[0], 16)
            if kind not in (1, 2) or any(k == kind for k, _, _ in metas):
                return None
            structural[cursor : cursor + 2] = True  # "," and the id
            metas.append((kind, cursor + 2, len(token) - 1))
            cursor += 1 + len(token)
        layout.append((head[:2], value_at, metas))
    mat = np.frombuffer(b"".join(lines), dtype=np.uint8).reshape(n, width)
    if not (mat[:, structural] == mat[0, structural]).all():
        return None
    out = []
    for code, at, metas in layout:
        fields = mat[:, at : at + 8]
        nan = (fields == _NAN_BYTES).all(axis=1)
        prefix = _PREFIX_INDEX[fields[:, 7]]
        digits = _HEX_VALUE[fields[:, :7]]
        if ((prefix < 0) | (digits < 0).any(axis=1))[~nan].any():
            return None
        prefix[nan] = 0
        mantissa = (np.where(nan[:, None], 0, digits) @ _NIBBLE_WEIGHTS) - OFFSET
        values = (mantissa.astype(float) / _DEC_DIV[prefix]) * _DEC_MUL[prefix]
        values[nan] = math.nan
        column = PackageColumns(code, values)
        for kind, start, size in metas:
            ints = _hex_ints(mat[:, start : start + size])
            if ints is None:
                return None
            if kind == 1:
                column.status = ints
            else:
                column.range = ints
        out.append(column)
    return out


_LOOP_START_RE = re.compile(r"(?:[MC][0-9A-Fa-f]{4}|L)\Z")


def is_loop_start(line: str) -> bool:
    """Whether ``line`` opens a loop: ``M<4 hex>`` measurement loop, ``C<4 hex>`` scan, ``L``."""
    return bool(_LOOP_START_RE.match(line.rstrip("\r\n")))


def is_loop_end(line: str) -> bool:
    """Whether ``line`` closes a loop: ``*`` measurement loop, ``-`` scan, ``+`` loop."""
    return line.rstrip("\r\n") in ("*", "-", "+")


# --- damaged lines -----------------------------------------------------------------------
# A serial or TCP line that corrupts data (and the suite's fault injector,
# insitu.simulators.faults) replaces a few characters of a line in place: the line keeps its
# length and its terminator. So a line that is not well-formed is told apart by its length and
# its layout, never by the characters that were replaced.

#: Characters of MethodSCRIPT output lines other than ``T`` text (``send_string``): package
#: letters, hex digits and SI prefixes, ``;`` ``,`` separators, loop markers and error lines.
_OUTPUT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ;,:!*+-")
#: At most this many characters of a damaged line are taken to be replaced: a line that
#: differs from a layout in more places is not attributed to it.
DAMAGE_LIMIT = 3
#: The shortest data package: ``P``, a two-letter type and an eight-character value.
MIN_PACKAGE_LENGTH = 11

DamagedKind = Literal["marker", "loop_start", "error", "package", "unknown"]

_HEX_SET = frozenset("0123456789abcdefABCDEF")
_DIGIT_SET = frozenset("0123456789")


def is_damaged(line: str) -> bool:
    """Whether ``line`` holds a character that no MethodSCRIPT output line holds there.

    That is a character outside the output alphabet (noise, a byte that was not ASCII and was
    decoded as U+FFFD), or a ``*`` anywhere but as the whole line (the measurement-loop end).
    A well-formed line of another kind (a package, ``M000A``, ``!0007: Line 3``) is not
    damaged; neither is an unexpected line made of valid characters (what answers may not be
    a MethodSCRIPT instrument: that is a protocol error, not damage).
    """
    if line == "*":
        return False
    return any(c not in _OUTPUT_CHARS for c in line) or "*" in line


def _distance(line: str, layout: Sequence[str | frozenset[str]]) -> int:
    """Characters of ``line`` that ``layout`` (one allowed set per position) does not allow."""
    return sum(1 for c, allowed in zip(line, layout, strict=True) if c not in allowed)


def _error_layouts(length: int) -> Iterable[list[str | frozenset[str]]]:
    """Layouts of a runtime error line of ``length`` characters: ``!XXXX: Line L[, Col C]``."""
    head: list[str | frozenset[str]] = ["!", *[_HEX_SET] * 4, *": Line "]
    rest = length - len(head)
    if rest >= 1:
        yield head + [_DIGIT_SET] * rest
    for line_digits in range(1, rest - len(", Col ")):
        col_digits = rest - len(", Col ") - line_digits
        yield head + [_DIGIT_SET] * line_digits + [*", Col "] + [_DIGIT_SET] * col_digits


def damaged_error(line: str) -> ErrorReply | None:
    """The error a damaged runtime error line reports, as far as it can still be read.

    ``line`` is an error line if it differs from the layout ``!XXXX: Line L[, Col C]`` in at
    most :data:`DAMAGE_LIMIT` characters (a data package differs from it in at least six: it
    has no ``: Line``). The code is read when its four hex digits survived, else it is ``-1``;
    the script line (and column) when all of ``: Line L[, Col C]`` survived.

    Returns ``None`` when ``line`` does not have that layout.
    """
    if not is_damaged(line):
        return None
    for layout in _error_layouts(len(line)):
        if _distance(line, layout) <= DAMAGE_LIMIT:
            digits = line[1:5]
            code = int(digits, 16) if all(c in _HEX_SET for c in digits) else -1
            # The script line only when all of ": Line L[, Col C]" survived: a damaged digit
            # would name another line.
            m = re.fullmatch(r".{5}: Line (\d+)(?:, Col (\d+))?", line)
            return ErrorReply(
                code=code,
                line=int(m[1]) if m else None,
                column=int(m[2]) if m and m[2] else None,
            )
    return None


def classify_damaged(line: str) -> DamagedKind:
    """What a damaged script output line (:func:`is_damaged`) most likely was, by its layout.

    * one character: a loop end (``*``, ``+``, ``-``), ``L`` or ``Z`` -- ``"marker"``;
    * five characters: a loop start ``M``/``C`` + four hex digits -- ``"loop_start"`` (runtime
      errors always carry ``: Line L``, so a five-character line is not one);
    * the layout of a runtime error line within :data:`DAMAGE_LIMIT` characters -- ``"error"``
      (see :func:`damaged_error`);
    * :data:`MIN_PACKAGE_LENGTH` characters or more: no framing line is that long, so a data
      package -- ``"package"``. (A ``T`` text line from ``send_string`` can be as long; the
      driver's scripts send none.)
    * anything else -- ``"unknown"``: a length no output line has.
    """
    n = len(line)
    if n == 1:
        return "marker"
    if n == 5:
        return "loop_start"
    if damaged_error(line) is not None:
        return "error"
    if n >= MIN_PACKAGE_LENGTH:
        return "package"
    return "unknown"


def is_damaged_form_of(line: str, text: str) -> bool:
    """Whether ``line`` is ``text`` with at most :data:`DAMAGE_LIMIT` characters replaced.

    For replies of one fixed form (``e``, ``Z``, ``Z!0006``): the same length, damaged, and
    every character that is not noise is ``text``'s.
    """
    return (
        len(line) == len(text)
        and is_damaged(line)
        and _distance(line, list(text)) <= min(DAMAGE_LIMIT, len(text))
    )


# --- errors ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ErrorReply:
    """An ``!XXXX`` error line: code, and where in the script it happened (1-based)."""

    code: int
    line: int | None = None
    column: int | None = None
    prefix: str = ""

    @property
    def text(self) -> str:
        """The manual's text for :attr:`code`."""
        return error_text(self.code)


_ERROR_RE = re.compile(
    r"(?P<prefix>[^!]?)!(?P<code>[0-9A-Fa-f]{4})"
    r"(?::\s*Line\s+(?P<line>\d+)(?:,\s*Col\s+(?P<col>\d+))?)?\s*\Z"
)


def parse_error(line: str) -> ErrorReply | None:
    """Parse an error line (``!0003``, ``e!4001: Line 1, Col 16``, ``!0014: Line 9``).

    Returns ``None`` when ``line`` is not an error line.
    """
    m = _ERROR_RE.match(line.rstrip("\r\n"))
    if not m:
        return None
    return ErrorReply(
        code=int(m["code"], 16),
        line=int(m["line"]) if m["line"] else None,
        column=int(m["col"]) if m["col"] else None,
        prefix=m["prefix"],
    )


def format_error(
    code: int, *, line: int | None = None, column: int | None = None, prefix: str = ""
) -> str:
    """Format an error line: ``<prefix>!XXXX[: Line L[, Col C]]`` (without ``\\n``)."""
    text = f"{prefix}!{code:04X}"
    if line is not None:
        text += f": Line {line}"
        if column is not None:
            text += f", Col {column}"
    return text


# --- firmware version --------------------------------------------------------------------
@dataclass(frozen=True)
class FirmwareInfo:
    """What the ``t`` command reports.

    Attributes
    ----------
    device_code : str
        Six-character device type, e.g. ``es4_hr``, ``es4_lr``, ``espico``.
    version : str
        Firmware version, e.g. ``1.4.00``.
    build : str
        Build date and time as sent.
    release : bool
        ``True`` for a release build (``R``), ``False`` for a beta (``B``).
    """

    device_code: str
    version: str
    build: str
    release: bool = True


#: Instrument model per ``t`` device code.
DEVICE_MODELS = {
    "espico": "EmStat Pico",
    "senswb": "Sensit Wearable",
    "es4_hr": "EmStat4 HR",
    "es4_lr": "EmStat4 LR",
    "mes4hr": "MultiEmStat4 HR",
    "mes4lr": "MultiEmStat4 LR",
    "nexus1": "Nexus",
}


def _version_text(digits: str) -> str:
    # "14" -> "1.4", "1400" -> "1.4.00": major and minor one digit each, then the patch.
    if len(digits) <= 2:
        return ".".join(digits)
    return f"{digits[0]}.{digits[1]}.{digits[2:]}"


def parse_firmware(first: str, second: str) -> FirmwareInfo:
    """Parse the two lines of the ``t`` reply (``tes4_hr1400#Jan 15 2025 10:00:00``, ``R*``)."""
    first, second = first.rstrip("\r\n"), second.rstrip("\r\n")
    m = re.match(r"t(?P<dev>[a-z0-9_]{6})(?P<ver>\d+)#(?P<build>.*)\Z", first)
    if not m or not second.endswith("*") or second[:1] not in ("R", "B"):
        raise PackageError(f"not a firmware version reply: {first!r} / {second!r}")
    return FirmwareInfo(
        device_code=m["dev"],
        version=_version_text(m["ver"]),
        build=" ".join(m["build"].split()),
        release=second.startswith("R"),
    )


def format_firmware(info: FirmwareInfo) -> tuple[str, str]:
    """The two lines of the ``t`` reply for ``info`` (without ``\\n``)."""
    digits = info.version.replace(".", "")
    return f"t{info.device_code}{digits}#{info.build}", ("R*" if info.release else "B*")


# --- script literals ---------------------------------------------------------------------
_LITERAL_PREFIXES = ("G", "M", "k", "", "m", "u", "n", "p", "f", "a")
_LITERAL_EXP = {"G": 9, "M": 6, "k": 3, "": 0, "m": -3, "u": -6, "n": -9, "p": -12}
_LITERAL_EXP.update({"f": -15, "a": -18})
_LITERAL_RE = re.compile(r"(?P<num>[+-]?\d+)(?P<suffix>[afpnumkMGTPEi]?)\Z")
_RADIX_RE = re.compile(r"(?P<sign>[+-]?)0(?P<base>[xb])(?P<digits>[0-9A-Fa-f]+)i?\Z")


def format_literal(value: float, *, integer: bool = False) -> str:
    """Format ``value`` as a script literal: an integer with an SI prefix (``-500m``, ``10k``).

    MethodSCRIPT literals have no decimal point, so the coarsest prefix that represents
    ``value`` to 1 ppm is chosen. ``integer=True`` gives the integer form ``51i``.
    """
    if integer:
        if int(value) != value:
            raise ValueError(f"{value!r} is not an integer")
        return f"{int(value)}i"
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{value!r} cannot be written in a MethodSCRIPT")
    if value == 0:
        return "0"
    for prefix in _LITERAL_PREFIXES:
        exp = _LITERAL_EXP[prefix]
        mantissa = value / 10.0**exp if exp >= 0 else value * 10.0 ** (-exp)
        rounded = round(mantissa)
        if rounded != 0 and abs(mantissa - rounded) <= 1e-6 * abs(mantissa):
            return f"{rounded}{prefix}"
    return f"{round(value * 1e18)}a"


def parse_literal(token: str) -> tuple[float, bool]:
    """Value of a script literal and whether it is an integer.

    Accepts ``100m``, ``-500n``, ``10k``, ``1M``, ``2`` (floats), ``51i``, ``0x1F``,
    ``0b101`` (integers).

    Raises
    ------
    ValueError
        If ``token`` is not a literal (e.g. ``1.5`` or ``1e3``).
    """
    m = _LITERAL_RE.match(token)
    if m:
        num, suffix = int(m["num"]), m["suffix"]
        if suffix == "i":
            return float(num), True
        exp = _LITERAL_EXP.get(suffix, {"T": 12, "P": 15, "E": 18}.get(suffix, 0))
        value = num / 10.0 ** (-exp) if exp < 0 else num * 10.0**exp
        return value, False
    m = _RADIX_RE.match(token)
    if m and (m["base"] == "x" or set(m["digits"]) <= {"0", "1"}):
        num = int(m["digits"], 16 if m["base"] == "x" else 2)
        return float(-num if m["sign"] == "-" else num), True
    raise ValueError(f"{token!r} is not a MethodSCRIPT literal")


def split_script_line(text: str) -> Sequence[str]:
    """Tokens of one script line, comments (``#`` outside quotes) and indentation removed."""
    out, token, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            token += ch
        elif ch == "#" and not quoted:
            break
        elif ch in " \t\r\n" and not quoted:
            if token:
                out.append(token)
                token = ""
        else:
            token += ch
    if token:
        out.append(token)
    return out
