"""Li electrode thickness from the edge to the current collector, on synthetic stacks.

A stack along z — steel | Li | electrolyte | Li | steel — with sub-voxel surfaces (each row
holds the fraction of its height in each layer), blurred along z and noisy, at grey levels in
the ratios of the attenuation at 25 keV (Li ≈ argon ≪ electrolyte ≪ steel).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from insitu.analysis.microstructure.electrodes import (
    STATUS_NO_COLLECTOR,
    STATUS_OK,
    electrode_thickness,
)

# μ (1/mm) at 25 keV of Li, A-LPS and 316 steel (xraylib, see insitu.simulators.pellet.phases).
LI, SE, STEEL, GAS = 0.009, 0.56, 11.5, 0.0008


def _layer_fraction(n: int, a: float, b: float) -> np.ndarray:
    """Fraction of each row [i, i + 1) lying in [a, b) (continuous rows)."""
    i = np.arange(n, dtype=float)
    return np.clip(np.minimum(b, i + 1.0) - np.maximum(a, i), 0.0, 1.0)


def _stack(
    n: int,
    top: float,
    bottom: float,
    li_top: float,
    li_bottom: float,
    *,
    beyond: float = STEEL,
    blur_rows: float = 0.0,
    noise: float = 0.0,
    shape_yx: tuple[int, int] = (40, 40),
    seed: int = 0,
) -> np.ndarray:
    """Grey volume of the stack; ``li_*`` are thicknesses in rows, ``beyond`` the outer level."""
    outer_top, outer_bottom = top - li_top, bottom + li_bottom
    profile = (
        beyond * _layer_fraction(n, -np.inf, outer_top)
        + LI * _layer_fraction(n, outer_top, top)
        + SE * _layer_fraction(n, top, bottom)
        + LI * _layer_fraction(n, bottom, outer_bottom)
        + beyond * _layer_fraction(n, outer_bottom, np.inf)
    )
    if blur_rows > 0:
        profile = ndimage.gaussian_filter1d(profile, blur_rows, mode="nearest")
    volume = np.broadcast_to(profile[:, None, None], (n, *shape_yx)).astype(np.float32)
    if noise > 0:
        rng = np.random.default_rng(seed)
        volume = volume + rng.normal(0.0, noise, volume.shape).astype(np.float32)
    return volume


@pytest.mark.parametrize(
    ("li_top", "li_bottom"), [(8.0, 8.0), (7.3, 9.6), (2.6, 11.4), (15.5, 4.2), (1.4, 6.0)]
)
@pytest.mark.parametrize(("blur_rows", "noise"), [(0.0, 0.0), (1.0, 0.3)])
def test_known_thickness_comes_back_sub_voxel(
    li_top: float, li_bottom: float, blur_rows: float, noise: float
) -> None:
    top, bottom = 20.4, 45.7
    volume = _stack(72, top, bottom, li_top, li_bottom, blur_rows=blur_rows, noise=noise)
    table = electrode_thickness(volume, voxel_um=3.0, interfaces=(top, bottom), window_um=30.0)
    assert len(table) == 15
    assert (table["top_status"] == STATUS_OK).all() and (table["bottom_status"] == STATUS_OK).all()
    assert not table[["top_cut", "bottom_cut"]].any().any()
    # Half-way crossing with linear interpolation: exact for a sharp partial-volume edge next
    # to a flat Li plateau, and within a fifth of a voxel under a one-row blur and noise
    # (required: within one voxel, 3 µm).
    tol_rows = 0.02 if blur_rows == 0 else 0.2
    assert table["top_um"].to_numpy() == pytest.approx(3.0 * li_top, abs=3.0 * tol_rows)
    assert table["bottom_um"].to_numpy() == pytest.approx(3.0 * li_bottom, abs=3.0 * tol_rows)


def test_thickness_change_between_steps() -> None:
    """Plating one electrode and stripping the other by 1.5 µm shows with both signs."""
    top, bottom = 20.0, 46.0
    before = _stack(72, top, bottom, 8.0, 8.0, blur_rows=1.0, noise=0.3, seed=1)
    after = _stack(72, top, bottom, 8.5, 7.5, blur_rows=1.0, noise=0.3, seed=2)
    kw = {"voxel_um": 3.0, "interfaces": (top, bottom)}
    t0 = electrode_thickness(before, **kw)[["top_um", "bottom_um"]].mean()
    t1 = electrode_thickness(after, **kw)[["top_um", "bottom_um"]].mean()
    assert t1["top_um"] - t0["top_um"] == pytest.approx(1.5, abs=0.3)
    assert t1["bottom_um"] - t0["bottom_um"] == pytest.approx(-1.5, abs=0.3)


def test_no_collector_in_view_is_nan_with_the_reason() -> None:
    top, bottom = 20.0, 46.0
    # Gas beyond the Li (no piston): at 25 keV the Li's outer surface is invisible; and a Li
    # that runs out of the volume (the 150 µm foils at the beamline).
    gas = _stack(72, top, bottom, 8.0, 8.0, beyond=GAS, noise=0.003)
    cropped = _stack(72, top, bottom, 8.0, 40.0)
    for volume in (gas, cropped):
        table = electrode_thickness(volume, voxel_um=3.0, interfaces=(top, bottom))
        assert table["bottom_um"].isna().all()
        assert table["bottom_cut"].all()
        assert (table["bottom_status"] == STATUS_NO_COLLECTOR).all()
        assert np.isnan(table["bottom_um"].mean())
    # The top electrode of the cropped stack still has its piston in view: measured.
    table = electrode_thickness(cropped, voxel_um=3.0, interfaces=(top, bottom))
    assert table["top_um"].to_numpy() == pytest.approx(24.0, abs=0.1)
    assert (table["top_status"] == STATUS_OK).all()
    # The gas stack at least is not mistaken for a thickness on either side.
    table = electrode_thickness(gas, voxel_um=3.0, interfaces=(top, bottom))
    assert table["top_um"].isna().all()


def test_a_collector_dimmer_than_the_electrolyte_is_not_taken_for_one() -> None:
    """A faint rise beyond the Li (e.g. a polymer spacer) is no collector: NaN, not a number."""
    top, bottom = 20.0, 46.0
    volume = _stack(72, top, bottom, 8.0, 8.0, beyond=0.5 * SE)
    table = electrode_thickness(volume, voxel_um=3.0, interfaces=(top, bottom))
    assert table[["top_um", "bottom_um"]].isna().all().all()


def test_collector_in_part_of_the_field_and_fully_stripped_li() -> None:
    top, bottom = 20.0, 46.0
    volume = _stack(72, top, bottom, 6.0, 0.0, shape_yx=(40, 60)).copy()
    # Left of the field of view the upper piston has been lifted off: gas beyond the Li.
    volume[: int(top - 6.0), :, :25] = GAS
    table = electrode_thickness(volume, voxel_um=1.0, interfaces=(top, bottom), window_um=8.0)
    lifted = table["x"] < 25
    assert lifted.any() and (~lifted).any()
    assert table.loc[lifted, "top_um"].isna().all()
    assert table.loc[~lifted, "top_um"].to_numpy() == pytest.approx(6.0, abs=0.05)
    # The mean over the locations leaves the unmeasured ones out.
    assert table["top_um"].mean() == pytest.approx(6.0, abs=0.05)
    # All the counter Li stripped: the piston touches the electrolyte, thickness 0.
    assert table["bottom_um"].to_numpy() == pytest.approx(0.0, abs=0.05)
    assert (table["bottom_status"] == STATUS_OK).all()


def test_bad_threshold() -> None:
    volume = _stack(40, 12.0, 28.0, 4.0, 4.0)
    with pytest.raises(ValueError, match="threshold"):
        electrode_thickness(volume, voxel_um=1.0, interfaces=(12.0, 28.0), threshold=np.nan)
