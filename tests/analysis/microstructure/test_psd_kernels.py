"""The local thickness's painting and clean-up kernels against the ones they replaced.

* ``_paint`` skips the balls of ``D = 1`` (pore voxels start at 1) and shares stripes of
  lines (y) between the threads: on every pore voxel (the only ones read afterwards) it equals
  the earlier kernel, which painted every ridge ball in stripes of rows (z).
* ``_clean_up_rows`` sums each surface voxel's interior neighbours from per-line sums of the
  nine lines around it: it equals the earlier plane-sum formulation bit for bit (and the
  voxel-by-voxel sum between the two, kept in test_pores_passes.py).
* ``pore_analysis(pores_out=...)`` writes the pore phase it read, with and without a sample
  of the rows.

The earlier kernels are kept here, as they were, as the reference.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from scipy import ndimage as ndi

from insitu.analysis.microstructure.pores import (
    _clean_up_rows,
    _containment_template,
    _edt_sq,
    _fill_rows,
    _interior,
    _interior_values,
    _is_ridge,
    _isqrt_py,
    _isqrt_table,
    _paint,
    _thickness_lut,
    local_thickness,
    pore_analysis,
)


# --- the reference: the kernels as they were ----------------------------------------------
@numba.njit(cache=True)
def _paint_rows_ref(d, t, sq, out, o0, z0, z1):
    _, ny, nx = d.shape
    o1 = o0 + out.shape[0]
    for z in range(z0, z1):
        for y in range(ny):
            for x in range(nx):
                dd = d[z, y, x]
                if dd <= 0 or not _is_ridge(d, t, z, y, x):
                    continue
                r = sq[dd]
                for k in range(max(o0, z - r), min(o1, z + r + 1)):
                    rk = (k - z) * (k - z)
                    for j in range(max(0, y - r), min(ny, y + r + 1)):
                        rjk = rk + (j - y) * (j - y)
                        if rjk > dd:
                            continue
                        w = sq[dd - rjk]
                        row = out[k - o0, j]
                        for i in range(max(0, x - w), min(nx, x + w + 1)):
                            row[i] = max(row[i], dd)


@numba.njit(parallel=True, cache=True)
def _paint_ref(d, t, rmax, c0, c1, o0, out):
    for k in numba.prange(out.shape[0]):
        out[k] = 0
    sq = _isqrt_table(max(rmax * rmax, 1))
    width = 2 * rmax + 2
    nstripes = (c1 - c0 + width - 1) // width
    for parity in range(2):
        nsel = (nstripes - parity + 1) // 2
        for s in numba.prange(nsel):
            a = c0 + (2 * s + parity) * width
            _paint_rows_ref(d, t, sq, out, o0, a, min(c1, a + width))
    return out


@numba.njit(parallel=True, cache=True)
def _surface_means_ref(mask, inner, s2, c2, slots, lt):
    ny, nx = mask.shape
    for y in numba.prange(ny):
        for x in range(nx):
            if not mask[y, x] or inner[y, x]:
                continue
            acc = 0.0
            n = 0.0
            for j in slots:
                acc += s2[j, y, x]
                n += c2[j, y, x]
            if n > 0:
                lt[y, x] = acc / n


@numba.njit(parallel=True, cache=True)
def _plane_sums_ref(inner, painted, lut, s2, c2, h, hc):
    ny, nx = inner.shape
    for y in numba.prange(ny):
        v = np.empty(nx, dtype=np.float64)
        c = np.empty(nx, dtype=np.float32)
        for x in range(nx):
            f = inner[y, x]
            v[x] = lut[painted[y, x]] * f
            c[x] = f
        for x in range(nx):
            h[y, x] = v[x]
            hc[y, x] = c[x]
        for x in range(1, nx):
            h[y, x] += v[x - 1]
            hc[y, x] += c[x - 1]
        for x in range(nx - 1):
            h[y, x] += v[x + 1]
            hc[y, x] += c[x + 1]
    for y in numba.prange(ny):
        for x in range(nx):
            s2[y, x] = h[y, x]
            c2[y, x] = hc[y, x]
        if y > 0:
            for x in range(nx):
                s2[y, x] += h[y - 1, x]
                c2[y, x] += hc[y - 1, x]
        if y < ny - 1:
            for x in range(nx):
                s2[y, x] += h[y + 1, x]
                c2[y, x] += hc[y + 1, x]


def _clean_up_rows_ref(mask, painted, p0, inner, e0, z0, z1, lut, lt):
    plane = mask.shape[1:]
    s2, c2 = np.empty((3, *plane)), np.empty((3, *plane), dtype=np.float32)
    h, hc = np.empty(plane), np.empty(plane, dtype=np.float32)
    e1 = e0 + inner.shape[0]
    for j in range(max(e0, z0 - 1), min(e1, z0 + 1)):
        _plane_sums_ref(inner[j - e0], painted[j - p0], lut, s2[j % 3], c2[j % 3], h, hc)
    for z in range(z0, z1):
        if z + 1 < e1:
            k = z + 1
            _plane_sums_ref(inner[k - e0], painted[k - p0], lut, s2[k % 3], c2[k % 3], h, hc)
        slots = np.array([j % 3 for j in range(max(e0, z - 1), min(e1, z + 2))])
        _surface_means_ref(mask[z], inner[z - e0], s2, c2, slots, lt[z - z0])


# --- the tests ----------------------------------------------------------------------------
def random_pores(shape: tuple[int, int, int], sigma: float, level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > level * field.std()


CASES = [
    # shape, sigma, level (in field σ), seed: small pores (mostly D = 1, 2), the benchmark's
    # (σ 2, 0.84 σ), large percolating pores, and a thin slab shorter than a ball.
    ((24, 33, 41), 1.0, 0.5, 0),
    ((30, 40, 50), 2.0, 0.84, 1),
    ((28, 36, 44), 3.0, 0.0, 2),
    ((5, 60, 70), 2.5, 0.2, 3),
]


def _painting_inputs(pores: np.ndarray, a: int, b: int):
    d = _edt_sq(pores)
    dmax = int(d.max())
    t = _containment_template(dmax)
    rmax = _isqrt_py(dmax) + 1
    nz = pores.shape[0]
    o0, o1 = max(0, a - 1), min(nz, b + 1)
    return d, t, rmax, o0, o1, dmax


@pytest.mark.parametrize(("shape", "sigma", "level", "seed"), CASES)
@pytest.mark.parametrize("core", ["all", "middle"])
def test_paint_equals_the_earlier_kernel_on_pore_voxels(shape, sigma, level, seed, core) -> None:
    pores = random_pores(shape, sigma, level, seed)
    nz = shape[0]
    a, b = (0, nz) if core == "all" else (nz // 3, max(nz // 3 + 1, 2 * nz // 3))
    d, t, rmax, o0, o1, _ = _painting_inputs(pores, a, b)
    c0, c1 = max(0, o0 - rmax), min(nz, o1 + rmax)
    new = _paint(d, t, rmax, c0, c1, o0, np.full((o1 - o0, *shape[1:]), -7, np.int32))
    ref = _paint_ref(d, t, rmax, c0, c1, o0, np.empty((o1 - o0, *shape[1:]), np.int32))
    on_pores = pores[o0:o1]
    assert np.array_equal(new[on_pores], ref[on_pores])
    # Off the pores the new painting is never above the full one (and never read).
    assert np.all(new[~on_pores] <= ref[~on_pores])
    # The skipped balls mattered on the pores: some pore voxels hold exactly 1.
    assert (ref[on_pores] == 1).any() == (new[on_pores] == 1).any()


@pytest.mark.parametrize(("shape", "sigma", "level", "seed"), CASES)
@pytest.mark.parametrize("voxel_um", [1.0, 0.7, 3.1])
def test_clean_up_equals_the_plane_sums(shape, sigma, level, seed, voxel_um) -> None:
    pores = random_pores(shape, sigma, level, seed)
    nz = shape[0]
    a, b = nz // 4, max(nz // 4 + 1, 3 * nz // 4)
    d, t, rmax, o0, o1, dmax = _painting_inputs(pores, a, b)
    buffer = np.empty((o1 - o0, *shape[1:]), np.int32)
    painted = _paint(d, t, rmax, max(0, o0 - rmax), min(nz, o1 + rmax), o0, buffer)
    lut = _thickness_lut(dmax, voxel_um)
    lt = np.empty((b - a, *shape[1:]), dtype=np.float32)
    _fill_rows(pores, painted, o0, a, b, lut, lt)
    e0, e1 = max(0, a - 1), min(nz, b + 1)
    m0, m1 = max(0, e0 - 1), min(nz, e1 + 1)
    k = m1 - m0
    scratch = np.empty((2 * k, *shape[1:]), dtype=bool)
    inner_rows = np.empty((e1 - e0, *shape[1:]), bool)
    inner = _interior(pores, e0, e1, scratch[:k], scratch[k:], inner_rows)
    ref = lt.copy()
    _clean_up_rows_ref(pores, painted, o0, inner, e0, a, b, lut, ref)
    assert not np.array_equal(ref, lt)  # the clean-up changed something
    # The interior voxels' thickness, written over the painting's own memory as the pass
    # does, and then summed by lines in any number of runs of lines.
    values = painted.view(np.float32)
    _interior_values(painted, o0, inner, e0, lut, values)
    for blocks in (1, 3, 17, 10 * (b - a) * shape[1]):
        new = lt.copy()
        _clean_up_rows(pores, values, o0, inner, e0, a, b, new, blocks)
        assert np.array_equal(new.view(np.uint32), ref.view(np.uint32))


def test_local_thickness_is_unchanged_on_a_known_case() -> None:
    """A ball of radius 4 in a slab of half-thickness 2: ImageJ's values, with the clean-up."""
    pores = np.zeros((21, 21, 40), dtype=bool)
    o = np.arange(21) - 10
    pores[:, :, :21] = (o[:, None, None] ** 2 + o[None, :, None] ** 2 + o[None, None, :] ** 2) <= 16
    pores[8:13, 2:19, 25:38] = True  # a 5-voxel slab: D = 9 in its middle plane
    lt = local_thickness(pores, voxel_um=1.0, clean_up=False)
    assert np.allclose(np.unique(lt[:, :, :21][pores[:, :, :21]]), 2 * np.sqrt(17.0))
    assert lt[10, 10, 31] == pytest.approx(2 * np.sqrt(9.0))


def test_pores_out_is_the_pore_phase_with_and_without_a_sample() -> None:
    rng = np.random.default_rng(5)
    field = ndi.gaussian_filter(rng.standard_normal((300, 24, 28)), 1.5)
    grey = np.where(field > 0.5 * field.std(), 40, 200).astype(np.uint8)
    mask = np.ones((24, 28), dtype=bool)
    mask[:3] = False
    rows = (7, 290)
    expected = (grey[rows[0] : rows[1]] < 100) & mask
    for fraction in (None, 0.3):
        got = np.ones_like(expected)  # every voxel must be written
        result = pore_analysis(
            grey, 100.0, voxel_um=1.0, mask=mask, rows=rows, psd_fraction=fraction, pores_out=got
        )
        assert np.array_equal(got, expected)
        assert result.n_pore == int(expected.sum())
    with pytest.raises(ValueError, match="pores_out must have shape"):
        pore_analysis(grey, 100.0, voxel_um=1.0, rows=rows, pores_out=np.zeros((3, 24, 28), bool))
