"""Benches: the devices of an experiment, real or simulated, from one description."""

from .emulated import (
    SIM_PREFIX,
    EmulatorKind,
    SimBench,
    is_sim_resource,
    open_instrument,
)
from .experiment import (
    CELL_CHECKPOINT,
    ExperimentBench,
    SimPace,
    open_experiment_bench,
)
from .lab import (
    Bench,
    open_bench,
)
from .tomo_epics import (
    EpicsTomoBench,
    epics_tomo_bench,
)

__all__ = [
    "CELL_CHECKPOINT",
    "SIM_PREFIX",
    "Bench",
    "EmulatorKind",
    "EpicsTomoBench",
    "ExperimentBench",
    "SimBench",
    "SimPace",
    "epics_tomo_bench",
    "is_sim_resource",
    "open_bench",
    "open_experiment_bench",
    "open_instrument",
]
