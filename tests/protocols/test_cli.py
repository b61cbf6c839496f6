"""The command line, in-process and as the installed console script."""

import json
import subprocess
import sys

import pytest

from insitu.protocols.cli import main
from insitu.simulators.materials import MATERIALS


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_materials_lists_every_preset(capsys):
    rows = run_json(capsys, ["sim", "materials", "--json"])
    assert [r["name"] for r in rows] == list(MATERIALS)


def test_ccd_on_the_simulated_bench_finds_the_paper_ccd(capsys):
    out = run_json(
        capsys, ["ccd", "--instrument", "sim:A-LPS", "--speedup", "1e6", "--json", "--quiet"]
    )
    assert out["ccd_mA_cm2"] == pytest.approx(MATERIALS["A-LPS"].ccd_mA_cm2)
    assert out["stopped_because"] == "short"
    assert set(out["charge_to_failure_C_cm2"]) == {"per_electrode_plated", "total_abs"}
    assert out["charge_to_failure_C_cm2"]["per_electrode_plated"] == pytest.approx(
        MATERIALS["A-LPS"].charge_to_failure_C_cm2, rel=0.10
    )


def test_instrument_info_through_a_served_emulator(capsys):
    from insitu.protocols.simbench import start_emulator

    with start_emulator("LiI-AN", protocol="keithley2450") as bench:
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
    ],
)
def test_user_errors_print_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("insitu: error:") and message in err
    assert "\n" not in err and "Traceback" not in err


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
            sys.executable, "-m", "insitu.protocols.cli", "sim", "serve",
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
