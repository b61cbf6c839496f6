"""The experiment's study pass: one read of each uint8 scan serves every grey measurement.

* Per-row value counts equal numpy's bincount row by row.
* The transparent volume, the partial-volume porosity and the thickness profiles summed from
  the counts equal the slab-wise functions that read the volume.
* ``analyze_experiment`` on uint8 scans gives exactly the results of the pass-per-measurement
  path (still used for other dtypes), and reads each scan far fewer times.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from insitu.analysis.microstructure import experiment
from insitu.analysis.microstructure.electrodes import (
    WindowProfiles,
    electrode_thickness,
    transparent_volume,
    transparent_volume_from_counts,
)
from insitu.analysis.microstructure.experiment import Step, TomoSettings, analyze_experiment
from insitu.analysis.microstructure.partial_volume import (
    PhaseLevels,
    pv_porosity,
    pv_porosity_from_counts,
)
from insitu.analysis.microstructure.segment import (
    pellet_mask,
    uint8_row_value_counts,
    uint8_value_counts,
)

SHAPE = (72, 90, 110)
LI_ROWS, COLLECTOR_ROWS = 14, 5


def cell(seed: int, cracks: bool) -> np.ndarray:
    """A noisy uint8 cell: collectors, Li, porous electrolyte (and planar cracks), air outside."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = SHAPE
    field = ndi.gaussian_filter(rng.standard_normal(SHAPE), 1.5)
    grey = np.where(field > 0.8 * field.std(), 45.0, 215.0) + rng.normal(0, 12, SHAPE)
    grey[:LI_ROWS] = 60 + rng.normal(0, 8, (LI_ROWS, ny, nx))
    grey[nz - LI_ROWS :] = 60 + rng.normal(0, 8, (LI_ROWS, ny, nx))
    grey[:COLLECTOR_ROWS] = 250
    grey[nz - COLLECTOR_ROWS :] = 250
    if cracks:
        grey[LI_ROWS : LI_ROWS + 25, 20:70, 30:32] = 40
        grey[LI_ROWS : LI_ROWS + 18, 25:60, 70:72] = 40
    yy, xx = np.mgrid[:ny, :nx]
    grey[:, (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 > (0.49 * nx) ** 2] = 0
    return np.clip(grey, 0, 255).astype(np.uint8)


class CountingVolume:
    """A volume that counts the rows read through it (slices along z)."""

    def __init__(self, volume: np.ndarray) -> None:
        self.volume = volume
        self.shape = volume.shape
        self.dtype = volume.dtype
        self.ndim = volume.ndim
        self.rows_read = 0

    def __getitem__(self, index):
        out = self.volume[index]
        self.rows_read += out.shape[0] if out.ndim == 3 else 1
        return out

    def __array__(self, dtype=None, copy=None):
        self.rows_read += self.shape[0]
        return self.volume if dtype is None else self.volume.astype(dtype)


def test_row_counts_equal_bincount_per_row() -> None:
    grey = cell(0, cracks=False)[10:40]
    mask = pellet_mask(SHAPE[1:], radius_px=40)
    counts = uint8_row_value_counts(grey, mask)
    assert counts.shape == (30, 256) and counts.dtype == np.int64
    for z in range(30):
        np.testing.assert_array_equal(counts[z], np.bincount(grey[z][mask], minlength=256))
    np.testing.assert_array_equal(counts.sum(axis=0), uint8_value_counts(grey, mask))
    np.testing.assert_array_equal(
        uint8_row_value_counts(grey, None).sum(axis=1), np.full(30, SHAPE[1] * SHAPE[2])
    )


@pytest.mark.parametrize("interfaces", [(14.0, 58.0), (13.7, 58.49), (20.5, 21.2), (0.0, 72.0)])
def test_transparent_volume_from_counts(interfaces) -> None:
    grey = cell(1, cracks=True)
    mask = pellet_mask(SHAPE[1:], radius_px=41)
    counts = uint8_row_value_counts(grey, mask)
    for value in (100.0, 128.0, 46.0):
        expected = transparent_volume(grey < value, voxel_um=0.7, interfaces=interfaces, mask=mask)
        got = transparent_volume_from_counts(
            counts, value=value, voxel_um=0.7, interfaces=interfaces
        )
        assert got == expected
    with pytest.raises(ValueError, match="interfaces"):
        transparent_volume_from_counts(counts, value=100.0, voxel_um=0.7, interfaces=(5, 3))


def test_pv_porosity_from_counts() -> None:
    grey = cell(2, cracks=False)
    mask = pellet_mask(SHAPE[1:], radius_px=41)
    levels = PhaseLevels(solid=190.0, void=30.0)
    rows = (15, 57)
    counts = uint8_row_value_counts(grey, mask)[rows[0] : rows[1]].sum(axis=0)
    assert pv_porosity_from_counts(counts, levels) == pv_porosity(
        grey, levels, mask=mask, rows=rows, slab_rows=11
    )


@pytest.mark.parametrize("with_mask", [True, False])
def test_window_profiles_give_the_same_thickness(with_mask: bool) -> None:
    grey = cell(3, cracks=False)
    mask = pellet_mask(SHAPE[1:], radius_px=41) if with_mask else None
    windows = WindowProfiles(SHAPE, voxel_um=1.5, window_um=12.0, mask=mask)
    for a in range(0, SHAPE[0], 17):  # slabs that do not divide the rows
        windows.add(grey[a : a + 17], a)
    kw = {"voxel_um": 1.5, "window_um": 12.0, "interfaces": (14.0, 58.0), "mask": mask}
    expected = electrode_thickness(grey, **kw)
    got = electrode_thickness(np.zeros(SHAPE, np.uint8), profiles=windows.profiles(), **kw)
    pd.testing.assert_frame_equal(got, expected)
    assert np.isfinite(expected["top_um"]).all()  # the collector is in view: measured
    with pytest.raises(ValueError, match="profiles must have shape"):
        electrode_thickness(grey, profiles=windows.profiles()[:3], **kw)


def _result_json(result: experiment.ExperimentResult) -> str:
    d = result.to_dict()
    d.pop("timings_s")
    return json.dumps(d, sort_keys=True, default=str)


@pytest.mark.parametrize("psd", [True, False])
def test_study_pass_equals_the_pass_per_measurement(monkeypatch, psd: bool) -> None:
    grey = [cell(4, cracks=False), cell(4, cracks=True)]
    settings = TomoSettings(
        voxel_um=1.5, psd=psd, align=False, min_crack_volume_um3=200.0, paper_crack_min_um3=500.0
    )

    def run() -> tuple[experiment.ExperimentResult, list[int]]:
        volumes = [CountingVolume(g) for g in grey]
        steps = [Step(f"s{i}", v) for i, v in enumerate(volumes)]
        return analyze_experiment(steps, settings), [v.rows_read for v in volumes]

    fused, fused_reads = run()
    assert "study_pass" in fused.timings
    with monkeypatch.context() as m:
        m.setattr(experiment, "_study", experiment._study_by_passes)
        passes, pass_reads = run()
    assert _result_json(fused) == _result_json(passes)
    for name in fused.thickness:
        pd.testing.assert_frame_equal(fused.thickness[name], passes.thickness[name])
        pd.testing.assert_frame_equal(fused.crack_tables[name], passes.crack_tables[name])
        pd.testing.assert_frame_equal(
            fused.crack_tables_per_scan[name], passes.crack_tables_per_scan[name]
        )
    assert fused.table["crack_count"].tolist() == [0, 2]
    # The pass per measurement reads every scan for the interfaces, the threshold, the levels
    # of the partial volume, its porosity, the transparent volume and the thickness windows;
    # the study pass once for all of them (the first scan also for its unmasked profile).
    nz = SHAPE[0]
    assert all(f <= p - 3 * nz for f, p in zip(fused_reads, pass_reads, strict=True))
