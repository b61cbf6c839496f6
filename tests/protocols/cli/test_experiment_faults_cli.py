"""``insitu experiment run`` with a ``faults`` section: checked, echoed, and what it did said."""

from __future__ import annotations

import json

import yaml

from insitu.protocols.cli import main
from insitu.protocols.cli.experiment import _human

FAULTS = {"potentiostat": "delay=1%:0.2,garble=0.5%,disconnect=400", "beamline": "lose_frame=12"}


def test_check_accepts_the_faults_section(tmp_path, capsys) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"material": "A-LPS", "faults": FAULTS}))
    assert main(["experiment", "run", str(path), "--check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["faults"] == FAULTS


def test_a_real_instrument_with_faults_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    path = tmp_path / "e.yaml"
    devices = {"potentiostat": "/dev/ttyACM0", "tomography": "none"}
    path.write_text(yaml.safe_dump({"material": "A-LPS", "devices": devices, "faults": FAULTS}))
    assert main(["experiment", "run", str(path), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("insitu: error:")
    assert "faults.potentiostat is injected on the simulated bench only" in err


def test_the_summary_says_what_the_faults_did() -> None:
    result = {
        "experiment_id": "x",
        "faults": {
            "injected": {
                "wire": {"lines": 500, "delay": 4, "garble": 2, "drop": 0, "disconnect": 1},
                "beamline": {"frames_lost": 1, "frames_retaken": 1, "beam_losses": 1},
            },
            "scan_suspensions": 1,
            "points_lost": 2,
        },
    }
    assert (
        "faults injected: wire delay 4, garble 2, disconnect 1 in 500 reply lines; beamline 1 "
        "frame(s) lost, 1 retaken, 1 beam loss(es); 1 scan suspension(s); 2 point(s) lost"
    ) in _human(result)
