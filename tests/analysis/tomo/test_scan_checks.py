"""Flats, darks and projections that cannot be normalised are refused, with the reason."""

from __future__ import annotations

import math
import warnings

import h5py
import numpy as np
import pytest
import zarr

from insitu.analysis.errors import AnalysisInputError
from insitu.analysis.tomo.pipeline import ReconOptions, reconstruct_scan
from insitu.analysis.tomo.prep.flat_field import (
    ReferenceWarning,
    check_projections,
    check_references,
    reference_stats,
)
from insitu.instruments.dxchange import (
    DARK_PATH,
    DATA_PATH,
    FLAT_PATH,
    THETA_PATH,
    DataExchangeWriter,
)

N, ROWS, COLS = 60, 16, 48
RNG = np.random.default_rng(7)


def noisy(level: float, n: int) -> np.ndarray:
    return RNG.normal(level, 3.0, (n, ROWS, COLS))


def check(flat: np.ndarray, dark: np.ndarray) -> list[str]:
    return check_references(reference_stats(flat, dark), source="scan.h5")


def test_good_references_pass_silently() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check(noisy(4000, 3), noisy(100, 2)) == []


@pytest.mark.parametrize(
    ("flat", "dark", "match"),
    [
        (
            np.zeros((3, ROWS, COLS)),
            np.zeros((2, ROWS, COLS)),
            r"flat frame\(s\) 0, 1, 2 are constant \(all 0\)",
        ),
        (np.full((3, ROWS, COLS), 65535.0), noisy(100, 2), r"constant \(every pixel 65535\)"),
        (
            np.concatenate([noisy(4000, 2), np.zeros((1, ROWS, COLS))]),
            noisy(100, 2),
            r"flat frame\(s\) 2 are constant",
        ),
        (
            np.where(np.arange(COLS) == 5, np.nan, noisy(4000, 3)),
            noisy(100, 2),
            r"flat frame\(s\) 0, 1, 2 hold NaN",
        ),
        (noisy(4000, 3), np.full((2, ROWS, COLS), np.nan), r"dark frame\(s\) 0, 1 hold NaN"),
        (noisy(100, 3), noisy(4000, 2), r"not brighter than the mean dark at 100% .* swapped"),
        (
            noisy(4000, 3),
            np.concatenate([noisy(100, 2), np.zeros((1, ROWS, COLS))]),
            r"dark frame\(s\) 2 are constant \(all 0\) while the others",
        ),
    ],
    ids=[
        "all-zero",
        "saturated",
        "one-zero-flat",
        "nan-flat",
        "nan-dark",
        "swapped",
        "one-zero-dark",
    ],
)
def test_unusable_references_are_refused(flat, dark, match) -> None:
    with pytest.raises(AnalysisInputError, match=match) as err:
        check(flat, dark)
    assert str(err.value).startswith("scan.h5: ")


def test_constant_darks_are_flagged_not_refused() -> None:
    with pytest.warns(ReferenceWarning, match=r"every dark frame is constant \(all 0\)"):
        notes = check(noisy(4000, 3), np.zeros((2, ROWS, COLS)))
    assert len(notes) == 1


def test_stats_merged_over_row_bands_equal_the_whole() -> None:
    flat, dark = noisy(4000, 3), noisy(100, 2)
    flat[1, 3:, :] = 0  # the flat is zero below row 3: not constant over the whole frame
    whole = reference_stats(flat, dark)
    merged = reference_stats(flat[:, :3], dark[:, :3]).merge(
        reference_stats(flat[:, 3:], dark[:, 3:])
    )
    np.testing.assert_array_equal(merged.flat_min, whole.flat_min)
    np.testing.assert_array_equal(merged.flat_max, whole.flat_max)
    assert (merged.not_brighter, merged.pixels) == (whole.not_brighter, whole.pixels)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (0.0, r"projection\(s\) 4 are all 0 in rows 8–23: the camera dropped"),
        (np.nan, r"projection\(s\) 4 hold NaN"),
    ],
)
def test_a_dropped_projection_is_refused_naming_frame_and_rows(value, match) -> None:
    proj = noisy(2000, 6)
    proj[4] = value
    with pytest.raises(AnalysisInputError, match=match):
        check_projections(proj, first_row=8, source="scan.h5")
    check_projections(noisy(2000, 6))  # real frames pass


def write_scan(path, *, flat_level: float = 4000.0, zero_projection: int | None = None) -> None:
    """A disc seen by the camera's writer (checksummed), frames with noise."""
    theta = np.arange(N) * math.pi / N
    t = np.arange(COLS) - (COLS - 1) / 2
    sino = 2 * 0.02 * np.sqrt(np.clip(15.0**2 - t**2, 0, None))
    with DataExchangeWriter(path, shape=(ROWS, COLS)) as w:
        for _ in range(2):
            w.append("dark", RNG.normal(100, 2, (ROWS, COLS)))
            w.append("flat", RNG.normal(flat_level, 20, (ROWS, COLS)))
        for k, angle in enumerate(theta):
            frame = 100 + 3900 * np.exp(-sino)[None, :] + RNG.normal(0, 5, (ROWS, COLS))
            if k == zero_projection:
                frame = np.zeros((ROWS, COLS))
            w.append("projection", frame, theta_rad=float(angle))


OPTS = ReconOptions(center=(COLS - 1) / 2, rings="none")


def test_recon_records_verified_checksums(tmp_path) -> None:
    scan = tmp_path / "scan.h5"
    write_scan(scan)
    summary = reconstruct_scan(scan, tmp_path / "v.zarr", OPTS, progress=False)
    assert summary["scan_checks"] == {"checksums": "fletcher32", "notes": []}
    assert (
        zarr.open_array(str(tmp_path / "v.zarr"), mode="r").attrs["scan_checks"]
        == (summary["scan_checks"])
    )


def test_recon_of_an_old_file_notes_it_cannot_be_verified(tmp_path) -> None:
    scan = tmp_path / "old.h5"
    write_scan(tmp_path / "new.h5")
    with h5py.File(tmp_path / "new.h5", "r") as src, h5py.File(scan, "w") as dst:
        for name in (DATA_PATH, FLAT_PATH, DARK_PATH, THETA_PATH):
            dst[name] = src[name][()]  # no filter: as files were written before
        dst[THETA_PATH].attrs["units"] = "deg"
    with pytest.warns(UserWarning, match="cannot be verified"):
        summary = reconstruct_scan(scan, tmp_path / "v.zarr", OPTS, progress=False)
    assert summary["scan_checks"]["checksums"] == "none"
    assert "cannot be verified" in summary["scan_checks"]["notes"][0]


def test_recon_refuses_dark_flats_before_writing_anything(tmp_path) -> None:
    scan = tmp_path / "scan.h5"
    write_scan(scan, flat_level=100.0)  # the shutter stayed closed for the flats
    with pytest.raises(AnalysisInputError, match=f"{scan}: the mean flat is not brighter"):
        reconstruct_scan(scan, tmp_path / "v.zarr", OPTS, progress=False)
    assert not (tmp_path / "v.zarr").exists()


def test_recon_refuses_a_dropped_projection(tmp_path) -> None:
    scan = tmp_path / "scan.h5"
    write_scan(scan, zero_projection=17)
    # The 16 rows are read as two slabs of 8 (so that reading overlaps the gridding): the
    # first slab read names the frame.
    with pytest.raises(AnalysisInputError, match=r"projection\(s\) 17 are all 0 in rows 0–7"):
        reconstruct_scan(scan, tmp_path / "v.zarr", OPTS, progress=False)
