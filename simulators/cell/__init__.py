"""The virtual cell: its model, parameters, damage, EIS spectrum, imaged state, cycling history
and checkpoints.
"""

from .damage import (
    Crack,
    fill_cracks,
    nucleate_cracks,
)
from .eis import (
    EquivalentCircuit,
    cpe_admittance,
)
from .history import (
    HistoryPoint,
    cycle_to_charge,
    insitu_charge_to_failure_C,
)
from .model import (
    BOLTZMANN_EV,
    ELECTRODES,
    CellGeometry,
    CellState,
    CrackState,
    ElectrodeState,
    InsituDamageLaw,
    VirtualCell,
    insitu_damage_law,
)
from .parameters import (
    FARADAY_C_MOL,
    GAS_CONSTANT_J_MOL_K,
    INSITU_CRITICAL_FRACTION,
    INSITU_DENSITIES_MA_CM2,
    INSITU_HALF_CYCLE_S,
    INSITU_PRESSURE_PA,
    LI_MOLAR_VOLUME_M3_MOL,
    PARAMETERS,
    REFERENCE_PRESSURE_PA,
    REFERENCE_TEMPERATURE_K,
    ROOM_TEMPERATURE_K,
    CellParameters,
    arrhenius_factor,
    get_cell_parameters,
)
from .persistence import (
    FORMAT_VERSION,
    CellCheckpointer,
    load_cell,
    restore_cell,
    save_cell,
)

__all__ = [
    "BOLTZMANN_EV",
    "ELECTRODES",
    "FARADAY_C_MOL",
    "FORMAT_VERSION",
    "GAS_CONSTANT_J_MOL_K",
    "INSITU_CRITICAL_FRACTION",
    "INSITU_DENSITIES_MA_CM2",
    "INSITU_HALF_CYCLE_S",
    "INSITU_PRESSURE_PA",
    "LI_MOLAR_VOLUME_M3_MOL",
    "PARAMETERS",
    "REFERENCE_PRESSURE_PA",
    "REFERENCE_TEMPERATURE_K",
    "ROOM_TEMPERATURE_K",
    "CellCheckpointer",
    "CellGeometry",
    "CellParameters",
    "CellState",
    "Crack",
    "CrackState",
    "ElectrodeState",
    "EquivalentCircuit",
    "HistoryPoint",
    "InsituDamageLaw",
    "VirtualCell",
    "arrhenius_factor",
    "cpe_admittance",
    "cycle_to_charge",
    "fill_cracks",
    "get_cell_parameters",
    "insitu_charge_to_failure_C",
    "insitu_damage_law",
    "load_cell",
    "nucleate_cracks",
    "restore_cell",
    "save_cell",
]
