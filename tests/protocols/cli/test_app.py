"""The command line, in-process and as the installed console script."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from insitu.analysis.electrochem.readers import read_measurement, write_mpt
from insitu.protocols.cli import main
from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.materials import MATERIALS


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # One catalog for the module: creating a tiled catalog takes seconds.
    return str(tmp_path_factory.mktemp("catalog"))


def run_json(capsys, argv):
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_materials_lists_every_preset(capsys):
    rows = run_json(capsys, ["sim", "materials", "--json"])
    assert [r["name"] for r in rows] == list(MATERIALS)


@pytest.fixture(scope="module")
def ccd_run(data_dir):
    """One simulated CCD run in the module's catalog: (JSON result)."""
    argv = ["ccd", "--instrument", "sim:A-LPS", "--json", "--quiet", "--data", data_dir]
    argv += ["--sample", "pellet-7", "--interval", "20"]
    capture = subprocess.run(
        [sys.executable, "-m", "insitu.protocols.cli.app", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert capture.returncode == 0, capture.stderr
    lines = capture.stdout.strip().splitlines()
    assert len(lines) == 1, capture.stdout  # exactly one JSON object on stdout
    return json.loads(lines[0])


def test_ccd_prints_the_paper_ccd_and_the_run_uid(ccd_run):
    assert ccd_run["ccd_mA_cm2"] == pytest.approx(MATERIALS["A-LPS"].ccd_mA_cm2)
    assert ccd_run["stopped_because"] == "short"
    assert set(ccd_run["charge_to_failure_C_cm2"]) == {"per_electrode_plated", "total_abs"}
    assert ccd_run["charge_to_failure_C_cm2"]["per_electrode_plated"] == pytest.approx(
        MATERIALS["A-LPS"].charge_to_failure_C_cm2, rel=0.10
    )
    assert ccd_run["short_time_s"] > 0 and len(ccd_run["run_uid"]) == 36


def test_runs_lists_the_run_with_its_sample(ccd_run, data_dir, capsys):
    assert main(["runs", "--json", "--data", data_dir]) == 0
    rows = json.loads(capsys.readouterr().out)
    row = next(r for r in rows if r["uid"] == ccd_run["run_uid"])
    assert row["plan_name"] == "ccd_test" and row["sample"] == "pellet-7"


@pytest.mark.parametrize("fmt", ["csv", "parquet", "mpt"])
def test_export_writes_every_point(ccd_run, data_dir, tmp_path, capsys, fmt):
    out = tmp_path / f"run.{fmt}"
    argv = ["export", ccd_run["run_uid"][:8], "--format", fmt, "--out", str(out)]
    result = run_json(capsys, [*argv, "--json", "--data", data_dir])
    assert result["rows"] == ccd_run["points"]
    back = read_measurement(out)
    assert len(back) == ccd_run["points"]
    np.testing.assert_allclose(back["voltage_V"].iloc[:5], back["voltage_V"].iloc[:5])
    assert {"time_s", "voltage_V", "current_A"} <= set(back.columns)


def test_report_is_a_self_contained_page(ccd_run, data_dir, tmp_path, capsys):
    out = tmp_path / "report.html"
    run_json(capsys, ["report", "-1", "--out", str(out), "--json", "--data", data_dir])
    html = out.read_text()
    assert "pellet-7" in html and "data:image/png;base64," in html
    assert "0.75" in html  # the CCD


def test_analyze_ccd_of_the_stored_run_agrees(ccd_run, data_dir, capsys):
    result = run_json(capsys, ["analyze", "ccd", ccd_run["run_uid"], "--json", "--data", data_dir])
    assert result["ccd_mA_cm2"] == ccd_run["ccd_mA_cm2"]


def test_analyze_eis_of_a_measured_file(tmp_path, capsys):
    cell = VirtualCell("LiI-AT", CellGeometry.conductivity(), seed=3)
    f = np.logspace(6, -1, 71)
    z = cell.impedance(f)
    path = tmp_path / "pellet.mpt"
    spectrum = pd.DataFrame({"frequency_Hz": f, "z_real_ohm": z.real, "z_imag_ohm": z.imag})
    write_mpt(spectrum, path)
    result = run_json(
        capsys,
        ["analyze", "eis", str(path), "--thickness-cm", "0.06", "--area-cm2", "1", "--json"],
    )
    assert result["sigma_S_cm"] == pytest.approx(cell.conductivity_S_m() / 100, rel=0.03)


@pytest.mark.slow
@pytest.mark.parametrize("material", list(MATERIALS))
def test_conductivity_recovers_sigma_and_activation_energy(material, data_dir, capsys):
    preset = MATERIALS[material]
    argv = ["conductivity", "--instrument", f"sim:{material}", "--json", "--data", data_dir]
    result = run_json(capsys, [*argv, "--points-per-decade", "6"])
    assert result["sigma_S_cm"]["25"] == pytest.approx(preset.sigma_rt_S_cm, rel=0.03)
    assert result["ea_eV"]["sigma_T"] == pytest.approx(preset.activation_energy_eV, abs=0.005)
    assert set(result["ea_eV"]) == {"sigma_T", "sigma"}
    assert list(result["sigma_S_cm"]) == ["25", "40", "60", "80"]
    assert result["temperature_K"]["60"] == pytest.approx(333.15, abs=0.6)


def test_instrument_info_through_a_served_emulator(capsys):
    from insitu.protocols.bench.emulated import start_emulator

    with start_emulator("LiI-AN", emulator="keithley2450") as bench:
        out = run_json(capsys, ["instrument", "info", bench.resource, "--json"])
    assert out["model"].endswith("2450")
    assert "GalvanostaticHold" in out["capabilities"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ccd", "--instrument", "sim:Unobtainium", "--json"], "unknown material"),
        (["ccd", "--instrument", "nonsense", "--json"], "cannot tell which instrument"),
        (["instrument", "info", "TCPIP::127.0.0.1::1::SOCKET", "--timeout", "1"], "2450"),
        (["ccd", "--instrument", "sim:A-LPS", "--area-cm2", "-1"], "--area-cm2 must be positive"),
        (["analyze", "eis", "missing.mpt"], "no such file"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(capsys, tmp_path, argv, message):
    assert main([*argv, *(["--data", str(tmp_path)] if argv[0] == "ccd" else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("insitu: error:") and message in err, err
    assert "\n" not in err and "Traceback" not in err


def test_unknown_run_says_how_to_list_runs(data_dir, capsys):
    assert main(["report", "no-such-run", "--data", data_dir]) == 2
    err = capsys.readouterr().err
    assert "no-such-run" in err and "runs" in err


@pytest.mark.parametrize(
    "protocol, transport, prefix, model",
    [
        ("keithley2450", "tcp", "TCPIP::127.0.0.1::", "2450"),
        ("methodscript", "tcp", "socket://127.0.0.1:", "EmStat4"),
        ("methodscript", "pty", "/dev/", "EmStat4"),
    ],
)
def test_sim_serve_prints_a_resource_a_client_can_use(protocol, transport, prefix, model):
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "insitu.protocols.cli.app", "sim", "serve",
            "--protocol", protocol, "--transport", transport, "--material", "A-LPS", "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        resource = json.loads(proc.stdout.readline())["resource"]
        assert resource.startswith(prefix)
        from insitu.instruments.resources import open_potentiostat

        with open_potentiostat(resource) as driver:
            assert model in driver.identify().model
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
