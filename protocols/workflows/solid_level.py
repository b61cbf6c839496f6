"""The grey level of the dense electrolyte, for the partial-volume porosity estimator.

``porosity_pv`` (:mod:`insitu.analysis.microstructure.partial_volume`) reads each voxel's
void fraction between the void level (0 in a reconstruction in μ per voxel) and the solid
level. Taken from the study histogram's peak, the solid level is biased low at 3 and 1.5 µm
voxels (hardly any voxel is pure solid), and the estimator reads up to 0.12 low. The solid
level is right when it is the dense electrolyte's own μ·voxel: this module finds it, in this
order,

1. given as a number (``--solid-level``);
2. from a formula and skeletal density (``--electrolyte Li3PS4:1.87``);
3. from the material of the experiment (the manifest's ``"material"`` or the simulated scan's
   ground truth), whose composition the simulators know,

each with the beam energy from ``--energy-keV`` or the scan's Data Exchange metadata, and
only for volumes in μ per voxel (as ``insitu recon`` writes them): on any other grey scale
(an 8-bit TIFF, say) a physical level means nothing, and the histogram's peak is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from insitu.analysis.microstructure.partial_volume import solid_level_from_composition

from ..errors import InvalidInputError

__all__ = ["SolidLevel", "calibrate_solid_level", "parse_electrolyte"]

#: The ``units`` attribute ``insitu recon`` gives a volume in μ per voxel.
_MU_PER_VOXEL = "attenuation per voxel"


@dataclass(frozen=True)
class SolidLevel:
    """The solid level and where it came from (recorded with the result)."""

    value: float | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"value": self.value, "source": self.source}


def parse_electrolyte(text: str) -> tuple[str, float]:
    """``"FORMULA:DENSITY"`` (g/cm³) → ``(formula, density)``.

    Raises
    ------
    InvalidInputError
        If the text is not a formula and a positive density separated by a colon.
    """
    formula, sep, density = text.rpartition(":")
    try:
        value = float(density)
    except ValueError:
        value = -1.0
    if not sep or not formula or not value > 0:
        raise InvalidInputError(
            f"--electrolyte must be FORMULA:DENSITY with the skeletal density in g/cm³, "
            f"e.g. Li3PS4:1.87; got {text!r}"
        )
    return formula, value


def _energy_keV(volumes: Sequence[Any]) -> float | None:
    """The beam energy of the scan the first volume was reconstructed from, if recorded."""
    source = getattr(volumes[0], "attrs", {}).get("source")
    if not source:
        return None
    from insitu.instruments.dxchange import read_metadata

    try:
        energy = read_metadata(source).get("energy_keV")
    except (OSError, ValueError, KeyError):
        return None
    return float(energy) if energy else None


def _in_mu_per_voxel(volumes: Sequence[Any]) -> bool:
    return all(_MU_PER_VOXEL in str(getattr(v, "attrs", {}).get("units", "")) for v in volumes)


def calibrate_solid_level(
    volumes: Sequence[Any],
    *,
    voxel_um: float,
    material: str | None,
    value: float | None = None,
    electrolyte: str | None = None,
    energy_keV: float | None = None,
) -> SolidLevel:
    """The solid level of a study's volumes, and where it came from.

    Parameters
    ----------
    volumes : sequence of volumes
        The study's volumes (their ``attrs``: ``units``, ``source``).
    voxel_um : float
        Voxel edge.
    material : str or None
        The experiment's material, if known.
    value : float, optional
        The level itself; wins over everything.
    electrolyte : str, optional
        ``"FORMULA:DENSITY"`` of the dense electrolyte; wins over ``material``.
    energy_keV : float, optional
        Beam energy; by default the scan's.

    Returns
    -------
    SolidLevel
        ``value`` None (with the reason in ``source``) when the histogram's peak is to be used.
    """
    if value is not None:
        if not value > 0:
            raise InvalidInputError(f"--solid-level must be positive, got {value}")
        return SolidLevel(float(value), "given")
    if not _in_mu_per_voxel(volumes):
        return SolidLevel(None, "histogram peak (the volume is not in μ per voxel)")
    if electrolyte is not None:
        formula, density = parse_electrolyte(electrolyte)
        source = f"composition {formula}, {density:g} g/cm³"
    elif material:
        from insitu.simulators.materials import UnknownMaterialError
        from insitu.simulators.pellet.phases import electrolyte_material

        try:
            phase = electrolyte_material(material)
        except (UnknownMaterialError, ValueError):
            return SolidLevel(None, f"histogram peak (no composition known for {material!r})")
        formula, density = phase.formula, phase.density_g_cm3
        source = f"material {material} ({formula}, {density:g} g/cm³)"
    else:
        return SolidLevel(None, "histogram peak (no material or --electrolyte given)")
    energy = energy_keV if energy_keV is not None else _energy_keV(volumes)
    if energy is None:
        return SolidLevel(None, "histogram peak (no beam energy: give --energy-keV)")
    level = solid_level_from_composition(formula, density, energy_keV=energy, voxel_um=voxel_um)
    return SolidLevel(level, f"{source} at {energy:g} keV")
