"""Generated instrument replies fed to the drivers' reply parsers (hypothesis).

Every parser returns a value or raises its documented error, an
:class:`~insitu.instruments.errors.InstrumentError` subclass (the MethodSCRIPT codec's
``PackageError`` is an ``InstrumentProtocolError``); anything else fails the test. The drivers
are built offline on a canned session (:class:`CannedSession`), so the real parsing code runs
without a connection.

Profiles: ``insitu-tests`` (the default here: a few hundred examples per parser) and
``insitu-bench`` (``benchmarks/bench_fuzz_parsers.py``, over 100 000 cases in all). Skipped
when hypothesis is not installed.
"""

from __future__ import annotations

import math
import os
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from insitu.instruments.base import Instrument  # noqa: E402
from insitu.instruments.errors import InstrumentError  # noqa: E402
from insitu.instruments.keithley2450.driver import Keithley2450  # noqa: E402
from insitu.instruments.lakeshore336 import LakeShore336  # noqa: E402
from insitu.instruments.methodscript import codec  # noqa: E402
from insitu.instruments.methodscript.driver import MethodScriptPotentiostat  # noqa: E402

_COMMON = {"deadline": None, "suppress_health_check": list(HealthCheck), "database": None}
settings.register_profile("insitu-tests", max_examples=300, **_COMMON)
_BENCH_EXAMPLES = int(os.environ.get("INSITU_FUZZ_EXAMPLES", "12500"))
settings.register_profile("insitu-bench", max_examples=_BENCH_EXAMPLES, **_COMMON)
# Read when the properties are decorated: the benchmark sets it before importing this file.
settings.load_profile(os.environ.get("INSITU_FUZZ_PROFILE", "insitu-tests"))

#: Cases run per parser (the benchmark reads it).
CASES: Counter[str] = Counter()

_T = TypeVar("_T")
_Instr = TypeVar("_Instr", bound=Instrument)


class CannedSession:
    """Stands in for a VisaSession: every query is answered with ``replies`` in turn."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.last_command: str | None = None
        self.failure: InstrumentError | None = None
        self.lock = threading.RLock()

    def query(self, command: str, *, retries: int = 0) -> str:
        self.last_command = command
        return self.replies.pop(0) if self.replies else "0"

    def write(self, command: str) -> None:
        self.last_command = command


def offline(cls: type[_Instr], replies: list[str], **attrs: Any) -> _Instr:
    """A driver of ``cls`` on a :class:`CannedSession`, without opening anything."""
    driver = cls.__new__(cls)
    driver.name = f"{cls.__name__} (fuzz)"
    driver.resource_name = "fuzz"
    driver.timeout_s = 1.0
    driver._session = CannedSession(replies)  # type: ignore[assignment]
    driver._io_lock = driver._session.lock
    for key, value in attrs.items():
        setattr(driver, key, value)
    return driver


def returns_or_raises_documented(name: str, call: Callable[[], _T]) -> _T | None:
    """Run one case: a value, or ``None`` for an InstrumentError; anything else propagates."""
    CASES[name] += 1
    try:
        return call()
    except InstrumentError:
        return None


# --- strategies -----------------------------------------------------------------------------
_NUMBERISH = st.sampled_from(
    ["0", "1", "-1", "+1.000E+00", "1e400", "-inf", "nan", "1_0", " 3 ", "0x10", "", "E", "."]
)
_FIELD = st.one_of(st.text(max_size=12), _NUMBERISH, st.floats().map(repr))
_TEXT = st.text(max_size=80)
# Replies built from the separators the parsers split on, and arbitrary text.
_SEPARATED = st.one_of(
    _TEXT,
    st.lists(_FIELD, max_size=9).map(",".join),
    st.lists(_FIELD, max_size=6).map(";".join),
    st.lists(st.lists(_FIELD, max_size=4).map(",".join), max_size=4).map(";".join),
)
_HEX = "0123456789ABCDEF"
_VALUE_FIELD = st.one_of(
    st.text(alphabet=_HEX + "xg+-_ ", min_size=7, max_size=7).flatmap(
        lambda d: st.sampled_from([*codec.SI_PREFIXES, "q", " ", "?"]).map(lambda p: d + p)
    ),
    st.sampled_from([codec._NAN_FIELD, "nan", "       "]),
    st.text(max_size=10),
)
_VAR = st.tuples(
    st.sampled_from(["ab", "ba", "eb", "dc", "cc", "cd", "AB", "a", "zz"]),
    _VALUE_FIELD,
    st.lists(st.text(alphabet=_HEX + "g,", min_size=0, max_size=5), max_size=3),
).map(lambda v: v[0] + v[1] + "".join("," + m for m in v[2]))
_PACKAGE = st.one_of(
    st.lists(_VAR, min_size=0, max_size=4).map(lambda vs: "P" + ";".join(vs)),
    _TEXT.map(lambda t: "P" + t),
    _TEXT,
)


def _real_package(draw_values: list[float]) -> str:
    return codec.format_package([("eb", v) for v in draw_values])


# --- base: typed replies ----------------------------------------------------------------------
@given(reply=_SEPARATED, kind=st.sampled_from([bool, int, float]))
def test_parse_number(reply: str, kind: type) -> None:
    inst = offline(Instrument, [])
    value = returns_or_raises_documented(
        "base.parse_number", lambda: inst.parse_number(reply, kind, "X?")
    )
    assert value is None or type(value) is kind


@given(reply=_SEPARATED)
def test_parse_idn(reply: str) -> None:
    inst = offline(Instrument, [reply])
    fields = returns_or_raises_documented("base.query_idn", inst.query_idn)
    assert fields is None or (len(fields) == 4 and all(isinstance(f, str) for f in fields))


# --- Keithley 2450 ----------------------------------------------------------------------------
@given(reply=_SEPARATED)
def test_keithley_status_poll(reply: str) -> None:
    k = offline(Keithley2450, [])
    out = returns_or_raises_documented("keithley.parse_status", lambda: k.parse_status(reply))
    assert out is None or (isinstance(out[0], str) and 0 <= out[1])


@given(
    reply=st.one_of(
        _SEPARATED,
        st.lists(st.one_of(st.floats(), st.integers(-(2**70), 2**70)), max_size=12).map(
            lambda xs: ",".join(repr(x) for x in xs)
        ),
    ),
    first=st.integers(1, 4),
    count=st.integers(1, 3),
)
def test_keithley_buffer_readings(reply: str, first: int, count: int) -> None:
    k = offline(Keithley2450, [])
    frame = returns_or_raises_documented(
        "keithley.parse_readings", lambda: k.parse_readings(reply, first, first + count - 1)
    )
    assert frame is None or len(frame) == count


@given(replies=st.lists(_SEPARATED, max_size=4))
def test_keithley_error_queue(replies: list[str]) -> None:
    k = offline(Keithley2450, [*replies, '0,"No error"'])
    returns_or_raises_documented("keithley.check_errors", k.check_errors)


@given(reply=_SEPARATED)
def test_keithley_identify(reply: str) -> None:
    k = offline(Keithley2450, [reply])
    returns_or_raises_documented("keithley.identify", k.identify)


# --- MethodSCRIPT codec -----------------------------------------------------------------------
@given(text=_VALUE_FIELD)
def test_decode_value(text: str) -> None:
    value = returns_or_raises_documented("codec.decode_value", lambda: codec.decode_value(text))
    assert value is None or isinstance(value, float)


@given(line=_PACKAGE)
def test_parse_package(line: str) -> None:
    returns_or_raises_documented("codec.parse_package", lambda: codec.parse_package(line))


@given(lines=st.lists(_PACKAGE, min_size=1, max_size=5), same_width=st.booleans())
def test_parse_packages_agrees_with_parse_package(lines: list[str], same_width: bool) -> None:
    if same_width:  # the fast path only takes lines of one width
        lines = [lines[0]] * len(lines)
    raw = [line.encode("utf-8", "surrogatepass") for line in lines]
    columns = returns_or_raises_documented(
        "codec.parse_packages", lambda: codec.parse_packages(raw)
    )
    if columns is None:
        return
    # What the fast path accepts, the general parser reads line by line to the same values.
    for k, line in enumerate(lines):
        variables = codec.parse_package(line)
        assert [v.type for v in variables] == [c.type for c in columns]
        for var, col in zip(variables, columns, strict=True):
            assert var.value == col.values[k] or (
                math.isnan(var.value) and math.isnan(col.values[k])
            )


@given(
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=4),
    flip=st.integers(0, 60),
    char=st.characters(codec="ascii"),
)
def test_corrupted_real_package(values: list[float], flip: int, char: str) -> None:
    line = _real_package(values)
    at = flip % len(line)
    line = line[:at] + char + line[at + 1 :]
    returns_or_raises_documented(
        "codec.parse_package(corrupted)", lambda: codec.parse_package(line)
    )


@given(line=_TEXT)
def test_parse_error_line(line: str) -> None:
    err = returns_or_raises_documented("codec.parse_error", lambda: codec.parse_error(line))
    assert err is None or 0 <= err.code <= 0xFFFF


@given(first=st.one_of(_TEXT, _TEXT.map(lambda t: "tes4_hr" + t)), second=_TEXT)
def test_parse_firmware(first: str, second: str) -> None:
    returns_or_raises_documented(
        "codec.parse_firmware", lambda: codec.parse_firmware(first, second)
    )


@given(line=_PACKAGE, is_eis=st.booleans())
def test_methodscript_package_row(line: str, is_eis: bool) -> None:
    pstat = MethodScriptPotentiostat.__new__(MethodScriptPotentiostat)
    pstat.name = "fuzz"
    pstat._last_command = "e"
    returns_or_raises_documented(
        "methodscript._package_row", lambda: pstat._package_row(line, is_eis, 0)
    )


# --- Lake Shore 336 ---------------------------------------------------------------------------
_LAKESHORE_READS: dict[str, Callable[[LakeShore336], object]] = {
    "temperature_K": lambda ls: ls.temperature_K("A"),
    "temperature_C": lambda ls: ls.temperature_C("B"),
    "setpoint_K": lambda ls: ls.setpoint_K(1),
    "heater_range": lambda ls: ls.heater_range(2),
    "output_mode": lambda ls: ls.output_mode(1),
    "ramp": lambda ls: ls.ramp(1),
    "ramping": lambda ls: ls.ramping(2),
    "identify": lambda ls: ls.identify(),
    "check_errors": lambda ls: ls.check_errors(),
}


@given(reply=_SEPARATED, read=st.sampled_from(sorted(_LAKESHORE_READS)))
def test_lakeshore_reads(reply: str, read: str) -> None:
    ls = offline(LakeShore336, [reply], max_setpoint_K=393.15)
    returns_or_raises_documented(f"lakeshore.{read}", lambda: _LAKESHORE_READS[read](ls))


#: Every property above, for the benchmark.
PROPERTIES = [value for name, value in sorted(globals().items()) if name.startswith("test_")]
