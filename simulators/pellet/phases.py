"""The phases of the imaged cell: the labels of the virtual pellet and what each is made of.

The virtual pellet (a labelled voxel volume) and the X-ray projector agree on these labels;
the projector turns each phase's composition and density into a linear attenuation
coefficient at the beam energy (xraylib).

The labels are stored in files (scans' ground truth), so a new phase is appended with the
next free value and existing values never change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..materials import MaterialPreset, get_material

__all__ = ["PHASE_MATERIALS", "Phase", "PhaseMaterial", "electrolyte_material"]


class Phase(IntEnum):
    """Label of a voxel of the virtual pellet (uint8 volumes)."""

    OUTSIDE = 0  #: around the pellet: argon at ambient pressure (practically vacuum)
    LITHIUM = 1  #: Li metal electrodes
    ELECTROLYTE = 2  #: dense solid electrolyte
    PORE = 3  #: pores of the electrolyte (argon)
    CRACK = 4  #: empty crack volume (argon)
    CRACK_LITHIUM = 5  #: Li metal that has filled a crack
    COLLECTOR = 6  #: stainless-steel piston / current collector pressed against each Li


@dataclass(frozen=True)
class PhaseMaterial:
    """Composition (a chemical formula xraylib understands) and density of a phase."""

    formula: str
    density_g_cm3: float


#: Materials of the phases that do not depend on the electrolyte preset.
PHASE_MATERIALS: dict[Phase, PhaseMaterial] = {
    Phase.OUTSIDE: PhaseMaterial("Ar", 0.001784),
    Phase.LITHIUM: PhaseMaterial("Li", 0.534),
    Phase.PORE: PhaseMaterial("Ar", 0.001784),
    Phase.CRACK: PhaseMaterial("Ar", 0.001784),
    Phase.CRACK_LITHIUM: PhaseMaterial("Li", 0.534),
    # 316 stainless steel, Fe-17Cr-12Ni-2.5Mo by mass (minor Mn, Si, C left out: < 3 % and
    # lighter than Fe, they change μ by about 1 %), as atoms per 100 so that xraylib's mass
    # fractions come back to 0.685 / 0.170 / 0.120 / 0.025; 8.0 g/cm³. At 25 keV its μ is
    # ≈ 1.15e4 1/m, 20× that of A-LPS and 1250× that of Li: the bright edge that shows where
    # the Li ends.
    Phase.COLLECTOR: PhaseMaterial("Fe68.75Cr18.33Ni11.46Mo1.46", 8.0),
}

# Dense (skeletal) compositions and densities of the electrolytes: Li3PS4 glass ≈ 1.87 g/cm³;
# with 0.5 LiI per Li3PS4 (LiI 4.08 g/cm³) the mixture is denser, ≈ 2.2 g/cm³. Milling and
# annealing change the microstructure (porosity), not the skeletal composition.
_ELECTROLYTES = {
    "A-LPS": PhaseMaterial("Li3PS4", 1.87),
    "LPS:0.5LiI": PhaseMaterial("Li3.5PS4I0.5", 2.2),
    "LiI-AT": PhaseMaterial("Li3.5PS4I0.5", 2.2),
    "LiI-AN": PhaseMaterial("Li3.5PS4I0.5", 2.2),
}


def electrolyte_material(material: str | MaterialPreset) -> PhaseMaterial:
    """The dense electrolyte's composition and density for a material preset.

    Parameters
    ----------
    material : str or MaterialPreset
        Preset name (case-insensitive) or preset.

    Returns
    -------
    PhaseMaterial

    Raises
    ------
    UnknownMaterialError
        If the name is not a preset (the message lists the valid names).
    ValueError
        If a custom preset has no electrolyte composition here.
    """
    preset = get_material(material)
    try:
        return _ELECTROLYTES[preset.name]
    except KeyError:
        raise ValueError(
            f"no electrolyte composition for material {preset.name!r}; add its formula and "
            "density to _ELECTROLYTES in insitu.simulators.pellet.phases"
        ) from None
