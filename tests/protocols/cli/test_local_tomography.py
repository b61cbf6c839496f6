"""The beamline's voxel size on a region: local tomography of the 3 mm pellet, end to end.

``insitu tomo-scan --size region`` images the full-size pellet (0.7 µm voxels, every row, both
Li|SE interfaces in view) through a 96 × 96-column window; the pellet is 64× wider than the
window. Reconstructed with ``--sample-diameter-um`` the grey scale is absolute (μ per voxel),
so the partial-volume porosity holds against the truth; with edge padding it does not.
"""

from __future__ import annotations

import json

import pytest

from insitu.protocols.cli import main

QUICK = ["--no-psd", "--no-figures", "--json"]


def run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])


def test_region_at_full_size_against_the_truth(tmp_path, capsys) -> None:
    scan = tmp_path / "region.h5"
    # 300 projections (1500 at the beamline) keep it quick; the noise is then √5 higher.
    argv = ["tomo-scan", "--sim", "A-LPS", "--size", "region", "--projections", "300"]
    truth = run_json(capsys, [*argv, "--out", str(scan), "--json"])["ground_truth"]
    assert truth["shape_zyx"] == [1143, 96, 96] and truth["voxel_m"] == pytest.approx(0.7e-6)
    diameter_um = 2 * truth["pellet_radius_px"] * truth["voxel_m"] * 1e6
    assert diameter_um == pytest.approx(3000.0)
    # The automatic centre is not reliable on so narrow a window: the axis is given.
    recon = ["recon", str(scan), "--quiet", "--center", str(truth["rotation_axis_column"])]
    chord, edge = tmp_path / "chord.zarr", tmp_path / "edge.zarr"
    assert main([*recon, "--out", str(chord), "--sample-diameter-um", f"{diameter_um:g}"]) == 0
    assert main([*recon, "--out", str(edge)]) == 0
    capsys.readouterr()

    result = run_json(capsys, ["analyze", "tomo", str(chord), "--out", str(tmp_path / "c"), *QUICK])
    step = result["steps"][0]
    rows = truth["interfaces_z_rows"]
    top, bottom = rows["working_electrolyte"], rows["electrolyte_counter"]
    assert step["interface_top_row"] == pytest.approx(top, abs=1.0)
    assert step["interface_bottom_row"] == pytest.approx(bottom, abs=1.0)
    # Measured here: 0.468 against 0.479 (the benchmark's 1500 projections: 0.468 too).
    assert result["experiment"]["solid_level"]["source"].startswith("material A-LPS")
    assert step["porosity_pv"] == pytest.approx(truth["porosity"], abs=0.02)

    # Edge padding leaves a grey offset several times the solid's μ: the same estimator is
    # then meaningless (it read −6.4).
    edged = run_json(capsys, ["analyze", "tomo", str(edge), "--out", str(tmp_path / "e"), *QUICK])
    pv = edged["steps"][0]["porosity_pv"]
    assert pv is None or abs(pv - truth["porosity"]) > 0.2
