"""Tests of the porosity-factor maps (analysis/microstructure/maps.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from insitu.analysis.microstructure.maps import (
    plot_porosity_factor_maps,
    plot_porosity_factor_stats,
    porosity_factor,
    section_stats,
)
from insitu.simulators.pellet.model import PelletGeometry, VirtualPellet
from insitu.simulators.pellet.phases import Phase


def _pattern(porosity: float, n: int = 10) -> np.ndarray:
    """An n³ cube with exactly ``porosity`` pore voxels, spread evenly (fraction of n³)."""
    k = round(porosity * n**3)
    flat = np.zeros(n**3, dtype=bool)
    flat[np.linspace(0, n**3, k, endpoint=False).astype(int)] = True
    return flat.reshape(n, n, n)


def _halves(nb: tuple[int, int, int] = (2, 3, 4), n: int = 10) -> np.ndarray:
    """Cubes of porosity 0.2 for x < half, 0.4 for x ≥ half (n-voxel cubes, nb cubes)."""
    lo, hi = _pattern(0.2, n), _pattern(0.4, n)
    half = nb[2] // 2
    row = np.concatenate([lo] * half + [hi] * (nb[2] - half), axis=2)
    return np.tile(row, (nb[0], nb[1], 1))


class _Sliceable:
    """A z-sliceable array that records the largest slab read (like a zarr/h5py dataset)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.max_rows = data, data.shape, data.dtype, 0

    def __getitem__(self, key: slice) -> np.ndarray:
        assert isinstance(key, slice), "reads must be slabs of rows"
        out = self.data[key]
        self.max_rows = max(self.max_rows, out.shape[0])
        return out


# --- analytic cases --------------------------------------------------------------------------
def test_halves_give_known_porosity_factor() -> None:
    vol = _halves()
    pf = porosity_factor(vol, voxel_um=3.0, block_um=30.0)
    assert pf.shape == (2, 3, 4) and pf.block_voxels == 10 and pf.block_um == 30.0
    assert pf.phi0 == pytest.approx(0.3)
    np.testing.assert_allclose(pf.phi[..., :2], 0.2)
    np.testing.assert_allclose(pf.phi[..., 2:], 0.4)
    np.testing.assert_allclose(pf.d[..., :2], -1 / 3)
    np.testing.assert_allclose(pf.d[..., 2:], 1 / 3)
    assert pf.dropped.empty and not pf.partial.any()
    np.testing.assert_allclose(pf.coverage, 1.0)
    # In-plane sections (normal z): both halves in each, 12 cubes.
    t = pf.section_stats("in-plane")
    assert list(t.columns) == [
        "section",
        "orientation",
        "normal_axis",
        "position_um",
        "thickness_um",
        "mean",
        "median",
        "std",
        "min",
        "max",
        "n_blocks",
    ]
    assert len(t) == 2 and (t["n_blocks"] == 12).all()
    np.testing.assert_allclose(t["mean"], 0.0, atol=1e-12)
    np.testing.assert_allclose(t["median"], 0.0, atol=1e-12)
    np.testing.assert_allclose(t["std"], 1 / 3)
    np.testing.assert_allclose(t["min"], -1 / 3)
    np.testing.assert_allclose(t["max"], 1 / 3)
    np.testing.assert_allclose(t["position_um"], [15.0, 45.0])
    # Through-plane sections normal to x: one half each, constant d; normal to y: both halves.
    tx = pf.section_stats("through-plane", axis="x")
    np.testing.assert_allclose(tx["mean"], [-1 / 3, -1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(tx["std"], 0.0, atol=1e-12)
    assert (tx["n_blocks"] == 6).all()
    ty = section_stats(pf, "through-plane", axis="y")
    assert len(ty) == 3 and (ty["n_blocks"] == 8).all()
    maps = dict(pf.sections("through-plane", axis="y"))
    assert maps[0].shape == (2, 4)  # (z, x)
    assert dict(pf.sections("in-plane"))[1].shape == (3, 4)  # (y, x)
    frame = pf.to_frame()
    assert len(frame) == 24 and frame["d"].mean() == pytest.approx(0.0)


def test_remainder_dropped_is_recorded_and_feeds_phi0_only() -> None:
    vol = _halves((1, 2, 2))  # 10 × 20 × 20, porosity 0.2 | 0.4
    extra = np.ones((10, 20, 5), dtype=bool)  # a fully porous 5-voxel slab past the last cube
    vol = np.concatenate([vol, extra], axis=2)
    pf = porosity_factor(vol, voxel_um=2.0, block_um=20.0)
    assert pf.shape == (1, 2, 2)
    assert pf.dropped.to_dict("records") == [
        {"axis": "x", "start": 20, "stop": 25, "n_voxels": 5, "thickness_um": 10.0}
    ]
    # Φ₀ is the region's porosity, the dropped slab included; the cubes never see it.
    phi0 = (0.2 * 2000 + 0.4 * 2000 + 1000) / 5000
    assert pf.phi0 == pytest.approx(phi0)
    np.testing.assert_allclose(pf.phi[0, :, 0], 0.2)
    np.testing.assert_allclose(pf.d[0, :, 1], 0.4 / phi0 - 1)
    # Centred grid: the leftover is split between both ends.
    c = porosity_factor(vol, voxel_um=2.0, block_um=20.0, align="center")
    assert c.dropped[["axis", "start", "stop"]].values.tolist() == [["x", 0, 2], ["x", 22, 25]]
    assert c.edges[2].tolist() == [2, 12, 22]


def test_remainder_partial_is_not_padded_and_left_out_of_stats() -> None:
    vol = _halves((1, 2, 2))
    extra = np.zeros((10, 20, 5), dtype=bool)
    extra[:, :, :2] = True  # porosity 0.4 in the 5-voxel remainder
    vol = np.concatenate([vol, extra], axis=2)
    pf = porosity_factor(vol, voxel_um=2.0, block_um=20.0, remainder="partial")
    assert pf.shape == (1, 2, 3) and pf.dropped.empty
    assert pf.edges[2].tolist() == [0, 10, 20, 25]
    assert pf.partial[..., 2].all() and not pf.partial[..., :2].any()
    # Its own pore count over its own voxels: zero padding would have given 0.4 / 2 = 0.2.
    np.testing.assert_allclose(pf.phi[..., 2], 0.4)
    t = pf.section_stats("in-plane")
    assert t["n_blocks"].tolist() == [4]
    assert pf.section_stats("in-plane", include_partial=True)["n_blocks"].tolist() == [6]
    tx = pf.section_stats("through-plane", axis="x")
    assert tx["n_blocks"].tolist() == [2, 2, 0] and np.isnan(tx["mean"].iloc[2])
    assert tx["thickness_um"].tolist() == [20.0, 20.0, 10.0]


def test_rows_and_masks() -> None:
    rng = np.random.default_rng(1)
    vol = rng.random((40, 30, 30)) < 0.3
    # Continuous interface positions: rows whose centres lie between 4.6 and 35.2 → 5:35.
    a = porosity_factor(vol, voxel_um=1.0, block_um=10.0, rows=(4.6, 35.2))
    b = porosity_factor(vol[5:35], voxel_um=1.0, block_um=10.0)
    np.testing.assert_array_equal(a.phi, b.phi)
    assert a.edges[0].tolist() == [5, 15, 25, 35]
    # A 2-D cross-section mask equals the same mask repeated in 3-D.
    mask2 = np.zeros((30, 30), dtype=bool)
    mask2[:, :25] = True
    m2 = porosity_factor(vol, voxel_um=1.0, block_um=10.0, mask=mask2, min_coverage=0.5)
    m3 = porosity_factor(
        vol, voxel_um=1.0, block_um=10.0, mask=np.broadcast_to(mask2, vol.shape), min_coverage=0.5
    )
    np.testing.assert_array_equal(m2.phi, m3.phi)
    assert m2.phi0 == m3.phi0 == pytest.approx(vol[:, :, :25].mean())
    np.testing.assert_allclose(m2.coverage[..., 2], 0.5)
    np.testing.assert_allclose(
        m2.phi[..., 2], vol[:, :, 20:25].reshape(4, 10, 3, 10, 5).mean((1, 3, 4))
    )
    # Whole cubes only by default: the half-covered column is blank.
    full = porosity_factor(vol, voxel_um=1.0, block_um=10.0, mask=mask2)
    assert np.isnan(full.d[..., 2]).all() and np.isfinite(full.d[..., :2]).all()


def test_slabwise_equals_whole_volume_from_any_sliceable() -> None:
    rng = np.random.default_rng(2)
    vol = (rng.random((47, 33, 29)) < 0.25).astype(np.uint8)
    whole = porosity_factor(vol, voxel_um=1.0, block_um=6.0, chunk_rows=1000, remainder="partial")
    for chunk in (1, 4, 7):
        src = _Sliceable(vol)
        r = porosity_factor(src, voxel_um=1.0, block_um=6.0, chunk_rows=chunk, remainder="partial")
        assert src.max_rows <= chunk  # bounded memory: never more than chunk rows at once
        np.testing.assert_array_equal(r.phi, whole.phi)
        assert r.phi0 == whole.phi0
    z = zarr.create_array(store={}, shape=vol.shape, chunks=(8, 33, 29), dtype="uint8")
    z[:] = vol
    rz = porosity_factor(z, voxel_um=1.0, block_um=6.0, remainder="partial")
    np.testing.assert_array_equal(rz.phi, whole.phi)
    # Direct block means of the whole array agree.
    direct = vol[:42, :30, :24].reshape(7, 6, 5, 6, 4, 6).mean((1, 3, 5))
    np.testing.assert_allclose(whole.phi[:7, :5, :4], direct)


def test_float_volume_is_a_pore_fraction() -> None:
    """The grey-scale variant: per-voxel pore fractions are averaged, not binarised."""
    frac = np.full((10, 10, 20), 0.1)
    frac[:, :, 10:] = 0.3
    frac[0, 0, 0] = -0.05  # noise below 0 is kept (clipping would bias Φ up)
    pf = porosity_factor(frac, voxel_um=1.0, block_um=10.0)
    np.testing.assert_allclose(pf.phi[0, 0], [0.1 - 0.15 / 1000, 0.3])
    assert pf.phi0 == pytest.approx(frac.mean())
    binary = _halves((1, 1, 2))
    labels = binary.astype(np.uint8) * 3  # non-zero is pore, whatever the value
    np.testing.assert_array_equal(
        porosity_factor(labels, voxel_um=1.0, block_um=10.0).phi,
        porosity_factor(binary, voxel_um=1.0, block_um=10.0).phi,
    )
    np.testing.assert_allclose(
        porosity_factor(binary.astype(np.float32), voxel_um=1.0, block_um=10.0).d,
        porosity_factor(binary, voxel_um=1.0, block_um=10.0).d,
    )


# --- against the virtual pellet's truth ------------------------------------------------------
def _block_truth(pellet: VirtualPellet, pf, k: int = 4) -> np.ndarray:
    """The preset's local porosity field averaged over k³ points in each cube."""
    g = pellet.geometry
    v = g.voxel_m

    def points(axis: int, offset: float) -> np.ndarray:
        e = pf.edges[axis].astype(float)
        frac = (np.arange(k) + 0.5) / k
        return ((e[:-1, None] + frac * np.diff(e)[:, None]).ravel() - offset) * v

    z = points(0, 0.0)
    y = points(1, g.shape[1] / 2)
    x = points(2, g.shape[2] / 2)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    f = pellet.local_porosity_field(zz, yy, xx)
    nb = pf.shape
    return f.reshape(nb[0], k, nb[1], k, nb[2], k).mean((1, 3, 5))


# Measured r at 30 µm (1.5 µm voxels, 240 µm cube of electrolyte, 512 cubes):
# LiI-AN 0.996, LiI-AT 0.990, LPS:0.5LiI 0.973, A-LPS 0.805 (its large pores and weak
# heterogeneity, cv 0.10, leave the cube-to-cube spread mostly pore-sampling noise).
@pytest.mark.parametrize(
    ("material", "r_min"),
    [("LiI-AN", 0.9), ("LiI-AT", 0.9), ("LPS:0.5LiI", 0.9), ("A-LPS", 0.7)],
)
def test_porosity_factor_tracks_the_pellet_truth(material: str, r_min: float) -> None:
    n, vox = 176, 1.5e-6
    geometry = PelletGeometry(
        shape=(n, n, n),
        voxel_m=vox,
        pellet_radius_m=1e-3,  # wider than the grid: every column is electrolyte
        electrolyte_thickness_m=160 * vox,
        li_thickness_m=6 * vox,
    )
    pellet = VirtualPellet(material, geometry, seed=0)
    labels = pellet.labels()
    pf = porosity_factor(
        labels == Phase.PORE,
        voxel_um=1.5,
        block_um=30.0,
        rows=geometry.interfaces_rows,
        mask=pellet.inside,
    )
    assert pf.shape == (8, 8, 8)
    assert pf.dropped["axis"].tolist() == ["y", "x"]  # 176 = 8 × 20 + 16 columns left over
    assert pf.phi0 == pytest.approx(pellet.ground_truth()["porosity"], abs=1e-9)
    truth = _block_truth(pellet, pf)
    r = np.corrcoef(pf.phi.ravel(), truth.ravel())[0, 1]
    assert r >= r_min, f"{material}: r = {r:.3f}"
    # LiI-AN is the most heterogeneous relative to its mean: the widest spread of d.
    if material == "LiI-AN":
        assert np.nanstd(pf.d) > 0.3


# --- errors and plots ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"voxel_um": 0.0}, "voxel_um"),
        ({"voxel_um": 1.0, "block_um": 0.2}, "block_um"),
        ({"voxel_um": 1.0, "block_um": 50.0}, "smaller block_um"),
        ({"voxel_um": 1.0, "rows": (15, 5)}, "rows"),
        ({"voxel_um": 1.0, "mask": np.ones((3, 3), bool)}, "mask"),
        ({"voxel_um": 1.0, "remainder": "pad"}, "remainder"),
        ({"voxel_um": 1.0, "min_coverage": 0.0}, "min_coverage"),
    ],
)
def test_bad_arguments_name_the_fix(kwargs: dict, match: str) -> None:
    vol = np.ones((20, 20, 20), dtype=bool)
    with pytest.raises(ValueError, match=match):
        porosity_factor(vol, **kwargs)


def test_no_pores_or_not_3d() -> None:
    with pytest.raises(ValueError, match="Φ₀"):
        porosity_factor(np.zeros((10, 10, 10), bool), voxel_um=1.0, block_um=5.0)
    with pytest.raises(ValueError, match="3-D"):
        porosity_factor(np.zeros((10, 10), bool), voxel_um=1.0, block_um=5.0)
    with pytest.raises(ValueError, match="'y' or 'x'"):
        porosity_factor(_halves(), voxel_um=1.0, block_um=10.0).section_stats(axis="z")


def test_plots() -> None:
    pf = porosity_factor(_halves((3, 3, 4)), voxel_um=3.0, block_um=30.0)
    fig = plot_porosity_factor_maps(pf, orientation="through-plane", axis="y")
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 3 and len(fig.axes) == 4  # the 3 sections along y + a colourbar
    mesh = fig.axes[0].collections[0]
    assert isinstance(mesh.norm, TwoSlopeNorm) and mesh.norm.vcenter == 0.0
    assert mesh.norm.vmax == pytest.approx(1 / 3) and mesh.norm.vmin == pytest.approx(-1 / 3)
    assert fig.axes[0].get_xlabel() == "x (µm)" and fig.axes[0].get_ylabel() == "z (µm)"
    fig2 = plot_porosity_factor_maps(pf, orientation="in-plane", sections=[0, 2], vlim=0.5)
    assert fig2.axes[1].get_ylabel() == "y (µm)"
    with pytest.raises(ValueError, match="out of range"):
        plot_porosity_factor_maps(pf, sections=[5])
    ax = plot_porosity_factor_stats(pf.section_stats("through-plane", axis="x"))
    assert ax.get_ylabel() == "porosity factor d"
    with pytest.raises(ValueError, match="section_stats"):
        plot_porosity_factor_stats(pd.DataFrame({"mean": [0.0]}))


# --- the analytic cases, stated exactly -----------------------------------------------
def test_uniform_volume_has_zero_porosity_factor_everywhere() -> None:
    rng = np.random.default_rng(0)
    # The same 10 × 10 × 10 pattern (porosity 0.37) in every 30 µm cube.
    cube = rng.random((10, 10, 10)) < 0.37
    pf = porosity_factor(np.tile(cube, (2, 3, 4)), voxel_um=3.0, block_um=30.0)
    np.testing.assert_allclose(pf.d, 0.0, atol=1e-12)
    assert pf.phi0 == pytest.approx(cube.mean())


def test_empty_and_full_halves_give_minus_and_plus_one() -> None:
    vol = np.zeros((20, 30, 40), dtype=bool)
    vol[..., 20:] = True  # Φ = 0 on one half, 1 on the other: Φ₀ = 0.5
    pf = porosity_factor(vol, voxel_um=3.0, block_um=30.0)
    np.testing.assert_array_equal(pf.d[..., :2], -1.0)
    np.testing.assert_array_equal(pf.d[..., 2:], 1.0)
