"""Material presets of the seed paper (Dixit, Singh et al.), with the numbers the
simulators reproduce. See ``../shared/REFERENCE.md`` for where each number comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SimulatorInputError

__all__ = ["MATERIALS", "MaterialPreset", "UnknownMaterialError", "get_material"]


class UnknownMaterialError(SimulatorInputError):
    """A material name that is not one of the presets."""


@dataclass(frozen=True)
class MaterialPreset:
    """Published properties of one solid electrolyte.

    Attributes
    ----------
    name : str
        Preset name as used on the command line (``A-LPS``, ``LPS:0.5LiI``, ...).
    description : str
        What the material is.
    sigma_rt_S_cm : float
        Total (bulk + grain boundary) ionic conductivity at 25 °C, S/cm (Fig. 1d).
    activation_energy_eV : float
        Arrhenius activation energy, eV (Fig. 1d).
    ccd_mA_cm2 : float
        Lab critical current density at 60 °C, mA/cm² (Fig. 1e).
    charge_to_failure_C_cm2 : float
        Lab charge-to-failure, C/cm², per-electrode plated-charge convention (Fig. 1e).
    charge_to_failure_consistent : bool
        Whether the published charge-to-failure is consistent with the lab protocol read as
        REFERENCE.md describes (False for LiI-AN).
    porosity : float
        Mean porosity from XCT (approximate where the paper gives only an ordering).
    insitu_charge_to_failure_mC : float
        Charge-to-failure of the in-situ synchrotron cell, mC (Fig. 3b).
    interphase : str
        Interphase type with Li: ``"unstable"`` or ``"metastable"``.
    """

    name: str
    description: str
    sigma_rt_S_cm: float
    activation_energy_eV: float
    ccd_mA_cm2: float
    charge_to_failure_C_cm2: float
    charge_to_failure_consistent: bool
    porosity: float
    insitu_charge_to_failure_mC: float
    interphase: str


MATERIALS: dict[str, MaterialPreset] = {
    m.name: m
    for m in (
        MaterialPreset(
            name="A-LPS",
            description="amorphous Li3PS4; unstable interphase (Li2S, Li3P) with Li",
            sigma_rt_S_cm=4.26e-4,
            activation_energy_eV=0.148,
            ccd_mA_cm2=0.75,
            charge_to_failure_C_cm2=6.849,
            charge_to_failure_consistent=True,
            porosity=0.48,
            insitu_charge_to_failure_mC=25.0,
            interphase="unstable",
        ),
        MaterialPreset(
            name="LPS:0.5LiI",
            description="LPS + LiI mixture; kinetically metastable interphase with LiI",
            sigma_rt_S_cm=8.79e-4,
            activation_energy_eV=0.144,
            ccd_mA_cm2=1.75,
            charge_to_failure_C_cm2=41.67,
            charge_to_failure_consistent=True,
            porosity=0.25,
            insitu_charge_to_failure_mC=35.0,
            interphase="metastable",
        ),
        MaterialPreset(
            name="LiI-AT",
            description="LPS:0.5LiI attrition-milled; smaller particles, more grain boundary",
            sigma_rt_S_cm=5.01e-4,
            activation_energy_eV=0.147,
            ccd_mA_cm2=1.25,
            charge_to_failure_C_cm2=19.62,
            charge_to_failure_consistent=True,
            porosity=0.15,
            insitu_charge_to_failure_mC=40.0,
            interphase="metastable",
        ),
        MaterialPreset(
            name="LiI-AN",
            description="LiI-AT annealed at 185 °C; nano-crystalline, densest, most heterogeneous",
            sigma_rt_S_cm=2.40e-3,
            activation_energy_eV=0.111,
            ccd_mA_cm2=4.0,
            charge_to_failure_C_cm2=135.72,
            charge_to_failure_consistent=False,
            porosity=0.05,
            insitu_charge_to_failure_mC=90.0,
            interphase="metastable",
        ),
    )
}


def get_material(name: str | MaterialPreset) -> MaterialPreset:
    """Look up a preset by name (case-insensitive).

    Raises
    ------
    UnknownMaterialError
        If no preset has that name; the message lists the valid names.
    """
    if isinstance(name, MaterialPreset):
        return name
    for key, preset in MATERIALS.items():
        if key.lower() == str(name).strip().lower():
            return preset
    raise UnknownMaterialError(f"unknown material {name!r}; choose one of {', '.join(MATERIALS)}")
