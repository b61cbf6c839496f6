"""The solid level for the partial-volume porosity: given, from a composition, from the
material, or the histogram's peak when no physical level applies (each with its reason)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from insitu.analysis.microstructure.partial_volume import solid_level_from_composition
from insitu.protocols.errors import InvalidInputError
from insitu.protocols.workflows.solid_level import calibrate_solid_level, parse_electrolyte

MU = {"units": "1/pixel (attenuation per voxel)"}


def volume(**attrs) -> SimpleNamespace:
    return SimpleNamespace(attrs=attrs)


def test_parse_electrolyte() -> None:
    assert parse_electrolyte("Li3PS4:1.87") == ("Li3PS4", 1.87)
    for bad in ("Li3PS4", "Li3PS4:", ":1.8", "Li3PS4:-1", "Li3PS4:dense"):
        with pytest.raises(InvalidInputError, match="FORMULA:DENSITY"):
            parse_electrolyte(bad)


def test_given_level_wins_and_must_be_positive() -> None:
    got = calibrate_solid_level([volume()], voxel_um=3.0, material="A-LPS", value=0.002)
    assert (got.value, got.source) == (0.002, "given")
    with pytest.raises(InvalidInputError, match="positive"):
        calibrate_solid_level([volume()], voxel_um=3.0, material=None, value=0.0)


def test_from_the_material_at_the_given_energy() -> None:
    got = calibrate_solid_level([volume(**MU)], voxel_um=3.0, material="A-LPS", energy_keV=25.0)
    expected = solid_level_from_composition("Li3PS4", 1.87, energy_keV=25.0, voxel_um=3.0)
    assert got.value == pytest.approx(expected)
    assert got.source.startswith("material A-LPS (Li3PS4")
    # A composition given beats the material's.
    other = calibrate_solid_level(
        [volume(**MU)], voxel_um=3.0, material="A-LPS", electrolyte="LiI:4.06", energy_keV=25.0
    )
    assert other.value == pytest.approx(
        solid_level_from_composition("LiI", 4.06, energy_keV=25.0, voxel_um=3.0)
    )


@pytest.mark.parametrize(
    ("attrs", "material", "energy", "reason"),
    [
        ({}, "A-LPS", 25.0, "not in μ per voxel"),  # an 8-bit TIFF, say
        (MU, None, 25.0, "no material"),
        (MU, "unobtainium", 25.0, "no composition known"),
        (MU, "A-LPS", None, "no beam energy"),  # no source scan to read it from
    ],
)
def test_histogram_peak_when_no_physical_level_applies(attrs, material, energy, reason) -> None:
    got = calibrate_solid_level(
        [volume(**attrs)], voxel_um=3.0, material=material, energy_keV=energy
    )
    assert got.value is None and reason in got.source
