"""Tests of the interfacial intensity maps (analysis/microstructure/interface.py)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from matplotlib.figure import Figure

from insitu.analysis.microstructure.interface import (
    grey_range_from_percentiles,
    interface_intensity_table,
    interfacial_intensity_map,
    interfacial_intensity_maps,
    plot_interfacial_intensity_maps,
    to_grey255,
)
from insitu.simulators.pellet.model import PelletGeometry, VirtualPellet
from insitu.simulators.pellet.phases import Phase

LI, SE, GAP = 60, 200, 0


def _cell(nz: int = 120, ny: int = 100, nx: int = 80) -> np.ndarray:
    """uint8 Li (rows < 30) | SE (30 ≤ rows < 90) | Li, a void row at the top interface."""
    vol = np.full((nz, ny, nx), SE, dtype=np.uint8)
    vol[:30] = LI
    vol[90:] = LI
    vol[30] = GAP
    return vol


def test_section_view_known_grey_values() -> None:
    vol = _cell()
    m = interfacial_intensity_map(vol, 30.0, voxel_um=2.0, window_um=40.0, depth_um=100.0)
    assert m.name == "top Li|SE" and m.electrolyte_side == "below"
    assert (m.row_axis, m.col_axis, m.depth_axis) == ("z", "x", "y")
    # 20 rows centred on the interface (rows 20:40), 20 columns round the axis, 50 deep.
    assert m.row_range == (20, 40) and m.col_range == (30, 50) and m.depth_range == (25, 75)
    assert m.image.shape == (20, 20)
    np.testing.assert_allclose(m.image[:10], LI / 255)
    np.testing.assert_allclose(m.image[10], GAP / 255)
    np.testing.assert_allclose(m.image[11:], SE / 255)
    assert m.depth_um == 100.0 and not m.depth_clipped and not m.window_clipped
    s = m.stats()
    assert s["electrolyte_mean"] == pytest.approx((SE * 9 + GAP) / 10 / 255)
    assert s["electrode_mean"] == pytest.approx(LI / 255)
    assert s["first_electrolyte_row_mean"] == pytest.approx(GAP / 255)
    assert m.extent_um == (0.0, 40.0, 20.0, -20.0)
    bottom = interfacial_intensity_map(vol, 90.0, voxel_um=2.0, window_um=40.0, depth_um=100.0)
    assert bottom.name == "bottom SE|Li" and bottom.electrolyte_side == "above"
    assert bottom.stats()["electrolyte_mean"] == pytest.approx(SE / 255)
    assert bottom.stats()["first_electrolyte_row_mean"] == pytest.approx(SE / 255)


def test_normalised_by_depth_means_mean_over_voxels_summed() -> None:
    # Grey rises along the depth axis y: each pixel is the mean over the depth / 255.
    ny = 60
    vol = np.broadcast_to(np.arange(ny, dtype=np.uint8)[None, :, None], (40, ny, 30)).copy()
    m = interfacial_intensity_map(vol, 20.0, voxel_um=1.0, window_um=10.0, depth_um=20.0)
    assert m.depth_range == (20, 40)
    np.testing.assert_allclose(m.image, np.arange(20, 40).mean() / 255)
    assert (m.counted == 20).all()
    # Along x instead: the map's columns become y, and it shows the ramp.
    mx = interfacial_intensity_map(
        vol, 20.0, voxel_um=1.0, window_um=10.0, depth_um=20.0, depth_axis="x"
    )
    assert mx.col_axis == "y" and mx.col_range == (25, 35)
    np.testing.assert_allclose(mx.image[0], np.arange(25, 35) / 255)


def test_depth_and_window_clipped_to_the_volume_and_recorded() -> None:
    vol = _cell(ny=100)
    m = interfacial_intensity_map(vol, 30.0, voxel_um=3.0)  # 500 µm > 300 µm of y
    assert m.depth_range == (0, 100) and m.depth_um == 300.0 and m.depth_clipped
    assert m.col_range == (15, 65) and m.row_range == (5, 55) and not m.window_clipped
    edge = interfacial_intensity_map(vol, 3.0, voxel_um=3.0)
    assert edge.window_clipped and edge.row_range == (0, 28)
    row = interface_intensity_table([m, edge])
    assert row["depth_clipped"].tolist() == [True, True]
    assert row["depth_um"].tolist() == [300.0, 300.0]


def test_mask_excludes_outside_voxels_from_sum_and_count() -> None:
    vol = _cell()
    yy, xx = np.mgrid[:100, :80]
    inside = np.hypot(yy - 50, xx - 40) < 35
    dark = vol.copy()
    dark[:, ~inside] = 0  # air beside a narrow pellet
    m = interfacial_intensity_map(dark, 30.0, voxel_um=1.0, window_um=40, depth_um=100, mask=inside)
    np.testing.assert_allclose(m.image[:20], LI / 255)
    np.testing.assert_allclose(m.image[21:], SE / 255)
    assert m.counted.max() == 69 and m.counted.min() < 69  # the chord shortens off-axis
    assert m.depth_um == 69.0 and m.depth_clipped  # the pellet is 69 voxels across
    unmasked = interfacial_intensity_map(dark, 30.0, voxel_um=1.0, window_um=40, depth_um=100)
    assert np.all(unmasked.image[21:] < SE / 255 - 0.01)


def test_float_volume_needs_the_study_grey_range() -> None:
    vol = _cell().astype(np.float32) * 1e-3  # a float reconstruction, 0.06 and 0.2 /mm-ish
    with pytest.raises(ValueError, match="grey_range"):
        interfacial_intensity_map(vol, 30.0, voxel_um=2.0)
    m = interfacial_intensity_map(
        vol, 30.0, voxel_um=2.0, window_um=40, depth_um=100, grey_range=(0.0, 0.255)
    )
    np.testing.assert_allclose(m.image[11:], SE / 255, rtol=1e-6)
    np.testing.assert_allclose(
        to_grey255(np.array([-1.0, 0.5, 2.0]), grey_range=(0, 1)), [0, 127.5, 255]
    )
    lo, hi = grey_range_from_percentiles(vol, low=0.0, high=100.0, max_rows=120)
    assert (lo, hi) == pytest.approx((0.0, 0.2))
    with pytest.raises(ValueError, match="hi > lo"):
        to_grey255(vol, grey_range=(1.0, 1.0))


def test_plan_view_averages_into_the_electrolyte() -> None:
    vol = _cell()
    vol[31:90] = np.arange(31, 90, dtype=np.uint8)[:, None, None]  # grey = row in the SE
    m = interfacial_intensity_map(vol, 30.0, voxel_um=1.0, view="plan", window_um=20, depth_um=10)
    assert (m.row_axis, m.col_axis, m.depth_axis) == ("y", "x", "z")
    assert m.depth_range == (30, 40) and m.image.shape == (20, 20)
    np.testing.assert_allclose(m.image, (GAP + np.arange(31, 40).sum()) / 10 / 255)
    up = interfacial_intensity_map(vol, 90.0, voxel_um=1.0, view="plan", window_um=20, depth_um=10)
    assert up.depth_range == (80, 90)
    np.testing.assert_allclose(up.image, np.arange(80, 90).mean() / 255)
    deep = interfacial_intensity_map(vol, 30.0, voxel_um=1.0, view="plan", depth_um=500)
    assert deep.depth_range == (30, 120) and deep.depth_clipped and deep.depth_um == 90.0


def test_slabwise_and_zarr_equal_whole() -> None:
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 256, (50, 40, 40), dtype=np.uint8)
    ref = interfacial_intensity_map(vol, 25.0, voxel_um=1.0, window_um=30, depth_um=30)
    for chunk in (1, 7):
        m = interfacial_intensity_map(
            vol, 25.0, voxel_um=1.0, window_um=30, depth_um=30, chunk_rows=chunk
        )
        np.testing.assert_array_equal(m.image, ref.image)
    z = zarr.create_array(store={}, shape=vol.shape, chunks=(8, 40, 40), dtype="uint8")
    z[:] = vol
    np.testing.assert_array_equal(
        interfacial_intensity_map(z, 25.0, voxel_um=1.0, window_um=30, depth_um=30).image, ref.image
    )
    direct = vol[10:40, 5:35, 5:35].mean(axis=1) / 255
    np.testing.assert_allclose(ref.image, direct)


def test_virtual_pellet_maps_show_relative_density() -> None:
    """Denser electrolytes look brighter; Li darker than the electrolyte at both interfaces."""
    grey = np.zeros(len(Phase), dtype=np.uint8)
    grey[[Phase.OUTSIDE, Phase.LITHIUM, Phase.ELECTROLYTE, Phase.PORE]] = [5, 40, 210, 5]
    means = {}
    geometry = PelletGeometry.small()
    for material in ("A-LPS", "LiI-AN"):
        pellet = VirtualPellet(material, geometry, seed=0)
        vol = grey[pellet.labels()]
        maps = interfacial_intensity_maps(
            vol, geometry.interfaces_rows, voxel_um=3.0, mask=pellet.inside
        )
        table = interface_intensity_table(maps)
        assert table["name"].tolist() == ["top Li|SE", "bottom SE|Li"]
        assert (table["electrolyte_mean"] > table["electrode_mean"] + 0.3).all()
        assert table["depth_clipped"].all() and (table["depth_um"] == 360.0).all()
        phi = pellet.ground_truth()["porosity"]
        expect = ((1 - phi) * 210 + phi * 5) / 255
        assert table["electrolyte_mean"].tolist() == pytest.approx([expect] * 2, abs=0.03)
        means[material] = table["electrolyte_mean"].mean()
    assert means["LiI-AN"] > means["A-LPS"] + 0.3
    fig = plot_interfacial_intensity_maps(maps)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert fig.axes[0].get_ylabel() == "z from interface (µm)"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"voxel_um": -1.0}, "voxel_um"),
        ({"voxel_um": 1.0, "window_um": 0.1}, "window_um"),
        ({"voxel_um": 1.0, "view": "top"}, "view"),
        ({"voxel_um": 1.0, "depth_axis": "z"}, "depth_axis"),
        ({"voxel_um": 1.0, "mask": np.ones((2, 2), bool)}, "mask"),
        ({"voxel_um": 1.0, "electrolyte_side": "left"}, "electrolyte_side"),
    ],
)
def test_bad_arguments_name_the_fix(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        interfacial_intensity_map(_cell(), 30.0, **kwargs)


def test_bad_interfaces() -> None:
    with pytest.raises(ValueError, match="interface_z"):
        interfacial_intensity_map(_cell(), 500.0, voxel_um=1.0)
    with pytest.raises(ValueError, match="top < bottom"):
        interfacial_intensity_maps(_cell(), (90.0, 30.0), voxel_um=1.0)
    with pytest.raises(ValueError, match="empty"):
        plot_interfacial_intensity_maps([])


def test_constant_grey_128_gives_0_502() -> None:
    vol = np.full((60, 80, 80), 128, dtype=np.uint8)
    m = interfacial_intensity_map(vol, 30.0, voxel_um=2.0, window_um=40.0, depth_um=100.0)
    np.testing.assert_allclose(m.image, 128 / 255)
    assert round(float(m.stats()["mean"]), 3) == 0.502
