"""Tests of the MethodSCRIPT wire codec against published examples and by round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from insitu.instruments.methodscript import codec as ms

# Published vector: MethodSCRIPT manual v1.2 (PalmSens, 22-4-2020) §4.3, transcript at
# https://fdocuments.in/document/methodscript-v1-4222020-hhhhhhh-hexadecimal-value-p-prefix-character.html
# "For example, a value of 0.01 would be represented as "800000Am" and a value of -0.01 ..."
# (0x800000A - 0x8000000 = 10, prefix m). The negative counterpart follows from the same rule.
PUBLISHED = [("800000Am", 0.01), ("7FFFFF6m", -0.01)]


@pytest.mark.parametrize(("field", "value"), PUBLISHED)
def test_published_values_decode(field, value):
    assert ms.decode_value(field) == value


def test_encoding_of_minus_half_volt_region():
    # An often-quoted example, "da7F85E3Fu", is -500.161 mV by the manual's rule (not
    # -0.4999 V); -0.4999 V encodes as 7F85F44u. Both facts are pinned here.
    assert ms.decode_value("7F85E3Fu") == pytest.approx(-0.500161, abs=1e-12)
    assert ms.encode_value(-0.4999) == "7F85F44u"


def test_zero_nan_and_integer_fields():
    assert ms.encode_value(0.0) == "8000000 "
    assert ms.decode_value("8000000 ") == 0.0
    assert ms.decode_value("8000000") == 0.0  # trailing space stripped by a terminal
    assert math.isnan(ms.decode_value(ms.encode_value(math.nan)))
    assert ms.encode_value(51, integer=True) == "8000033i"
    assert ms.decode_value("8000033i") == 51.0


@pytest.mark.parametrize(("prefix", "factor"), [(p, f) for p, f in ms.SI_PREFIXES.items()])
def test_each_si_prefix_decodes(prefix, factor):
    value = ms.decode_value(f"{ms.OFFSET + 1234:07X}{prefix}")
    assert value == pytest.approx(1234 * factor, rel=1e-15)


@pytest.mark.parametrize("bad", ["800000Ax", "80000G0u", "80u", "800000000m"])
def test_malformed_fields_are_rejected(bad):
    with pytest.raises(ms.PackageError):
        ms.decode_value(bad)


def test_round_trip_many_values():
    rng = np.random.default_rng(0)
    exponents = rng.uniform(-15, 9, 2000)
    values = rng.choice([-1, 1], 2000) * 10.0**exponents
    for value in values:
        field = ms.encode_value(value)
        assert len(field) == 8
        # 28-bit mantissa, prefixes 1000x apart: the mantissa is at least 2**27 / 1000, so the
        # rounding error is below 0.5 / 134217 ≈ 3.7e-6 relative.
        assert ms.decode_value(field) == pytest.approx(value, rel=3.8e-6)


def test_round_trip_extremes():
    for value in (ms.OFFSET - 1, -ms.OFFSET):
        assert ms.decode_value(ms.encode_value(value, integer=True)) == value
    with pytest.raises(ValueError):
        ms.encode_value(ms.OFFSET, integer=True)
    with pytest.raises(ValueError):
        ms.encode_value(math.inf)


def test_package_round_trip_with_metadata():
    line = ms.format_package(
        [("eb", 1.5), ("ab", -0.25, ms.STATUS_OVERLOAD), ("ba", 1e-3, 0, 21), ("ja", 7)]
    )
    t, e, i, n = ms.parse_package(line + "\n")
    assert (t.type, e.type, i.type, n.type) == ("eb", "ab", "ba", "ja")
    assert t.value == pytest.approx(1.5) and t.status is None
    assert e.value == pytest.approx(-0.25) and e.status == ms.STATUS_OVERLOAD
    assert i.value == pytest.approx(1e-3) and i.status == 0 and i.range == 21
    assert n.value == 7 and line.split(";")[3].endswith("i")
    assert e.unit == "V" and i.unit == "A"


@pytest.mark.parametrize("bad", ["", "P", "Xda8000000 ", "Pda80", "PZZ8000000 ", "Pab8000000 ,1Z"])
def test_bad_packages(bad):
    with pytest.raises(ms.PackageError):
        ms.parse_package(bad)


def test_loop_markers():
    assert ms.is_loop_start("M000A") and ms.is_loop_start("L") and ms.is_loop_start("C0001")
    assert not ms.is_loop_start("M00") and not ms.is_loop_start("Pda8000000 ")
    assert all(ms.is_loop_end(c) for c in "*+-") and not ms.is_loop_end("**")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (2.5, "2500m"),
        (-0.5, "-500m"),
        (1e-4, "100u"),
        (1e4, "10k"),
        (1e6, "1M"),
        (-5e-7, "-500n"),
        (0.30000000000000004, "300m"),
        (6.0, "6"),
    ],
)
def test_script_literals_round_trip(value, text):
    assert ms.format_literal(value) == text
    parsed, integer = ms.parse_literal(text)
    assert parsed == pytest.approx(value) and not integer


def test_literal_forms():
    assert ms.parse_literal("51i") == (51.0, True)
    assert ms.parse_literal("0x1F") == (31.0, True)
    assert ms.parse_literal("0b101") == (5.0, True)
    assert ms.parse_literal("1m")[0] == pytest.approx(1e-3)  # m is milli, M mega
    assert ms.format_literal(11, integer=True) == "11i"
    for bad in ("1.5", "1e3", "m", "", "0b102"):
        with pytest.raises(ValueError):
            ms.parse_literal(bad)
    rng = np.random.default_rng(1)
    for value in rng.integers(-(10**6), 10**6, 200) * 10.0 ** rng.integers(-12, 6, 200):
        assert ms.parse_literal(ms.format_literal(value))[0] == pytest.approx(value, rel=1e-6)


def test_error_lines():
    err = ms.parse_error("e!4001: Line 1, Col 16")
    assert (err.code, err.line, err.column, err.prefix) == (0x4001, 1, 16, "e")
    assert err.text == "The script command is unknown"
    assert ms.parse_error("Z!0006") == ms.ErrorReply(0x0006, prefix="Z")
    assert ms.parse_error("!0014: Line 9") == ms.ErrorReply(0x0014, line=9)
    assert ms.parse_error("Pda8000000 ") is None and ms.parse_error("M000A") is None
    assert ms.format_error(0x4001, line=2, column=6, prefix="e") == "e!4001: Line 2, Col 6"
    assert "unknown error" in ms.error_text(0x1234)


def test_firmware_reply():
    # EmStat4 LR reply shown in the pypalmsens documentation (communication protocol page).
    info = ms.parse_firmware("tes4_lr1500#Mar 12 2026 14:28:01", "R*")
    assert (info.device_code, info.version, info.release) == ("es4_lr", "1.5.00", True)
    assert ms.format_firmware(info) == ("tes4_lr1500#Mar 12 2026 14:28:01", "R*")
    with pytest.raises(ms.PackageError):
        ms.parse_firmware("es4_hr1400", "R*")


# --- vectorised batch functions: identical to the per-value/per-line functions -----------
def _many_values() -> np.ndarray:
    rng = np.random.default_rng(7)
    exponents = rng.uniform(-19, 19, 3000)
    random = rng.choice([-1, 1], exponents.size) * 10.0**exponents
    edges = []
    for e in range(-18, 19, 3):  # each SI prefix, at and around its mantissa limits
        for m in (1, 999, 1000, 134217727, 134217727.4, 134217727.6, 134217728, 2**27 - 0.5):
            edges += [m * 10.0**e, -m * 10.0**e]
    special = [0.0, -0.0, math.nan, 0.01, -0.01, -0.4999, 0.1, 1e-3, 2.5e-18, 1.23e20]
    return np.concatenate([random, edges, special])


def _encodable(values: np.ndarray) -> np.ndarray:
    def ok(v: float) -> bool:
        try:
            ms.encode_value(v)
        except ValueError:
            return False
        return True

    return np.array([v for v in values if ok(v)])


def test_encode_values_matches_encode_value():
    values = _many_values()
    expected = []
    keep = []
    for v in values:
        try:
            expected.append(ms.encode_value(v))
            keep.append(v)
        except ValueError:
            with pytest.raises(ValueError):
                ms.encode_values([v])
    encoded = ms.encode_values(np.array(keep))
    assert [row.tobytes().decode("ascii") for row in encoded] == expected
    assert {f[7] for f in expected} >= set("afpnum kMGTPE")  # every prefix was exercised
    with pytest.raises(ValueError):
        ms.encode_values([1.0, math.inf])


def test_format_packages_matches_format_package():
    rng = np.random.default_rng(3)
    values = _encodable(_many_values())
    n = len(values)
    t = np.abs(rng.normal(size=n)) * 10.0 ** rng.integers(-3, 6, n)
    status = np.where(np.abs(np.nan_to_num(values)) > 6, ms.STATUS_OVERLOAD, 0)
    columns = [
        ("eb", t, None, None),
        ("ab", values, status, None),
        ("ba", -1.5e-3, 0, 21),
        ("ja", 7, None, None),
        ("dc", 0.0, ms.STATUS_UNDERLOAD, None),
    ]
    expected = "".join(
        ms.format_package(
            [
                ("eb", float(t[k])),
                ("ab", float(values[k]), int(status[k])),
                ("ba", -1.5e-3, 0, 21),
                ("ja", 7),
                ("dc", 0.0, ms.STATUS_UNDERLOAD),
            ]
        )
        + "\n"
        for k in range(n)
    )
    assert ms.format_packages(columns, n) == expected
    # a status too wide for one hex digit: rows differ in width, formatted one by one
    wide = np.array([0, 0x10, 3])
    text = ms.format_packages([("ab", np.array([1.0, -2.0, math.nan]), wide, 9)], 3)
    assert text.splitlines() == [
        ms.format_package([("ab", v, int(s), 9)])
        for v, s in zip([1.0, -2.0, math.nan], wide, strict=True)
    ]
    assert ms.format_packages(columns, 0) == ""
    with pytest.raises(ValueError):
        ms.format_packages([("AB", 1.0, None, None)], 2)


def _same_as_generic(lines: list[bytes]) -> None:
    columns = ms.parse_packages(lines)
    assert columns is not None
    per_line = [ms.parse_package(line.decode("ascii")) for line in lines]
    for j, column in enumerate(columns):
        variables = [row[j] for row in per_line]
        assert column.type == variables[0].type
        expected = np.array([v.value for v in variables])
        assert np.array_equal(column.values, expected, equal_nan=True)
        assert np.isnan(column.values).sum() == np.isnan(expected).sum()
        for attr in ("status", "range"):
            got = getattr(column, attr)
            want = [getattr(v, attr) for v in variables]
            assert (got is None and all(w is None for w in want)) or list(got) == want


def test_parse_packages_matches_parse_package():
    values = _encodable(_many_values())
    n = len(values)
    text = ms.format_packages(
        [
            ("eb", values[::-1], None, None),
            ("ab", values, np.where(np.isnan(values), ms.STATUS_OVERLOAD, 0), None),
            ("ba", 1e-3, 0, 21),
            ("ja", 5, None, None),
        ],
        n,
    )
    _same_as_generic([line.encode("ascii") for line in text.splitlines()])
    # every SI prefix, lower-case hex digits, zero, negative and NaN fields
    fields = [f"{ms.OFFSET + m:07X}{p}" for p in ms.SI_PREFIXES for m in (0, 1234, -98765)]
    fields += ["7f85e3fu", "     nan", "FFFFFFFa", "0000000E"]
    _same_as_generic([f"Pab{f},10;da{f},2FF".encode("ascii") for f in fields])


@pytest.mark.parametrize(
    "lines",
    [
        [b"Pab8000000 ", b"Pda8000000 "],  # another variable
        [b"Pab8000000 ,10", b"Pab8000000 ;10"],  # another separator
        [b"Pab8000000 ", b"Pab800000G "],  # not hexadecimal
        [b"Pab8000000 ", b"Pab8000000x"],  # unknown prefix
        [b"Pab8000000 ,10", b"Pab8000000 ,1Z"],  # bad metadata
        [b"Pab8000000 ,31"],  # metadata other than status and range
        [b"Pab8000000,10", b"Pab8000000,10"],  # 7-character field
        [b"Pab8000000 ", b"Pab80000000 "],  # another width
        [b"Pab8000000 ", b"Pab\xff000000 "],  # not ASCII
        [b"P"],
        [],
    ],
)
def test_parse_packages_declines_what_it_cannot_vouch_for(lines):
    assert ms.parse_packages(lines) is None


def test_values_below_the_finest_step_encode_as_zero():
    # Found by tests/instruments/test_fuzz_replies.py: 3.9e-100 was "too large" to encode.
    assert ms.decode_value(ms.encode_value(3.9e-100)) == 0.0
    assert ms.decode_value(ms.encode_value(-4e-19)) == 0.0
    assert ms.decode_value(ms.encode_value(6e-19)) == 1e-18


def test_value_field_with_a_sign_or_underscore_is_garbled():
    # int(..., 16) alone takes "+", "_" and "0x": the field is garbled all the same.
    for field in ("+000001 ", "0_00001 ", "0x00001 ", " 000001 "):
        with pytest.raises(ms.PackageError, match="non-hexadecimal"):
            ms.decode_value(field)
    assert isinstance(ms.PackageError("x"), ms.PackageError.__mro__[1])  # InstrumentProtocolError


def test_value_too_large_is_a_value_error_not_an_overflow():
    with pytest.raises(ValueError, match="too large"):
        ms.encode_value(1e300)
