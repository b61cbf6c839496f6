"""The pellet frame source: angles, frames, noise, the disk-backed store, the ground truth."""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest

from insitu.simulators import materials
from insitu.simulators.imaging import frame_source as tomo_source
from insitu.simulators.imaging.frame_source import PelletFrameSource, pellet_frame_source
from insitu.simulators.imaging.xray import attenuation_coefficients
from insitu.simulators.materials import MATERIALS, UnknownMaterialError
from insitu.simulators.pellet.model import PelletGeometry
from insitu.simulators.pellet.phases import Phase

N = 24


@pytest.fixture(scope="module")
def source() -> PelletFrameSource:
    return pellet_frame_source("A-LPS", 20.0, "small", N, 0)


def test_shape_angles_and_metadata(source) -> None:
    assert source.shape == (64, 128)
    np.testing.assert_allclose(source.angles_rad, np.arange(N) * np.pi / N)
    meta = source.metadata
    assert meta["energy_keV"] == 25.0 and meta["pixel_size_um"] == pytest.approx(3.0)
    assert meta["n_projections"] == N
    assert source(0.0, "flat").shape == source(0.0, "dark").shape == source.shape


def test_nominal_angles_exact_others_interpolated(source) -> None:
    step = np.pi / N
    p3, _ = source.line_integrals(3 * step)
    p4, _ = source.line_integrals(4 * step)
    np.testing.assert_array_equal(p3, source._stores.mu[3])
    mid, _ = source.line_integrals(3.25 * step)
    np.testing.assert_allclose(mid, 0.75 * p3 + 0.25 * p4, rtol=1e-6, atol=1e-7)
    # Past the last nominal angle, up to π, and beyond: p(θ + π, u) = p(θ, −u).
    p0, _ = source.line_integrals(0.0)
    at_pi, _ = source.line_integrals(np.pi)
    np.testing.assert_allclose(at_pi, p0[:, ::-1], atol=2e-3 * p0.max())
    np.testing.assert_allclose(source.line_integrals(np.pi + 3 * step)[0], p3[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(source.line_integrals(-step)[0], source._stores.mu[N - 1][:, ::-1])


def test_frames_darks_below_projections_below_flats(source) -> None:
    exposure = source.exposure_s
    dark = source(0.0, "dark")
    flat = source(0.0, "flat") * exposure
    proj = source(0.3, "projection") * exposure
    assert dark.mean() < proj.mean() < flat.mean()
    # 16 bits, integral ADU once the camera multiplies by its exposure.
    assert flat.max() < 65535
    np.testing.assert_allclose(flat, np.rint(flat), atol=1e-6)
    # The pellet's shadow: the electrolyte rows attenuate, the air beside the pellet does not.
    r0, r1 = source.ground_truth["electrolyte_rows"]
    ratio = (proj - dark) / (flat - dark)
    assert ratio[r0:r1, 60:68].mean() < 0.95
    assert ratio[r0:r1, :3].mean() == pytest.approx(1.0, abs=0.02)


def test_same_seed_same_frames_other_seed_other_frames() -> None:
    def frames(seed: int) -> list[np.ndarray]:
        s = pellet_frame_source("LiI-AN", 0.0, "small", 6, seed)
        return [s(0.0, "dark"), s(0.0, "flat"), s(0.0, "flat"), s(0.5, "projection")]

    a, b, c = frames(1), frames(1), frames(2)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], a[2])  # successive flats: new noise
    assert not np.array_equal(a[3], c[3])


def test_disk_backed_store_is_removed_on_close(tmp_path) -> None:
    s = PelletFrameSource(
        "LiI-AN", size="small", n_projections=4, workdir=tmp_path, ram_limit_bytes=0
    )
    assert isinstance(s._stores.mu, np.memmap)
    assert list(tmp_path.glob("insitu-tomo-*/mu.npy"))
    frame = s(0.0, "projection")
    assert frame.shape == s.shape
    s.close()
    assert not list(tmp_path.iterdir())


def test_loadable_by_name_with_json_kwargs() -> None:
    # How the EPICS IOC loads a frame source: "module:callable" and a JSON object.
    spec, kwargs = (
        "insitu.simulators.imaging.frame_source:pellet_frame_source",
        '{"material": "LiI-AT",',
    )
    kwargs += ' "charge_mC": 5, "size": "small", "n_projections": 8, "seed": 2}'
    module, name = spec.split(":")
    factory = getattr(importlib.import_module(module), name)
    s = factory(**json.loads(kwargs))
    assert callable(s) and s.shape == (64, 128) and s.n_projections == 8
    json.dumps(s.ground_truth)  # JSON-able
    json.dumps(s.metadata)


def test_ground_truth_follows_the_history() -> None:
    pristine = pellet_frame_source("A-LPS", 0.0, "small", 4, 0).ground_truth
    before = pellet_frame_source("A-LPS", 10.0, "small", 4, 0).ground_truth
    after = pellet_frame_source("A-LPS", 20.0, "small", 4, 0).ground_truth
    assert pristine["charge_passed_mC"] == 0.0 and pristine["n_cracks"] == 0
    assert before["charge_passed_mC"] == pytest.approx(10.0)
    assert before["crack_volume_m3"] == 0.0 and not before["shorted"]
    assert after["crack_volume_m3"] > 0.0 and after["n_cracks"] > 0
    assert after["damage"] > before["damage"]
    # Li moved from the working to the counter electrode while plating.
    thick = before["electrode_thickness_m"]
    assert thick["working"] != thick["counter"]
    for truth in (pristine, before, after):
        assert truth["porosity"] == pytest.approx(0.48, abs=0.01)
        assert truth["porosity_preset"] == 0.48


def test_pellet_wider_than_the_grid_adds_its_outer_ring(monkeypatch) -> None:
    # A miniature of the full size: the pellet (radius 150 µm) is wider than the grid (96 µm
    # half-width), so the projector adds the annulus beyond the grid per row.
    geometry = PelletGeometry(
        shape=(20, 64, 64),
        voxel_m=3e-6,
        pellet_radius_m=150e-6,
        electrolyte_thickness_m=36e-6,
        li_thickness_m=9e-6,
    )
    monkeypatch.setitem(tomo_source.SIZES, "small", lambda: geometry)
    s = PelletFrameSource("LiI-AN", size="small", n_projections=6)
    mu = attenuation_coefficients("LiI-AN")
    phi = s.pellet.porosity_target
    mean_mu = (1 - phi) * mu[Phase.ELECTROLYTE] + phi * mu[Phase.PORE]
    r0, r1 = s.ground_truth["electrolyte_rows"]
    u = (np.arange(64) - s.rotation_axis_column) * geometry.voxel_m
    chord = 2 * np.sqrt(geometry.pellet_radius_m**2 - u**2)
    p, _ = s.line_integrals(0.7)
    # The whole chord through a (nearly) homogeneous porous cylinder, not just the grid's part.
    np.testing.assert_allclose(p[r0:r1].mean(0), mean_mu * chord, rtol=0.08)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"material": "LPS"}, UnknownMaterialError, "unknown material"),
        ({"material": "A-LPS", "charge_mC": -1.0}, ValueError, "zero or positive"),
        ({"material": "A-LPS", "size": "huge"}, ValueError, "small, medium, full"),
        ({"material": "A-LPS", "n_projections": 1}, ValueError, "at least 2"),
    ],
)
def test_bad_arguments_say_what_to_do(kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        pellet_frame_source(**kwargs)


def test_unknown_frame_kind(source) -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        source(0.0, "white")


def test_material_is_looked_up_once_and_passed_on_as_a_preset(monkeypatch) -> None:
    # Every simulators module that looks materials up counts the look-ups by name.
    by_name = []
    lookup = materials.get_material

    def counting(material):
        if not isinstance(material, materials.MaterialPreset):
            by_name.append(material)
        return lookup(material)

    for name, module in list(sys.modules.items()):
        if name.startswith("insitu.simulators") and getattr(module, "get_material", None) is lookup:
            monkeypatch.setattr(module, "get_material", counting)
    source = PelletFrameSource("a-lps", n_projections=2)
    assert by_name == ["a-lps"]
    assert source.preset is MATERIALS["A-LPS"] and source.material == "A-LPS"
    assert source.pellet.material is source.preset
    # A preset is taken as it is.
    assert PelletFrameSource(source.preset, n_projections=2).preset is source.preset
    assert by_name == ["a-lps"]
