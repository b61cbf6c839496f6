"""``insitu analyze ccd|eis`` on files that lie (issue 12): one-line user errors, flagged rows,
one result per spectrum."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from insitu.analysis.electrochem.readers import write_mpt
from insitu.protocols.cli import main


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_empty_csv_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "empty.csv").write_text("")
    assert main(["analyze", "ccd", str(tmp_path / "empty.csv"), "--area-cm2", "1"]) == 2
    assert error_line(capsys).startswith("insitu: error: ")


def test_header_only_csv_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "header.csv").write_text("time_s,voltage_V,current_A\n")
    assert main(["analyze", "ccd", str(tmp_path / "header.csv"), "--area-cm2", "1"]) == 2
    assert "no data rows" in error_line(capsys)


def test_huge_exponent_is_exit_2_not_a_segfault(tmp_path):
    path = tmp_path / "huge.csv"
    path.write_text("time_s,voltage_V,current_A\n0,0.1,1e-4\n10,1e2147483648,1e-4\n")
    code = "import sys; from insitu.protocols.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", code, "analyze", "ccd", str(path), "--area-cm2", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])  # was -11
    assert "line 3 ('1e2147483648')" in result.stderr


def test_dropped_voltages_are_reported(tmp_path, capsys):
    t = np.arange(0.0, 3600.0, 10.0)
    current = np.where((t // 600) % 2 == 0, 1e-4, -1e-4)
    voltage = current * 1000.0
    voltage = np.where(t >= 2500.0, voltage * 0.01, voltage)
    data = pd.DataFrame({"time_s": t, "voltage_V": voltage, "current_A": current})
    data = data.astype({"voltage_V": object})
    data.loc[[5, 40, 77], "voltage_V"] = "abc"
    data.to_csv(tmp_path / "trace.csv", index=False)
    assert main(["analyze", "ccd", str(tmp_path / "trace.csv"), "--area-cm2", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["ccd_mA_cm2"] == 0.1
    assert result["dropped_rows"] == 3
    assert "insitu: warning: voltage_V" in err and "data rows 6, 41, 78" in err


@pytest.fixture
def conductivity_export(tmp_path):
    """Four blocking-cell spectra end to end, as `insitu export` writes a conductivity run."""
    f = np.logspace(5, -1, 30)
    frames = []
    for r in (140.0, 112.0, 86.0, 68.0):
        z = r + 1.0 / (1j * 2 * np.pi * f * 1e-6)
        frames.append(pd.DataFrame({"frequency_Hz": f, "z_real_ohm": z.real, "z_imag_ohm": z.imag}))
    path = tmp_path / "cond.mpt"
    write_mpt(pd.concat(frames, ignore_index=True), path)
    return path


def test_eis_of_several_spectra_gives_one_result_each(conductivity_export, capsys):
    args = ["analyze", "eis", str(conductivity_export), "--method", "spike_intercept", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert [s["spectrum"] for s in result["spectra"]] == [0, 1, 2, 3]
    found = [s["electrolyte_resistance_ohm"] for s in result["spectra"]]
    # Before: one number, fitted to all 120 points as if one spectrum.
    assert found == pytest.approx([140.0, 112.0, 86.0, 68.0], rel=1e-3)
    assert {s["points"] for s in result["spectra"]} == {30}


def test_eis_spectrum_option_chooses_one(conductivity_export, capsys):
    args = ["analyze", "eis", str(conductivity_export), "--method", "spike_intercept"]
    assert main([*args, "--spectrum", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["electrolyte_resistance_ohm"] == pytest.approx(86.0, rel=1e-3)
    assert main([*args, "--spectrum", "4"]) == 2
    assert "holds 4 spectrum(s), numbered 0 to 3" in error_line(capsys)


def test_analyze_spectrum_refuses_to_choose_silently(conductivity_export):
    from insitu.protocols.errors import InvalidInputError
    from insitu.protocols.workflows.electrochem_analysis import analyze_spectrum

    with pytest.raises(InvalidInputError, match="holds 4 spectra; choose one with spectrum="):
        analyze_spectrum(str(conductivity_export), open_store=None)
    one = analyze_spectrum(
        str(conductivity_export), open_store=None, method="spike_intercept", spectrum=3
    )
    assert one.fit.electrolyte_resistance_ohm == pytest.approx(68.0, rel=1e-3)
