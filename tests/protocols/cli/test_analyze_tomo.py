"""``insitu analyze tomo`` on a simulated in-situ experiment, against the simulator's truth.

A-LPS scanned pristine, just after crack onset and at the short (``insitu tomo-scan --sim``),
each reconstructed (``insitu recon``), then analysed as one experiment with one threshold.
"""

from __future__ import annotations

import json

import cc3d
import h5py
import numpy as np
import pytest

from insitu.protocols.cli import main
from insitu.simulators.pellet.phases import Phase

# Pristine, cracks grown (onset ≈ 11 mC, first voxels at 12.5 mC), shorted (25 mC). At 15 mC
# the crack is 24 voxels of 3 µm, one voxel thick: below the smallest crack counted.
CHARGES_MC = (0.0, 20.0, 27.5)


def run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])


def _crack_components(labels: np.ndarray) -> int:
    """26-connected components of the truth's crack voxels (CRACK and CRACK_LITHIUM)."""
    crack = np.isin(labels, [Phase.CRACK, Phase.CRACK_LITHIUM])
    return int(cc3d.connected_components(crack, connectivity=26, return_N=True)[1])


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    folder = tmp_path_factory.mktemp("experiment")
    steps, truths = [], []
    for q in CHARGES_MC:
        scan, volume = folder / f"s{q:g}.h5", folder / f"v{q:g}.zarr"
        assert (
            main(
                [
                    "tomo-scan",
                    "--sim",
                    "A-LPS",
                    "--charge-mC",
                    str(q),
                    "--out",
                    str(scan),
                    "--quiet",
                ]
            )
            == 0
        )
        assert main(["recon", str(scan), "--out", str(volume), "--quiet"]) == 0
        truth = json.loads(scan.with_suffix(".truth.json").read_text())
        with h5py.File(scan.with_suffix(".truth.h5")) as f:
            labels = f["labels"][:]
        # The truth's own count of connected crack components, checked on its labels.
        assert truth["n_crack_components"] == _crack_components(labels)
        truth["crack_components"] = truth["n_crack_components"]
        truths.append(truth)
        steps.append(
            {"name": f"{q:g} mC", "volume": volume.name, "charge_mC": truth["charge_passed_mC"]}
        )
    manifest = folder / "experiment.json"
    manifest.write_text(json.dumps({"steps": steps}))
    return manifest, truths


@pytest.mark.slow
def test_experiment_against_the_truth(experiment, capsys) -> None:
    manifest, truths = experiment
    result = run_json(capsys, ["analyze", "tomo", str(manifest), "--area-cm2", "0.0707", "--json"])
    steps = result["steps"]
    assert [s["step"] for s in steps] == ["0 mC", "20 mC", "27.5 mC"]
    for step, truth in zip(steps, truths, strict=True):
        # The measured porosity is the transparent fraction of the electrolyte (pores, cracks
        # and Li in cracks share a grey level); the truth's "porosity" counts pores only.
        c = truth["electrolyte_counts"]
        transparent = c["PORE"] + c["CRACK"] + c["CRACK_LITHIUM"]
        assert step["porosity"] == pytest.approx(
            transparent / (transparent + c["ELECTROLYTE"]), abs=0.01
        )
        # The partial-volume estimator, its solid level from the material at the scan's
        # energy (the manifest names no material: the scan's ground truth does).
        assert step["porosity_pv"] == pytest.approx(
            transparent / (transparent + c["ELECTROLYTE"]), abs=0.01
        )
    # Cracks: none before onset, then within 15 % of the truth's crack volume.
    assert steps[0]["crack_volume_um3"] == 0 and steps[0]["crack_count"] == 0
    truth_crack = [t["crack_volume_m3"] * 1e18 for t in truths]
    assert truth_crack[1] > 0
    for step, expected in zip(steps[1:], truth_crack[1:], strict=True):
        assert step["crack_volume_um3"] == pytest.approx(expected, rel=0.15)
    # As many cracks as the truth has: 3 at 20 mC (pieces cut apart by the pores they ran
    # through are joined again). At 27.5 mC two of the simulator's 3 cracks have grown into
    # each other, one connected component of crack voxels: that is what a count can give.
    assert truths[1]["n_cracks"] == truths[1]["crack_components"] == 3
    assert truths[2]["n_cracks"] == 3 and truths[2]["crack_components"] == 2
    assert [s["crack_count"] for s in steps] == [0, 3, 2]
    # They start at the stripping (top, working) electrode.
    assert steps[-1]["crack_volume_top_um3"] > steps[-1]["crack_volume_bottom_um3"]
    # The transparent volume changes with the truth's sign at every step.
    measured = np.diff([s["transparent_volume_um3"] for s in steps])
    expected = np.diff([t["transparent_volume_m3"] * 1e18 for t in truths])
    assert np.all(np.sign(measured) == np.sign(expected)), (measured, expected)
    assert truths[-1]["shorted"] and not truths[1]["shorted"]
    # Electrodes measured to the steel pistons: the truth's thicknesses within a voxel.
    for step, truth in zip(steps, truths, strict=True):
        thickness = truth["electrode_thickness_m"]
        assert step["top_thickness_um"] == pytest.approx(thickness["working"] * 1e6, abs=3.0)
        assert step["bottom_thickness_um"] == pytest.approx(thickness["counter"] * 1e6, abs=3.0)
    # The charge balance has one row per interval, with the charge passed in it.
    balance = result["charge_per_electrode"]
    assert [b["charge_passed_mC"] for b in balance] == pytest.approx([20.0, 7.5], abs=0.01)
    # One threshold for the study, stored with the results; figures and tables written.
    threshold = result["threshold"]
    assert threshold["method"] == "default" and threshold["nbins"] == 256
    names = {p.rsplit("/", 1)[-1] for p in result["figures"]}
    assert {"volumes_vs_step.png", "cracks_last_step.png", "thickness_change.png"} <= names
    out = manifest.with_name("experiment-analysis")
    assert (out / "steps.csv").exists() and (out / "sections.csv").exists()
    assert json.loads((out / "result.json").read_text())["threshold"] == threshold


def test_single_volume_and_errors(experiment, capsys, tmp_path) -> None:
    manifest, _ = experiment
    volume = manifest.with_name("v0.zarr")
    result = run_json(
        capsys,
        [
            "analyze",
            "tomo",
            str(volume),
            "--out",
            str(tmp_path / "a"),
            "--no-psd",
            "--no-figures",
            "--json",
        ],
    )
    assert len(result["steps"]) == 1 and result["steps"][0]["crack_count"] == 0
    assert main(["analyze", "tomo", str(tmp_path / "missing.zarr")]) == 2
    assert "no volume at" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"steps": []}))
    assert main(["analyze", "tomo", str(bad)]) == 2
    assert "has no 'steps'" in capsys.readouterr().err


def _synthetic_cell(sheet: bool) -> np.ndarray:
    """Li | electrolyte with small isolated pores (and one planar crack from the top) | Li."""
    vol = np.full((48, 64, 64), 200, dtype=np.uint8)
    vol[:8], vol[40:] = 60, 60
    for z in (14, 22, 30):
        for y in (16, 32, 48):
            vol[z : z + 2, y : y + 2, 16:18] = 40  # 8 voxels each
    if sheet:
        vol[8:28, 20:44, 40:42] = 40  # 960 voxels (≈ 900 in the rows measured)
    yy, xx = np.mgrid[:64, :64]
    vol[:, (yy - 31.5) ** 2 + (xx - 31.5) ** 2 > 30**2] = 0
    return vol


def test_single_volume_under_both_crack_conventions(capsys, tmp_path) -> None:
    """Without cracks: 0 under both conventions and the crack figure drawn; with one: the
    paper's per-scan convention finds it in a single volume, and the table names both."""
    options = ["--voxel-um", "1", "--no-psd", "--paper-crack-min-um3", "100"]
    for name, sheet in (("clean", False), ("cracked", True)):
        np.save(tmp_path / f"{name}.npy", _synthetic_cell(sheet))
    clean = run_json(capsys, ["analyze", "tomo", str(tmp_path / "clean.npy"), *options, "--json"])
    step = clean["steps"][0]
    assert step["crack_count"] == 0 and step["cracks_per_scan_count"] == 0
    assert step["cracks_per_scan_volume_um3"] == 0
    assert {p.rsplit("/", 1)[-1] for p in clean["figures"]} >= {
        "cracks_last_step.png",
        "volumes_vs_step.png",
    }
    assert clean["conventions"]["per_scan"]["min_volume_um3"] == 100.0
    assert clean["settings"]["paper_crack_min_um3"] == 100.0
    assert main(["analyze", "tomo", str(tmp_path / "cracked.npy"), *options, "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert "crack_count: cracks grown since the first scan (>= 1000 µm³)" in printed
    assert "cracks_per_scan_count: cracks per scan (the paper's) (>= 100 µm³)" in printed
    table = (tmp_path / "cracked-analysis" / "steps.csv").read_text().splitlines()
    header, row = table[0].split(","), table[1].split(",")
    values = dict(zip(header, row, strict=True))
    assert values["crack_count"] == "0" and values["cracks_per_scan_count"] == "1"
    # A planarity floor above the sheet's (≈ 0.99) drops it; out of [0, 1] is refused.
    strict = [*options, "--paper-crack-planarity", "1.0", "--no-figures", "--json"]
    flat = run_json(capsys, ["analyze", "tomo", str(tmp_path / "cracked.npy"), *strict])
    assert flat["steps"][0]["cracks_per_scan_count"] == 0
    bad = [*options, "--paper-crack-planarity", "2", "--no-figures"]
    assert main(["analyze", "tomo", str(tmp_path / "cracked.npy"), *bad]) == 2
    assert "--paper-crack-planarity" in capsys.readouterr().err


def test_psd_on_a_fraction_of_the_rows_is_recorded_and_checked(capsys, tmp_path) -> None:
    """``--psd-fraction``: the pore sizes on a seeded fraction of the 64-row blocks (the
    settings say which), the same seed gives the same answer; a fraction outside (0, 1] is
    one line, exit 2, before any step is read."""
    np.save(tmp_path / "cell.npy", _synthetic_cell(False))
    argv = ["analyze", "tomo", str(tmp_path / "cell.npy"), "--voxel-um", "1", "--no-figures"]
    first = run_json(capsys, [*argv, "--psd-fraction", "0.5", "--psd-seed", "3", "--json"])
    again = run_json(capsys, [*argv, "--psd-fraction", "0.5", "--psd-seed", "3", "--json"])
    assert first["settings"]["psd_fraction"] == 0.5 and first["settings"]["psd_seed"] == 3
    assert first["steps"][0]["mean_pore_diameter_um"] > 0
    assert first["steps"][0]["mean_pore_diameter_um"] == again["steps"][0]["mean_pore_diameter_um"]
    for bad in ("0", "1.5", "nan"):
        assert main([*argv, "--psd-fraction", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("insitu: error:") and err.count("\n") == 1
