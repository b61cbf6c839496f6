"""Scans reconstructed and measured in the background: a process pool or a Dask cluster.

Known answers: the simulator's ground truth of each scan (no cracks in the pristine pellet,
the crack volume of the A-LPS pellet after 27.5 mC), and a bad scan reported, not raised.
"""

from __future__ import annotations

import json

import pytest

from insitu.protocols.experiment_config import AnalysisConfig
from insitu.protocols.workflows.experiment_analysis import ScanAnalyzer
from insitu.protocols.workflows.tomo import run_tomo_scan

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    out = {}
    for name, charge in (("pristine", 0.0), ("cracked", 27.5)):
        path = folder / f"{name}.h5"
        run_tomo_scan(
            "A-LPS", path, charge_mC=charge, n_projections=180, n_darks=4, n_flats=4, speedup=1e4
        )
        out[name] = path
    return out


def measure(tmp_path, scans, scheduler: str) -> dict:
    config = AnalysisConfig(scheduler=scheduler, workers=1)
    with ScanAnalyzer(tmp_path, config, area_cm2=0.0707) as analyzer:
        analyzer.submit(1, "pristine", str(scans["pristine"]), charge_mC=0.0, pristine=True)
        analyzer.submit(3, "cracked", str(scans["cracked"]), charge_mC=27.5)
        analyzer.submit(5, "bad", str(tmp_path / "missing.h5"), charge_mC=27.5)
        results = {r.label: r for r in analyzer.wait(timeout_s=300)}
    return results


def check_against_truth(results, scans):
    truth = json.loads(scans["cracked"].with_suffix(".truth.json").read_text())
    pristine, cracked = results["pristine"].data, results["cracked"].data
    assert results["pristine"].error is None and results["cracked"].error is None
    assert pristine["crack_volume_um3"] == 0
    true_um3 = truth["crack_volume_m3"] * 1e18
    assert true_um3 > 0
    assert cracked["crack_volume_um3"] == pytest.approx(true_um3, rel=0.15)
    assert pristine["porosity"] == pytest.approx(truth["porosity_preset"], abs=0.02)
    # A scan that cannot be read is reported with its error; the others are not affected.
    assert results["bad"].data is None
    assert "missing.h5" in results["bad"].error


def test_scans_are_measured_in_a_process_pool(tmp_path, scans):
    results = measure(tmp_path, scans, "process")
    check_against_truth(results, scans)
    # The crack-onset rule of the adaptive protocol reads these results.
    config = AnalysisConfig(scheduler="process")
    with ScanAnalyzer(tmp_path / "onset", config) as analyzer:
        analyzer.submit(1, "pristine", str(scans["pristine"]), charge_mC=0.0, pristine=True)
        analyzer.wait(timeout_s=300)
        assert not analyzer.crack_onset(1000.0)
        analyzer.submit(3, "cracked", str(scans["cracked"]), charge_mC=27.5)
        analyzer.wait(timeout_s=300)
        assert analyzer.crack_onset(1000.0)
        assert not analyzer.crack_onset(1e9)
    # Measured before a resume: a second analyzer takes the stored results.
    config = AnalysisConfig(scheduler="process")
    with ScanAnalyzer(tmp_path, config) as again:
        again.submit(1, "pristine", str(scans["pristine"]), charge_mC=0.0, pristine=True)
        assert again.busy == 0 and again.results[1].data["crack_volume_um3"] == 0


def test_scans_are_measured_on_a_dask_cluster_given_by_address(tmp_path, scans):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        results = measure(tmp_path, scans, cluster.scheduler_address)
    check_against_truth(results, scans)


def test_a_script_without_a_main_guard_gets_its_scans_analysed(tmp_path, seed_catalog):
    # Spawned workers import the parent's __main__: an unguarded script ran the whole
    # experiment again in each worker and the pool broke (BrokenProcessPool for every scan).
    import subprocess
    import sys

    # An empty catalog in the script's 'data' folder (tests/protocols/conftest.py): the
    # script skips tiled's `catalog init` subprocess.
    seed_catalog(tmp_path / "data")
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from insitu.protocols.workflows.experiment import run_experiment\n"
        "run_experiment({'material': 'A-LPS', 'adaptive': {'stop_before_charge_mC': 0.001},\n"
        "                'scan': {'n_projections': 60, 'n_darks': 2, 'n_flats': 2},\n"
        "                'catalog': {'data': 'data'}, 'output': 'exp'},\n"
        "               experiment_id='u1', out=None, report=False)\n"
        "print('ran once')\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ran once") == 1
    live = json.loads((tmp_path / "exp" / "u1" / "analysis" / "live" / "001.json").read_text())
    assert live["error"] is None and live["data"]["crack_volume_um3"] == 0
    assert (tmp_path / "exp" / "u1" / "analysis" / "final" / "cracks_last_step.png").is_file()
