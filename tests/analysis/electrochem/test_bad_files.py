"""Files that lie (issue 12): the readers and the analysis refuse or flag what they cannot trust.

Each test here failed before the fix: a segfault, a traceback (``_csv.Error``, IndexError) or
a silently different CCD.
"""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest

from insitu.analysis.electrochem.eis import electrolyte_resistance, split_spectra
from insitu.analysis.electrochem.readers import read_csv, read_measurement, read_mpt, write_mpt
from insitu.analysis.electrochem.shorts import UnusableRowsWarning, ccd_from_trace
from insitu.analysis.errors import AnalysisInputError


def cycling_trace(short_at_s: float = 2500.0) -> pd.DataFrame:
    """Half-cycles of 600 s at 10 s per point, ±0.1 then ±0.2 mA; the cell shorts at 0.2 mA."""
    t = np.arange(0.0, 3600.0, 10.0)
    half = (t // 600).astype(int)
    current = np.where(half % 2 == 0, 1.0, -1.0) * np.where(half < 2, 1e-4, 2e-4)
    voltage = current * 1000.0 * (1.0 + 0.3 * np.sqrt((t % 600) / 600))
    voltage = np.where(t >= short_at_s, voltage * 0.01, voltage)
    return pd.DataFrame({"time_s": t, "voltage_V": voltage, "current_A": current})


# --- a huge exponent: a segfault in pandas 2.x's float parser --------------------------------
def run_isolated(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter, so a segfault fails the test, not pytest."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("huge.csv", "time_s,voltage_V,current_A\n0,0.1,1e-4\n10,1e2147483648,1e-4\n"),
        ("wrap.csv", "time_s,voltage_V,current_A\n0,0.1,1e-4\n10,1e4294967296,1e-4\n"),
        ("huge.tsv", "time_s\tvoltage_V\tcurrent_A\n0\t0.1\t-1E+2147483648\n"),
        (
            "huge.mpt",
            "EC-Lab ASCII FILE\nNb header lines : 4\n\ntime/s\tEwe/V\tI/mA\t\n"
            "0\t0,1\t0,1\t\n10\t1,5e2147483648\t0,1\t\n",
        ),
    ],
)
def test_huge_exponent_is_refused_not_a_crash(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    result = run_isolated(
        f"""
        from insitu.analysis.electrochem.readers import read_measurement
        from insitu.analysis.errors import AnalysisInputError
        try:
            read_measurement({str(path)!r})
        except AnalysisInputError as exc:
            print("refused:", exc)
        else:
            print("read")
        """
    )
    # -11 (SIGSEGV) before the guard for 1e2147483648; 1e4294967296 was read as 1.0.
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("refused:")
    assert "exponent beyond any float's range" in result.stdout
    assert "line " in result.stdout


def test_huge_exponent_in_a_text_column_of_a_table_is_refused():
    # Parquet or a caller's table: strings reach pandas.to_numeric, which crashes the same way.
    result = run_isolated(
        """
        import pandas as pd
        from insitu.analysis.electrochem.readers import standardise_columns
        from insitu.analysis.errors import AnalysisInputError
        raw = pd.DataFrame({"time_s": ["0", "1"], "voltage_V": ["0.1", "1e2147483648"]})
        try:
            standardise_columns(raw)
        except AnalysisInputError as exc:
            print("refused:", exc)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "refused: column 'voltage_V'" in result.stdout
    assert "data row(s) 2" in result.stdout


def test_ordinary_exponents_still_read(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text("time_s,voltage_V,current_A\n0,1.5E-03,1e-4\n1e1,2.5e+00,-1E-04\n")
    data = read_csv(path)
    assert data["voltage_V"].tolist() == [1.5e-3, 2.5]
    assert data["time_s"].tolist() == [0.0, 10.0]


# --- empty and header-only files -------------------------------------------------------------
def test_empty_csv_is_a_user_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(AnalysisInputError, match="is empty"):
        read_measurement(path)


def test_header_only_csv_is_a_user_error(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("time_s,voltage_V,current_A\n")
    with pytest.raises(AnalysisInputError, match="no data rows"):
        read_measurement(path)


def test_header_only_mpt_is_a_user_error(tmp_path):
    path = tmp_path / "header.mpt"
    path.write_text("EC-Lab ASCII FILE\nNb header lines : 4\n\ntime/s\tEwe/V\tI/mA\t\n")
    with pytest.raises(AnalysisInputError, match="no data rows"):
        read_mpt(path)


def test_empty_table_is_refused_by_the_ccd():
    empty = pd.DataFrame({"time_s": [], "voltage_V": [], "current_A": []})
    with pytest.raises(AnalysisInputError, match="no data rows"):
        ccd_from_trace(empty, 1.0)


# --- a trace with unusable values ----------------------------------------------------------
def corrupt(data: pd.DataFrame, column: str, rows: list[int], value: str) -> pd.DataFrame:
    out = data.astype({column: object})
    out.loc[rows, column] = value
    return out


SCATTERED = [5, 40, 77, 130, 201, 290, 333]  # 2 % of 360 rows, none adjacent


@pytest.mark.parametrize("value", ["NaN", "abc", "inf"])
def test_few_unusable_voltages_are_dropped_and_reported(tmp_path, value):
    clean = ccd_from_trace(cycling_trace(), 1.0)
    path = tmp_path / "trace.csv"
    corrupt(cycling_trace(), "voltage_V", SCATTERED, value).to_csv(path, index=False)
    with pytest.warns(UnusableRowsWarning, match="7 of 360 rows"):
        result = ccd_from_trace(read_measurement(path), 1.0)
    # Before: inf made every later point "collapsed" (a false short at the first half-cycle);
    # NaN hid the short. Now the answer is the clean trace's.
    assert clean.ccd_mA_cm2 == 0.2
    assert result.ccd_mA_cm2 == clean.ccd_mA_cm2
    assert result.short.time_s == clean.short.time_s
    assert result.charge_to_failure_C_cm2 == clean.charge_to_failure_C_cm2
    assert result.dropped_rows == tuple(SCATTERED)


def test_short_index_refers_to_the_whole_table():
    data = cycling_trace()
    clean = ccd_from_trace(data, 1.0)
    data.loc[[3, 9], "voltage_V"] = np.nan
    with pytest.warns(UnusableRowsWarning):
        result = ccd_from_trace(data, 1.0)
    assert result.short.index == clean.short.index


def test_out_of_range_voltage_is_dropped_not_a_false_short():
    data = cycling_trace()
    data.loc[10, "voltage_V"] = 1e300
    with pytest.warns(UnusableRowsWarning, match="beyond"):
        result = ccd_from_trace(data, 1.0)
    assert result.ccd_mA_cm2 == 0.2


def test_many_unusable_voltages_are_refused_naming_rows():
    data = cycling_trace()
    data.loc[list(range(0, 360, 10)), "voltage_V"] = np.nan  # 10 %
    with pytest.raises(AnalysisInputError, match=r"voltage_V .* 36 of 360 rows .*data rows 1, 11"):
        ccd_from_trace(data, 1.0)


def test_a_long_gap_of_voltages_is_refused():
    data = cycling_trace()
    data.loc[250:253, "voltage_V"] = np.nan  # 4 in a row: a collapse could hide there
    with pytest.raises(AnalysisInputError, match="4 in a row"):
        ccd_from_trace(data, 1.0)


@pytest.mark.parametrize(("column", "value"), [("current_A", "abc"), ("time_s", "NaN")])
def test_unusable_time_or_current_is_refused(tmp_path, column, value):
    path = tmp_path / "trace.csv"
    corrupt(cycling_trace(), column, [12, 99], value).to_csv(path, index=False)
    data = read_measurement(path)
    with pytest.raises(AnalysisInputError, match=rf"{column} .* data row\(s\) 13, 100"):
        ccd_from_trace(data, 1.0)


def test_time_running_backwards_is_refused():
    data = cycling_trace()
    data.loc[50, "time_s"] = 3.0
    with pytest.raises(AnalysisInputError, match=r"runs backwards .* data row 51"):
        ccd_from_trace(data, 1.0)


def test_clean_trace_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = ccd_from_trace(cycling_trace(), 1.0)
    assert result.dropped_rows == ()


def test_non_numeric_rows_are_recorded_by_the_reader(tmp_path):
    path = tmp_path / "trace.csv"
    corrupt(cycling_trace(), "voltage_V", [4, 8], "abc").to_csv(path, index=False)
    data = read_measurement(path)
    assert data.attrs["non_numeric_rows"] == {"voltage_V": [4, 8]}


def test_non_numeric_value_in_a_decimal_comma_mpt(tmp_path):
    # Before, dtype=float made one "abc" a ValueError traceback for the whole file.
    path = tmp_path / "trace.mpt"
    path.write_text(
        "EC-Lab ASCII FILE\nNb header lines : 4\n\ntime/s\tEwe/V\tI/mA\t\n"
        "0\t0,1\t0,1\t\n10\tabc\t0,1\t\n20\t0,3\t0,1\t\n"
    )
    data = read_mpt(path)
    assert data["voltage_V"].tolist()[::2] == [0.1, 0.3]
    assert np.isnan(data["voltage_V"][1])
    assert data.attrs["non_numeric_rows"] == {"voltage_V": [1]}


# --- impedance ------------------------------------------------------------------------------
def blocking_spectrum(r_ohm: float, n: int = 30) -> pd.DataFrame:
    f = np.logspace(5, -1, n)
    z = r_ohm + 1.0 / (1j * 2 * np.pi * f * 1e-6)
    return pd.DataFrame({"frequency_Hz": f, "z_real_ohm": z.real, "z_imag_ohm": z.imag})


def test_nan_impedance_is_refused_naming_column_and_rows():
    data = blocking_spectrum(100.0)
    data.loc[[2, 7], "z_imag_ohm"] = np.nan
    with pytest.raises(AnalysisInputError, match=r"z_imag_ohm .* 2 of 30 .* data row\(s\) 3, 8"):
        electrolyte_resistance(data, method="hf_intercept")


def test_split_spectra_one_per_sweep(tmp_path):
    sweeps = pd.concat([blocking_spectrum(r) for r in (140.0, 110.0, 85.0)], ignore_index=True)
    path = tmp_path / "cond.mpt"
    write_mpt(sweeps, path)
    spectra = split_spectra(read_measurement(path))
    assert [len(s) for s in spectra] == [30, 30, 30]
    assert [s.attrs["first_row"] for s in spectra] == [0, 30, 60]
    found = [
        electrolyte_resistance(s, method="spike_intercept").electrolyte_resistance_ohm
        for s in spectra
    ]
    assert found == pytest.approx([140.0, 110.0, 85.0], rel=1e-3)


def test_split_spectra_by_cycle_and_ascending_sweeps():
    a, b = blocking_spectrum(50.0)[::-1], blocking_spectrum(60.0)[::-1]
    both = pd.concat([a, b], ignore_index=True)
    assert [len(s) for s in split_spectra(both)] == [30, 30]
    same = pd.concat([a.assign(cycle=1), a.assign(cycle=2)], ignore_index=True)
    assert [len(s) for s in split_spectra(same.iloc[:45])] == [30, 15]


def test_split_spectra_keeps_a_single_spectrum_whole():
    assert len(split_spectra(blocking_spectrum(10.0))) == 1
