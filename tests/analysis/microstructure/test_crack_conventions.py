"""Cracks under both conventions: grown since the first scan, and the paper's per scan.

A synthetic cell with known pores (isolated balls, none percolating) and, after "cycling", two
planar sheets grown from the top interface: the numbers of both conventions are known exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from insitu.analysis.errors import AnalysisInputError
from insitu.analysis.microstructure.experiment import (
    ExperimentResult,
    Step,
    TomoSettings,
    analyze_experiment,
    crack_conventions,
)

SOLID, PORE, LI = 200, 40, 60
SHAPE = (64, 96, 96)
LI_ROWS = 12  # Li rows at the top and at the bottom; the electrolyte is rows 12..52
#: Two sheets (z0, z1, y0, y1, x0, x1): 2 voxels thick, grown from the top interface.
SHEETS = ((LI_ROWS, LI_ROWS + 24, 30, 60, 30, 32), (LI_ROWS, LI_ROWS + 16, 36, 62, 60, 62))
BALL_RADIUS = 2  # voxels: 33 voxels per pore


def _ball_centres() -> list[tuple[int, int, int]]:
    """Pore centres on a grid, clear of the sheets (so a sheet's volume is its own)."""
    centres = []
    for z in range(LI_ROWS + 5, SHAPE[0] - LI_ROWS - 4, 8):
        for y in range(20, 80, 8):
            for x in range(20, 80, 8):
                near = any(x0 - 4 <= x < x1 + 4 for *_, x0, x1 in SHEETS)
                if not near:
                    centres.append((z, y, x))
    return centres


def _cell(sheets: bool) -> np.ndarray:
    nz, ny, nx = SHAPE
    vol = np.full(SHAPE, SOLID, dtype=np.uint8)
    vol[:LI_ROWS] = LI
    vol[nz - LI_ROWS :] = LI
    zz, yy, xx = np.mgrid[
        -BALL_RADIUS : BALL_RADIUS + 1,
        -BALL_RADIUS : BALL_RADIUS + 1,
        -BALL_RADIUS : BALL_RADIUS + 1,
    ]
    ball = zz**2 + yy**2 + xx**2 <= BALL_RADIUS**2
    r = BALL_RADIUS
    for z, y, x in _ball_centres():
        region = vol[z - r : z + r + 1, y - r : y + r + 1, x - r : x + r + 1]
        region[ball] = PORE
    if sheets:
        for z0, z1, y0, y1, x0, x1 in SHEETS:
            vol[z0:z1, y0:y1, x0:x1] = PORE
    # Outside the pellet's disc: air.
    yy2, xx2 = np.mgrid[:ny, :nx]
    vol[:, (yy2 - (ny - 1) / 2) ** 2 + (xx2 - (nx - 1) / 2) ** 2 > (0.47 * nx) ** 2] = 0
    return vol


def _sheet_voxels(row: object) -> list[int]:
    """Each sheet's voxels in the rows measured (a margin row next to each interface is not)."""
    e0, e1 = int(row["electrolyte_z0"]), int(row["electrolyte_z1"])  # type: ignore[index]
    return [
        (min(z1, e1) - max(z0, e0)) * (y1 - y0) * (x1 - x0) for z0, z1, y0, y1, x0, x1 in SHEETS
    ]


#: Between the largest pore (33 µm³ at 1 µm voxels) and the smallest sheet (≈ 800 µm³).
SETTINGS = TomoSettings(
    voxel_um=1.0, psd=False, align=False, min_crack_volume_um3=200.0, paper_crack_min_um3=300.0
)


@pytest.fixture(scope="module")
def two_steps() -> ExperimentResult:
    steps = [Step("pristine", _cell(False)), Step("cracked", _cell(True), charge_mC=10.0)]
    return analyze_experiment(steps, SETTINGS)


def test_per_scan_convention_finds_exactly_the_sheets(two_steps) -> None:
    table = two_steps.table.set_index("step")
    # The pristine scan: pores only, all below the threshold: no crack under either.
    assert table.loc["pristine", "cracks_per_scan_count"] == 0
    assert table.loc["pristine", "cracks_per_scan_volume_um3"] == 0
    assert table.loc["pristine", "crack_count"] == 0
    cracked = table.loc["cracked"]
    sheets = _sheet_voxels(cracked)
    assert cracked["electrolyte_z0"] == LI_ROWS + 1  # the interface found where it is
    assert cracked["cracks_per_scan_count"] == 2
    assert cracked["cracks_per_scan_volume_um3"] == pytest.approx(sum(sheets))
    # Grown from the top (working) interface.
    assert cracked["cracks_per_scan_volume_top_um3"] == pytest.approx(sum(sheets))
    assert cracked["cracks_per_scan_volume_bottom_um3"] == 0
    per_scan = two_steps.crack_tables_per_scan["cracked"]
    assert sorted(per_scan["voxels"]) == sorted(sheets)
    assert (per_scan["planarity"] > 0.9).all()


def test_both_conventions_agree_on_the_cracked_step(two_steps) -> None:
    cracked = two_steps.table.set_index("step").loc["cracked"]
    assert cracked["crack_count"] == cracked["cracks_per_scan_count"] == 2
    for grown, per_scan in (
        ("crack_volume_um3", "cracks_per_scan_volume_um3"),
        ("crack_volume_top_um3", "cracks_per_scan_volume_top_um3"),
        ("crack_volume_bottom_um3", "cracks_per_scan_volume_bottom_um3"),
    ):
        assert cracked[grown] == pytest.approx(cracked[per_scan])
    assert "cracks_per_scan" in two_steps.timings


def test_threshold_below_the_pores_counts_them(two_steps) -> None:
    """The threshold decides: below the pores' volume every pore is a 'crack'."""
    settings = TomoSettings(voxel_um=1.0, psd=False, align=False, paper_crack_min_um3=10.0)
    result = analyze_experiment([Step("pristine", _cell(False))], settings)
    assert result.table["cracks_per_scan_count"].iloc[0] == len(_ball_centres())
    # A planarity floor drops the round pores again.
    settings = TomoSettings(
        voxel_um=1.0,
        psd=False,
        align=False,
        paper_crack_min_um3=10.0,
        paper_crack_planarity_min=0.6,
    )
    result = analyze_experiment([Step("cracked", _cell(True))], settings)
    assert result.table["cracks_per_scan_count"].iloc[0] == 2


def test_a_single_volume_reports_per_scan_cracks() -> None:
    result = analyze_experiment([Step("post-mortem", _cell(True))], SETTINGS)
    row = result.table.iloc[0]
    # Its own reference: nothing has grown, but the paper's convention sees the sheets.
    assert row["crack_count"] == 0 and row["crack_volume_um3"] == 0
    assert row["cracks_per_scan_count"] == 2
    assert row["cracks_per_scan_volume_um3"] == pytest.approx(sum(_sheet_voxels(row)))


def test_the_json_names_both_conventions(two_steps) -> None:
    summary = json.loads(json.dumps(two_steps.to_dict()))
    conventions = summary["conventions"]
    assert set(conventions) == {"grown_since_first_scan", "per_scan"}
    grown, per_scan = conventions["grown_since_first_scan"], conventions["per_scan"]
    assert grown["min_volume_um3"] == 200.0 and "crack_count" in grown["columns"]
    assert per_scan["min_volume_um3"] == 300.0 and per_scan["planarity_min"] == 0.0
    assert "cracks_per_scan_count" in per_scan["columns"]
    assert "paper" in per_scan["name"] and "first scan" in grown["name"]
    for convention in conventions.values():
        assert set(convention["columns"]) <= set(summary["steps"][0])
    assert summary["settings"]["paper_crack_min_um3"] == 300.0
    assert crack_conventions(SETTINGS) == two_steps.to_dict()["conventions"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("paper_crack_min_um3", -1.0, "--paper-crack-min-um3"),
        ("paper_crack_min_um3", float("nan"), "--paper-crack-min-um3"),
        ("paper_crack_planarity_min", 1.5, "--paper-crack-planarity"),
    ],
)
def test_bad_settings_say_the_option(field, value, message) -> None:
    with pytest.raises(AnalysisInputError, match=message):
        TomoSettings(voxel_um=1.0, **{field: value})


def test_figures_name_the_convention_of_each_curve(two_steps, tmp_path) -> None:
    from insitu.analysis.report.tomo_figures import plot_volumes_vs_step, render_cracks

    conventions = two_steps.to_dict()["conventions"]
    fig = plot_volumes_vs_step(two_steps.table, conventions)
    labels = [line.get_label() for ax in fig.axes for line in ax.lines]
    assert "cracks grown since the first scan ≥ 200 µm³" in labels
    assert "cracks per scan (the paper's) ≥ 300 µm³" in labels
    per_scan = next(
        line for ax in fig.axes for line in ax.lines if line.get_label().startswith("cracks per")
    )
    np.testing.assert_allclose(
        per_scan.get_ydata(), two_steps.table["cracks_per_scan_volume_um3"] / 1e3
    )
    fig.savefig(tmp_path / "volumes.png")
    # Without cracks the rendering is drawn and says so.
    fig = render_cracks(np.zeros((4, 5, 6), dtype=np.uint8), voxel_um=1.0)
    assert all(t.get_text() == "no cracks" for ax in fig.axes for t in ax.texts)
    assert len(fig.axes[0].texts) == 1
    fig.savefig(tmp_path / "cracks.png")
