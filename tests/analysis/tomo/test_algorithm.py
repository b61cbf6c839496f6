"""Fourier-gridding FBP against phantoms whose sinograms are computed exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from phantoms import disc_image, disc_sinogram, gaussian_image, gaussian_sinogram, inner

from insitu.analysis.tomo.recon.algorithm import (
    FILTERS,
    MEASURE_MIN_ROWS,
    GridrecPlan,
    angle_weights,
    gridrec,
    ramp_filter,
)


def nrmse(rec, truth, mask):
    return float(np.sqrt(np.mean((rec[mask] - truth[mask]) ** 2)) / np.ptp(truth))


BLOBS = [(0, 0, 25, 1.0), (40, -30, 6, 0.5), (-50, 35, 4, 0.8), (60, 50, 3, 0.6)]


@pytest.mark.parametrize("offset", [0.0, 17.25, -40.5])
def test_gaussian_phantom_on_the_true_scale_with_off_centre_axis(offset) -> None:
    n, n_angles = 256, 360
    theta = np.arange(n_angles) * math.pi / n_angles
    center = (n - 1) / 2 + offset
    # The object is centred on the rotation axis; the detector sees it off-centre.
    rec = gridrec(
        gaussian_sinogram(theta, n, center, BLOBS), theta, center=center, filter_name="ramp"
    )
    truth = gaussian_image(n, BLOBS)
    mask = inner(n, 0.3)
    assert nrmse(rec, truth, mask) < 1e-3
    # No hidden scale factor: the peak and the mean come back on the true scale.
    assert rec.max() == pytest.approx(truth.max(), rel=5e-3)
    assert rec[mask].mean() == pytest.approx(truth[mask].mean(), rel=5e-3)


def test_disc_phantom_within_one_percent() -> None:
    n, n_angles = 512, 600
    theta = np.arange(n_angles) * math.pi / n_angles
    discs = [(0, 0, 200, 1.0), (60, -40, 50, -0.4), (-80, 70, 30, 0.5), (100, 90, 8, 0.7)]
    rec = gridrec(disc_sinogram(theta, n, (n - 1) / 2, discs), theta, filter_name="shepp")
    truth = disc_image(n, discs)
    assert nrmse(rec, truth, inner(n)) < 0.01


@pytest.mark.parametrize("pad_mode", ["edge", "zero"])
def test_flat_region_keeps_its_value(pad_mode) -> None:
    """Correct DC of the ramp: the inside of a wide uniform disc reconstructs to its value.

    (With |ω| sampled, whose DC term is 0, the grey values shift by a constant.)
    """
    n, n_angles = 256, 300
    theta = np.arange(n_angles) * math.pi / n_angles
    sino = disc_sinogram(theta, n, (n - 1) / 2, [(0, 0, 0.47 * n, 0.25)])
    rec = gridrec(sino, theta, pad_mode=pad_mode)
    mask = inner(n, 0.4)
    assert rec[mask].mean() == pytest.approx(0.25, rel=2e-3)
    assert rec[mask].std() < 0.01 * 0.25


@pytest.mark.parametrize("offset", [0.0, 7.5])
def test_local_tomography_of_a_wide_cylinder_keeps_the_grey_scale(offset) -> None:
    """A window of 96 columns on a disc of radius 2143 pixels (the 3 mm pellet at 0.7 µm):
    padding along the cylinder's chord gives the absolute grey; edge padding does not, at
    any fixed length (15× the truth at 2×, 0.89× at 32×)."""
    n, n_angles, radius = 96, 300, 2143.0
    theta = np.arange(n_angles) * math.pi / n_angles
    center = (n - 1) / 2 + offset
    discs = [(0, 0, radius, 0.25), (10, -5, 12, -0.25), (-20, 15, 6, 0.2)]
    sino = disc_sinogram(theta, n, center, discs)
    truth, mask = disc_image(n, discs), inner(n, 0.4)
    rec = gridrec(sino, theta, center=center, sample_radius=radius)
    assert rec[mask].mean() == pytest.approx(truth[mask].mean(), rel=1e-3)
    assert nrmse(rec, truth, mask) < 0.02
    for oversampling, ratio in ((2, 15.3), (32, 0.89)):
        edge = gridrec(sino, theta, center=center, oversampling=oversampling)
        assert edge[mask].mean() / truth[mask].mean() == pytest.approx(ratio, abs=0.05)


def test_sample_radius_is_checked() -> None:
    with pytest.raises(ValueError, match="sample_radius must be positive"):
        GridrecPlan(np.linspace(0, np.pi, 10, endpoint=False), 64, sample_radius=-3.0)


def test_pairs_batches_and_single_sinogram_agree() -> None:
    n, n_angles = 128, 180
    theta = np.arange(n_angles) * math.pi / n_angles
    rng = np.random.default_rng(1)
    rows = [gaussian_sinogram(theta, n, 63.5, [(rng.normal(0, 10), 0, 8, 1.0)]) for _ in range(5)]
    stack = np.stack(rows, axis=1)  # (angles, rows, det)
    plan = GridrecPlan(theta, n)
    together = plan.reconstruct(stack, batch=2)
    one_by_one = np.stack([plan.reconstruct(r) for r in rows])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5 * np.abs(one_by_one).max())
    assert together.dtype == np.float32 and together.shape == (5, n, n)


def test_slices_are_written_into_out_when_given() -> None:
    n, n_angles = 96, 120
    theta = np.arange(n_angles) * math.pi / n_angles
    stack = np.stack(
        [gaussian_sinogram(theta, n, 47.5, [(3.0 * k, 0, 6, 1.0)]) for k in range(3)], axis=1
    )
    plan = GridrecPlan(theta, n)
    fresh = plan.reconstruct(stack)
    out = np.full((3, plan.size, plan.size), np.nan, dtype=np.float32)
    assert plan.reconstruct(stack, out=out) is out
    np.testing.assert_array_equal(out, fresh)
    for bad in (np.empty((2, plan.size, plan.size), np.float32), out.astype(np.float64)):
        with pytest.raises(ValueError, match="out must be float32 of shape"):
            plan.reconstruct(stack, out=bad)


def test_kept_buffers_change_no_slice_across_calls_and_threads() -> None:
    """A plan keeps its work arrays between calls: calls of other sizes (more rows, fewer,
    an odd count, one sinogram) and two threads sharing the plan each get exactly what a
    fresh plan gives (within float32 rounding: finufft's threads and the arrays'
    alignment change the order of sums, so two fresh plans differ by ~1e-7 too)."""
    import threading

    def same(a: np.ndarray, b: np.ndarray) -> None:
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max())

    n, n_angles = 128, 120
    theta = np.arange(n_angles) * math.pi / n_angles
    rng = np.random.default_rng(7)
    stacks = [rng.normal(size=(n_angles, rows, n)).astype(np.float32) for rows in (6, 9, 1, 4)]
    fresh = [GridrecPlan(theta, n, support=50.0).reconstruct(s, batch=2) for s in stacks]
    shared = GridrecPlan(theta, n, support=50.0)
    for stack, want in zip(stacks, fresh, strict=True):
        same(shared.reconstruct(stack, batch=2), want)
    same(shared.reconstruct(stacks[2][:, 0, :]), fresh[2][0])

    got: dict[int, np.ndarray] = {}
    start = threading.Barrier(2)

    def run(i: int) -> None:
        start.wait()
        for _ in range(3):
            got[i] = shared.reconstruct(stacks[i], batch=2)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    same(got[0], fresh[0])
    same(got[1], fresh[1])
    shared.release_buffers()
    same(shared.reconstruct(stacks[3], batch=2), fresh[3])


def test_a_window_that_wraps_around_the_padded_row_is_cut_the_same() -> None:
    """The cut window is a slice of the padded row when it fits and a wrapped gather when
    the axis lies near the row's end; both give the slice that a plain gather gives."""
    n, n_angles = 128, 90
    theta = np.arange(n_angles) * math.pi / n_angles
    sino = np.random.default_rng(3).normal(size=(n_angles, 3, n)).astype(np.float32)
    for center in (63.5, -100.0):  # the second puts the window across the row's start
        plan = GridrecPlan(theta, n, center=center, support=40.0)
        assert plan._windowed
        wraps = plan._win_slice is None
        assert wraps == (center < 0)
        sliced = plan.reconstruct(sino)
        plan._win_slice = None  # force the gather
        np.testing.assert_array_equal(plan.reconstruct(sino), sliced)


def test_uneven_angles_are_weighted() -> None:
    n = 256
    rng = np.random.default_rng(3)
    theta = np.sort(rng.uniform(0, math.pi, 500))
    rec = gridrec(gaussian_sinogram(theta, n, 127.5, BLOBS), theta, filter_name="ramp")
    assert nrmse(rec, gaussian_image(n, BLOBS), inner(n, 0.3)) < 5e-3
    w = angle_weights(np.arange(10) * math.pi / 10)
    np.testing.assert_allclose(w, math.pi / 10)
    # Angles given over 360° fold onto 180°: each pair shares the weight of its position.
    w360 = angle_weights(np.arange(20) * math.pi / 10)
    np.testing.assert_allclose(w360.sum(), math.pi)


def test_matches_the_simulators_projector_conventions() -> None:
    """A slice projected by the simulator's Projector comes back in place (orientation, axis)."""
    from insitu.simulators.imaging.xray import Projector

    n, n_angles = 128, 240
    theta = np.arange(n_angles) * math.pi / n_angles
    truth = disc_image(n, [(-20, 10, 30, 1.0), (25, -30, 12, 2.0)])
    offset = 6.5
    proj = Projector((n, n), theta, voxel_size_m=1.0, center_offset_px=offset)
    sino = proj.project(truth[None])[:, 0, :]
    rec = gridrec(sino, theta, center=(n - 1) / 2 + offset)
    assert nrmse(rec, truth, inner(n, 0.4)) < 0.03
    # Mirrored or transposed orientation would fail this by far.
    assert np.corrcoef(rec[inner(n, 0.4)], truth[inner(n, 0.4)])[0, 1] > 0.98


def test_windows_trade_resolution_for_noise() -> None:
    n, n_angles = 128, 180
    theta = np.arange(n_angles) * math.pi / n_angles
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (n_angles, n))
    stds = {f: float(gridrec(noise, theta, filter_name=f)[inner(n, 0.3)].std()) for f in FILTERS}
    assert stds["hann"] < stds["shepp"] < stds["ramp"]
    assert stds["parzen"] < stds["ramp"] and stds["butterworth"] < stds["ramp"]
    # The ramp filter is |ω| in the band, with a positive DC term (not zero).
    filt = ramp_filter(256, "ramp")
    freq = np.fft.fftfreq(256)
    np.testing.assert_allclose(filt[5:100], np.abs(freq[5:100]), rtol=0.02)
    assert filt[0] > 0


def test_clear_errors() -> None:
    theta = np.linspace(0, math.pi, 10, endpoint=False)
    with pytest.raises(ValueError, match="n_angles=10"):
        gridrec(np.zeros((9, 4, 32)), theta)
    with pytest.raises(ValueError, match="filter_name"):
        gridrec(np.zeros((10, 32)), theta, filter_name="gauss")
    with pytest.raises(ValueError, match="theta is empty"):
        GridrecPlan([], 32)
    with pytest.raises(ValueError, match="center"):
        GridrecPlan(theta, 32, center=500.0)


@pytest.mark.parametrize("offset", [0.0, -21.5])
def test_rows_cut_to_the_masked_circle_give_the_same_slice(offset) -> None:
    """Gridding only the filtered rows' samples near the axis changes nothing inside the mask."""
    n, n_angles = 256, 300
    theta = np.arange(n_angles) * math.pi / n_angles
    center = (n - 1) / 2 + offset
    discs = [(0, 0, 100, 1.0), (30, -20, 25, -0.4), (-40, 35, 15, 0.5)]
    sino = disc_sinogram(theta, n, center, discs)
    whole = GridrecPlan(theta, n, center=center, support=float(n))  # too wide to cut
    cut = GridrecPlan(theta, n, center=center, support=n / 2)
    assert not whole._windowed and cut._windowed and cut.n_grid < whole.n_grid
    a, b = whole.reconstruct(sino), cut.reconstruct(sino)
    mask = inner(n, 0.45)
    # Within 0.35 % of the range (1.5): the ringing of the cut ends, next to eps = 1e-3.
    assert np.abs(a[mask] - b[mask]).max() < 5e-3
    assert nrmse(b, disc_image(n, discs), mask) < 0.03  # 256 px: disc edges dominate


def test_fftw_measures_only_for_large_slices_and_many_rows() -> None:
    theta = np.linspace(0, np.pi, 32, endpoint=False)
    assert GridrecPlan(theta, 1024).measure_fft  # rows unknown: planned for a whole scan
    assert GridrecPlan(theta, 1024, rows=MEASURE_MIN_ROWS).measure_fft
    assert not GridrecPlan(theta, 1024, rows=2).measure_fft  # a preview
    assert not GridrecPlan(theta, 512, rows=10_000).measure_fft  # small slices never


def test_estimated_and_measured_plans_give_the_same_slices() -> None:
    """The plan's FFTW flags change its speed, never its answer."""
    n = 1024
    theta = np.linspace(0, np.pi, 90, endpoint=False)
    discs = [(0, 0, 400, 1.0), (120, -90, 60, -0.4)]
    sino = disc_sinogram(theta, n, (n - 1) / 2, discs).astype(np.float32)[:, None, :]
    estimated = GridrecPlan(theta, n, rows=1).reconstruct(sino)
    measured = GridrecPlan(theta, n, rows=MEASURE_MIN_ROWS).reconstruct(sino)
    np.testing.assert_allclose(estimated, measured, rtol=0, atol=1e-5 * np.abs(measured).max())


def test_the_pipelines_backend_plans_for_the_rows_asked() -> None:
    from insitu.analysis.tomo.recon.backends import make_backend

    theta = np.linspace(0, np.pi, 32, endpoint=False)
    preview = make_backend("insitu", theta, 2048, center=1023.5, rows=2)
    assert not preview._plan.measure_fft
    assert make_backend("insitu", theta, 2048, center=1023.5, rows=1143)._plan.measure_fft
