"""The phases of the imaged cell: the labels of the virtual pellet and what each is made of.

The virtual pellet (a labelled voxel volume) and the X-ray projector agree on these labels;
the projector turns each phase's composition and density into a linear attenuation
coefficient at the beam energy (xraylib).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["PHASE_MATERIALS", "Phase", "PhaseMaterial", "electrolyte_material"]


class Phase(IntEnum):
    """Label of a voxel of the virtual pellet (uint8 volumes)."""

    OUTSIDE = 0  #: around the pellet: argon at ambient pressure (practically vacuum)
    LITHIUM = 1  #: Li metal electrodes
    ELECTROLYTE = 2  #: dense solid electrolyte
    PORE = 3  #: pores of the electrolyte (argon)
    CRACK = 4  #: empty crack volume (argon)
    CRACK_LITHIUM = 5  #: Li metal that has filled a crack


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


def electrolyte_material(material: str) -> PhaseMaterial:
    """The dense electrolyte's composition and density for a material preset."""
    for name, phase in _ELECTROLYTES.items():
        if name.lower() == material.strip().lower():
            return phase
    raise ValueError(f"unknown material {material!r}; choose one of {', '.join(_ELECTROLYTES)}")
