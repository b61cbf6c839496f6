"""Tests of the X-ray projector and camera model (fast)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from insitu.simulators.imaging.detector import fresnel_intensity
from insitu.simulators.imaging.xray import (
    Detector,
    Projector,
    annulus_chord_m,
    attenuation_coefficients,
    label_table,
    refractive_decrements,
    scan_frames,
    simulate_frames,
)
from insitu.simulators.materials import MATERIALS
from insitu.simulators.pellet.phases import Phase

VOXEL = 1.0e-6


def _disc(n: int, radius_px: float, value: float, supersample: int = 8) -> np.ndarray:
    """A disc centred on the slice, its edge voxels weighted by their covered fraction."""
    centre = (n - 1) / 2.0
    yy, xx = np.mgrid[:n, :n] - centre
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    img = np.zeros((n, n))
    for a in sub:
        for b in sub:
            img += (yy + a) ** 2 + (xx + b) ** 2 <= radius_px**2
    return img / supersample**2 * value


def _chord_pixel_avg(u_px: np.ndarray, radius_px: float) -> np.ndarray:
    """Chord 2√(R² − u²) (voxels) averaged over the detector pixel's width."""
    t = (np.arange(64) + 0.5) / 64 - 0.5
    return np.mean([2 * np.sqrt(np.clip(radius_px**2 - (u_px + a) ** 2, 0, None)) for a in t], 0)


# --------------------------------------------------------------------------- materials


def test_attenuation_values_sane():
    lps = attenuation_coefficients("A-LPS")
    lii = attenuation_coefficients("LiI-AN")
    assert set(lps) == set(Phase)
    # Li is nearly transparent at 25 keV; the electrolyte is not; iodine attenuates strongly.
    assert lps[Phase.LITHIUM] < 0.05 * lps[Phase.ELECTROLYTE]
    assert lii[Phase.ELECTROLYTE] > 1.5 * lps[Phase.ELECTROLYTE]
    assert 100 < lps[Phase.ELECTROLYTE] < 3000  # 1/m: a 3 mm pellet transmits a few %–20 %
    assert lps[Phase.PORE] < 2.0 and lps[Phase.PORE] == lps[Phase.CRACK]
    assert lps[Phase.CRACK_LITHIUM] == lps[Phase.LITHIUM]
    # Lower energy → more attenuation.
    assert attenuation_coefficients("A-LPS", 20.0)[Phase.ELECTROLYTE] > lps[Phase.ELECTROLYTE]


def test_refractive_decrements_sane():
    delta = refractive_decrements("A-LPS")
    assert 1e-7 < delta[Phase.ELECTROLYTE] < 2e-6
    assert 0 < delta[Phase.LITHIUM] < delta[Phase.ELECTROLYTE]
    assert delta[Phase.PORE] < 1e-8


def test_a_preset_or_its_name_give_the_same_coefficients():
    preset = MATERIALS["LiI-AN"]
    assert attenuation_coefficients(preset) == attenuation_coefficients("lii-an")
    custom = dataclasses.replace(preset, name="LiI-XX")
    with pytest.raises(ValueError, match="add its formula and density"):
        attenuation_coefficients(custom)


def test_unknown_material_and_energy_raise():
    with pytest.raises(ValueError, match="unknown material"):
        attenuation_coefficients("LPSCl")
    with pytest.raises(ValueError, match="keV"):
        attenuation_coefficients("A-LPS", 25000.0)


# --------------------------------------------------------------------------- projector


@pytest.mark.parametrize(("n", "offset"), [(128, 0.0), (129, 3.3), (96, -7.5)])
def test_cylinder_line_integrals_analytic(n, offset):
    radius, mu = 0.4 * n, 500.0
    angles = np.linspace(0, np.pi, 60, endpoint=False)
    projector = Projector((n, n), angles, voxel_size_m=VOXEL, center_offset_px=offset)
    slab = np.stack([_disc(n, radius, mu)] * 3)
    p = projector.project(slab)
    assert p.shape == (60, 3, n) and p.dtype == np.float32
    u = projector.u_px
    exact = _chord_pixel_avg(u, radius) * mu * VOXEL
    inside = np.abs(u) < radius - 4
    rel = np.abs(p[:, :, inside] - exact[inside]) / exact[inside]
    assert rel.max() < 0.01
    assert np.abs(p[:, :, np.abs(u) < radius / 2] - exact[np.abs(u) < radius / 2]).max() < (
        0.003 * exact.max()
    )
    # Nothing but ringing tails outside the disc.
    assert np.abs(p[:, :, np.abs(u) > radius + 4]).max() < 0.003 * exact.max()


def test_off_centre_object_follows_sinusoid_and_axis_offset():
    n = 64
    img = np.zeros((n, n))
    x0, y0 = 12, -7  # voxels from the centre, along x (columns) and y (rows)
    img[round((n - 1) / 2 + y0 + 0.5), round((n - 1) / 2 + x0 + 0.5)] = 1.0
    angles = np.linspace(0, np.pi, 16, endpoint=False)
    for offset in (0.0, 5.0):
        projector = Projector((n, n), angles, voxel_size_m=VOXEL, center_offset_px=offset)
        p = projector.project(img)[:, 0, :]
        centroid = (p * projector.u_px).sum(1) / p.sum(1)
        xc = np.round((n - 1) / 2 + x0 + 0.5) - (n - 1) / 2
        yc = np.round((n - 1) / 2 + y0 + 0.5) - (n - 1) / 2
        np.testing.assert_allclose(centroid, xc * np.cos(angles) + yc * np.sin(angles), atol=0.1)
        # The integral of each projection is the slice's integral (mass conservation).
        np.testing.assert_allclose(p.sum(1), VOXEL, rtol=5e-3)
    # An integer axis offset shifts the detector image by that many columns.
    a = Projector((n, n), angles, voxel_size_m=VOXEL).project(img)[:, 0]
    b = Projector((n, n), angles, voxel_size_m=VOXEL, center_offset_px=5).project(img)[:, 0]
    np.testing.assert_allclose(b[:, 5:], a[:, :-5], atol=1e-4 * VOXEL)


def test_outer_annulus_chord():
    n, mu_out = 64, 800.0
    r_out = 60 * VOXEL
    angles = np.array([0.0, 1.0])
    projector = Projector(
        (n, n), angles, voxel_size_m=VOXEL, n_det=160, outer_radius_m=r_out, outer_mu=mu_out
    )
    u_m = projector.u_px * VOXEL
    # Empty grid: only the analytic annulus.
    p = projector.project(np.zeros((1, n, n)))
    expected = mu_out * annulus_chord_m(u_m, n / 2 * VOXEL, r_out)
    np.testing.assert_allclose(p[0, 0], expected, rtol=1e-5, atol=1e-7)
    assert expected[np.argmin(np.abs(u_m))] == pytest.approx(
        mu_out * 2 * (r_out - n / 2 * VOXEL), rel=1e-4
    )
    # Grid filled with the same material (corners too: they are masked): the full chord.
    full = projector.project(np.full((1, n, n), mu_out))
    chord = 2 * np.sqrt(np.clip(r_out**2 - u_m**2, 0, None)) * mu_out
    away = np.abs(np.abs(projector.u_px) - n / 2) > 4
    rel = np.abs(full[:, 0, away] - chord[away]) / chord.max()
    assert rel.max() < 0.01
    with pytest.raises(ValueError, match="inscribed"):
        Projector((n, n), angles, voxel_size_m=VOXEL, outer_radius_m=10 * VOXEL)


def test_project_labels_and_bad_labels():
    mu = attenuation_coefficients("A-LPS")
    table = label_table(mu)
    labels = np.full((2, 32, 32), Phase.ELECTROLYTE, dtype=np.uint8)
    projector = Projector((32, 32), [0.0], voxel_size_m=VOXEL)
    p = projector.project_labels(labels, table)
    assert p[0, 0, 16] == pytest.approx(32 * VOXEL * mu[Phase.ELECTROLYTE], rel=0.01)
    labels[0, 3, 3] = 9
    with pytest.raises(ValueError, match=r"labels \[9\]"):
        projector.project_labels(labels, table)
    with pytest.raises(ValueError, match="uint8"):
        projector.project_labels(labels.astype(np.int32), table)


# --------------------------------------------------------------------------- detector


def _flat_corrected(proj, flats, darks):
    dark = darks.mean(0)
    return (proj.astype(float) - dark) / (flats.mean(0) - dark)


def test_beer_lambert_and_frame_ordering():
    length = 0.8
    line = np.full((20, 8, 40), length)
    proj, flats, darks = simulate_frames(line, seed=1, ring_defects=[], n_flats=20, n_darks=20)
    assert proj.dtype == flats.dtype == darks.dtype == np.uint16
    assert proj.shape == (20, 8, 40) and flats.shape == (20, 8, 40) and darks.shape == (20, 8, 40)
    t = _flat_corrected(proj, flats, darks)
    # Mean of 6400 pixels with ≈1.5 % noise each: ±0.1 %.
    assert t.mean() == pytest.approx(np.exp(-length), rel=0.005)
    mean_dark, mean_flat, mean_proj = darks.mean(0), flats.mean(0), proj.mean(0)
    assert np.all(mean_dark < mean_proj) and np.all(mean_proj < mean_flat)
    assert darks.max() < flats.min()


def test_poisson_statistics_of_flats():
    det = Detector((6, 10), flat_photons=5000.0, read_noise=2.0, ring_defects=[], seed=3)
    flats = det.flats(400).astype(float)
    dark = det.dark_level
    mean = flats.mean(0) - dark
    var = flats.var(0, ddof=1)
    # Var = photons (gain 1) + read noise² + rounding (1/12).
    ratio = var / (mean + 2.0**2 + 1 / 12)
    assert ratio.mean() == pytest.approx(1.0, abs=0.03)


def test_ring_defect_columns_survive_flat_correction():
    line = np.full((10, 16, 64), 0.5)
    columns = [7, 30, 51]
    proj, flats, darks = simulate_frames(line, seed=2, ring_defects=columns, flat_photons=2e4)
    column_means = _flat_corrected(proj, flats, darks).mean(axis=(0, 1))
    deviation = np.abs(column_means / np.median(column_means) - 1)
    assert np.all(deviation[columns] > 0.01)
    assert np.all(np.delete(deviation, columns) < 0.005)
    # A random set is placed by the seed.
    det = Detector((4, 100), ring_defects=5, seed=9)
    assert len(det.defect_columns) == 5


def test_zingers():
    line = np.zeros((5, 20, 20))
    clean, _, _ = simulate_frames(line, seed=4, ring_defects=[])
    hit, _, _ = simulate_frames(line, seed=4, ring_defects=[], zinger_rate=0.01)
    assert (hit.astype(int) - clean > 1000).sum() > 5


def test_same_seed_same_frames_and_chunking_independent():
    line = np.random.default_rng(0).random((6, 5, 12))
    a = simulate_frames(line, seed=7)
    b = simulate_frames(line, seed=7)
    c = simulate_frames(line, seed=8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    det = Detector((5, 12), seed=7)
    chunks = np.concatenate([det.projections(line[:4]), det.projections(line[4:], first_index=4)])
    np.testing.assert_array_equal(chunks, a[0])


# --------------------------------------------------------------------------- phase contrast

PIXEL = 0.7e-6
DELTA_OVER_MU = (
    refractive_decrements("A-LPS")[Phase.ELECTROLYTE]
    / attenuation_coefficients("A-LPS")[Phase.ELECTROLYTE]
)


def test_phase_contrast_edge_fringes_and_mean_conservation():
    nz, nu = 8, 256
    line = np.zeros((1, nz, nu))
    line[..., 96:160] = 0.3  # a slab with sharp edges, well inside the field
    det = Detector(
        (nz, nu),
        beam_profile=np.ones((nz, nu)),
        pixel_gain_spread=0.0,
        phase_contrast=(0.05, 25.0, PIXEL, DELTA_OVER_MU),
    )
    absorbed = det.intensity(line[0])
    propagated = det.intensity(line[0], DELTA_OVER_MU * line[0])
    row = propagated[nz // 2]
    # Fringes: overshoot on the bright side and undershoot on the dark side of each edge.
    assert row[85:96].max() > 1.02
    assert row[96:107].min() < np.exp(-0.3) * 0.98
    # Far from edges the intensity is the absorption's.
    assert row[10:60] == pytest.approx(1.0, abs=1e-3)
    assert row[120:136] == pytest.approx(np.exp(-0.3), rel=2e-3)
    # Unitary propagation: mean intensity conserved.
    assert propagated.mean() == pytest.approx(absorbed.mean(), rel=1e-4)


def test_phase_contrast_near_field_matches_paganin_forward_model():
    # Smooth object, short distance: Fresnel ≈ (1 − d δ/μ ∇²) exp(−∫μ), the model that
    # Paganin's retrieval inverts exactly.
    n = 128
    z, u = np.mgrid[:n, :n] - n / 2
    # Weak enough that the phase (k·Φ ≤ 3 rad) varies slowly over a pixel.
    line = 0.02 * np.exp(-(z**2 + u**2) / (2 * 12.0**2))
    distance = 0.05  # Fresnel length √(λd) ≈ 2 px ≪ the object's 12 px
    intensity = fresnel_intensity(np.exp(-line), DELTA_OVER_MU * line, distance, 25.0, PIXEL)
    i0 = np.exp(-line)
    f = np.fft.fftfreq(n, d=PIXEL)
    laplacian = np.fft.ifft2(np.fft.fft2(i0) * -(4 * np.pi**2) * (f[:, None] ** 2 + f**2)).real
    tie = i0 - distance * DELTA_OVER_MU * laplacian
    contrast = np.abs(tie - i0).max()
    assert contrast > 1e-3  # the effect is there…
    assert np.abs(intensity - tie).max() < 0.05 * contrast  # …and is the TIE's


def test_phase_contrast_needs_delta():
    det = Detector((4, 16), phase_contrast=(0.05, 25.0, PIXEL))
    with pytest.raises(ValueError, match="delta"):
        det.intensity(np.zeros((4, 16)))


# --------------------------------------------------------------------------- scan


def test_scan_frames_chunks_and_store_modes():
    nz, n = 6, 64
    labels = np.full((nz, n, n), Phase.OUTSIDE, dtype=np.uint8)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    labels[:, yy**2 + xx**2 < 28**2] = Phase.ELECTROLYTE
    labels[:2, yy**2 + xx**2 < 28**2] = Phase.LITHIUM
    angles = np.linspace(0, np.pi, 25, endpoint=False)
    kwargs = dict(voxel_size_m=5 * VOXEL, material="LiI-AN", angles_per_chunk=10, rows_per_slab=4)
    chunks = list(scan_frames(labels, angles, **kwargs))
    kinds = [c.kind for c in chunks]
    assert kinds == ["dark", "flat", "projection", "projection", "projection"]
    assert [c.frames.shape[0] for c in chunks[2:]] == [10, 10, 5]
    np.testing.assert_array_equal(np.concatenate([c.theta_rad for c in chunks[2:]]), angles)
    # The disk-backed store (forced) and a callable slab source give the same frames.
    on_disk = list(
        scan_frames(lambda z0, z1: labels[z0:z1], angles, n_rows=nz, ram_limit_bytes=0, **kwargs)
    )
    for a, b in zip(chunks, on_disk, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
    # Through the pellet's centre (chord 280 µm): Li transmits ≈ 100 %, LiI-AN exp(−0.36).
    proj = np.concatenate([c.frames for c in chunks[2:]])
    t = _flat_corrected(proj, chunks[1].frames, chunks[0].frames)[:, :, n // 2 - 2 : n // 2 + 2]
    assert t[:, :2].mean() == pytest.approx(1.0, abs=0.02)
    assert t[:, 3:].mean() == pytest.approx(np.exp(-0.0356 * 1272 * 280e-6 / 0.0356), rel=0.03)


def test_scan_frames_phase_contrast_and_outer_cylinder():
    nz, n = 2, 32
    labels = np.full((nz, n, n), Phase.ELECTROLYTE, dtype=np.uint8)
    labels[:, 10:14, 10:14] = Phase.PORE
    det = Detector((nz, 48), phase_contrast=(0.02, 25.0, VOXEL), ring_defects=[], seed=5)
    chunks = list(
        scan_frames(
            labels,
            np.linspace(0, np.pi, 4, endpoint=False),
            voxel_size_m=VOXEL,
            material="A-LPS",
            detector=det,
            n_det=48,
            outer_radius_m=40 * VOXEL,
        )
    )
    proj = chunks[2].frames
    assert proj.shape == (4, nz, 48)
    # The pellet fills the whole field: every column is attenuated (≥ 80 µm of A-LPS, ≥ 4 %).
    t = _flat_corrected(proj, chunks[1].frames, chunks[0].frames)
    columns = t.mean(axis=(0, 1))
    assert columns.mean() < 0.975
    # The edge columns too (chord ≥ 64 µm there), without a false fringe at the frame's edge.
    assert np.all(columns[[0, 1, -2, -1]] < 0.98)
