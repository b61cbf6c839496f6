"""Electrochemistry analysis: EIS fits, conductivity and Arrhenius, shorts and the critical current
density, overpotential tables, and measured files in and out (CSV, EC-Lab, JSONL runs).
"""

from .conductivity import (
    BOLTZMANN_EV_K,
    CONVENTIONS,
    ROOM_TEMPERATURE_K,
    ArrheniusFit,
    activation_energies,
    arrhenius_fit,
    conductivity_S_cm,
    sigma_at,
)
from .eis import (
    CIRCUITS,
    EIS_COLUMNS,
    METHODS,
    MIN_POINTS,
    CircuitSpec,
    EISFit,
    EISFitError,
    electrolyte_resistance,
    fit_circuit,
    hf_intercept,
    spectrum_frame,
    spike_intercept,
)
from .overpotential import (
    overpotential_summary,
    overpotential_table,
)
from .readers import (
    TIME_SERIES_COLUMNS,
    detect_kind,
    read_csv,
    read_measurement,
    read_mpr,
    read_mpt,
    standardise_columns,
    write_mpt,
)
from .runs import (
    spectra_by_temperature,
)
from .shorts import (
    CHARGE_CONVENTIONS,
    SHORT_KINDS,
    CCDAnalysis,
    ShortEvent,
    ccd_from_trace,
    charge_to_failure,
    classify_short,
    find_short,
    half_cycle_index,
)

__all__ = [
    "BOLTZMANN_EV_K",
    "CHARGE_CONVENTIONS",
    "CIRCUITS",
    "CONVENTIONS",
    "EIS_COLUMNS",
    "METHODS",
    "MIN_POINTS",
    "ROOM_TEMPERATURE_K",
    "SHORT_KINDS",
    "TIME_SERIES_COLUMNS",
    "ArrheniusFit",
    "CCDAnalysis",
    "CircuitSpec",
    "EISFit",
    "EISFitError",
    "ShortEvent",
    "activation_energies",
    "arrhenius_fit",
    "ccd_from_trace",
    "charge_to_failure",
    "classify_short",
    "conductivity_S_cm",
    "detect_kind",
    "electrolyte_resistance",
    "find_short",
    "fit_circuit",
    "half_cycle_index",
    "hf_intercept",
    "overpotential_summary",
    "overpotential_table",
    "read_csv",
    "read_measurement",
    "read_mpr",
    "read_mpt",
    "sigma_at",
    "spectra_by_temperature",
    "spectrum_frame",
    "spike_intercept",
    "standardise_columns",
    "write_mpt",
]
