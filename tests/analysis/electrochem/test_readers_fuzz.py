"""Property-based fuzzing of the CSV and .mpt readers: any file is answered with data or with
the documented error types (AnalysisInputError and its subclasses), nothing else.

Skipped when hypothesis (the ``test`` extra) is not installed. The huge-exponent case that
crashed pandas is in the generated alphabet; a crash would kill this process, which is why
:mod:`test_bad_files` also checks it in a subprocess.
"""

import pandas as pd
import pytest

from insitu.analysis.electrochem.readers import read_csv, read_mpt
from insitu.analysis.errors import AnalysisInputError

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
given, settings, HealthCheck = hypothesis.given, hypothesis.settings, hypothesis.HealthCheck

NAMES = [
    "time_s",
    "voltage_V",
    "current_A",
    "step",
    "frequency_Hz",
    "z_real_ohm",
    "z_imag_ohm",
    "time/s",
    "Ewe/V",
    "I/mA",
    "freq/Hz",
    "Re(Z)/Ohm",
    "-Im(Z)/Ohm",
    "x",
]
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(
        [
            "",
            "abc",
            "NaN",
            "inf",
            "-inf",
            "1e2147483648",
            "1e4294967296",
            "1,5",
            "1e400",
            "-1E+99999",
            "..",
            "1e",
            "e5",
            '"',
            "0x10",
        ]
    ),
    st.text(alphabet='0123456789.,eE+- \t;"abc', max_size=12),
)
SEPARATORS = [",", ";", "\t"]
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def check(read, path) -> None:
    try:
        data = read(path)
    except AnalysisInputError:
        return
    assert isinstance(data, pd.DataFrame)
    assert data.attrs["kind"] in ("eis", "timeseries")


@st.composite
def tables(draw):
    names = draw(st.lists(st.sampled_from(NAMES), min_size=0, max_size=5))
    width = max(len(names), 1)
    rows = draw(st.lists(st.lists(VALUES, min_size=0, max_size=width + 1), max_size=8))
    return names, rows


@FUZZ
@given(table=tables(), sep=st.sampled_from(SEPARATORS), crlf=st.booleans())
def test_csv_reader_answers_data_or_a_user_error(tmp_path, table, sep, crlf):
    names, rows = table
    newline = "\r\n" if crlf else "\n"
    text = newline.join(sep.join(r) for r in [names, *rows])
    path = tmp_path / "fuzz.csv"
    path.write_text(text, encoding="utf-8", newline="")
    check(read_csv, path)


@FUZZ
@given(table=tables(), n_header=st.integers(-2, 12), decimal=st.booleans())
def test_mpt_reader_answers_data_or_a_user_error(tmp_path, table, n_header, decimal):
    names, rows = table
    lines = ["EC-Lab ASCII FILE", f"Nb header lines : {n_header}", ""]
    lines += ["\t".join(names) + "\t"]
    lines += ["\t".join(v.replace(".", ",") if decimal else v for v in r) + "\t" for r in rows]
    path = tmp_path / "fuzz.mpt"
    path.write_text("\r\n".join(lines), encoding="utf-8", newline="")
    check(read_mpt, path)


@FUZZ
@given(data=st.binary(max_size=300))
def test_readers_answer_arbitrary_bytes(tmp_path, data):
    for name, read in (("fuzz.csv", read_csv), ("fuzz.mpt", read_mpt)):
        path = tmp_path / name
        path.write_bytes(data)
        check(read, path)
