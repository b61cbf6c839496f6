"""The experiment's description before it runs: its file with the command line's overrides,
and the demo's settings. What ``insitu experiment run`` and ``insitu demo`` validate first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..experiment_config import ExperimentConfig, load_config, validate_config

__all__ = ["demo_config", "load_experiment"]


def load_experiment(
    path: str | Path, *, output: str | None = None, data: str | None = None
) -> ExperimentConfig:
    """Read and validate an experiment file, with the output and catalog folders overridden.

    Parameters
    ----------
    path : str or Path
        The experiment YAML file.
    output : str, optional
        Folder of the experiments, instead of the file's ``output``.
    data : str, optional
        Catalog folder, instead of the file's ``catalog.data``.

    Raises
    ------
    ExperimentConfigError
        For a missing or unreadable file, bad YAML or a bad key (every one named).
    """
    cfg = load_config(path)
    updates: dict[str, Any] = {}
    if output:
        updates["output"] = output
    if data:
        updates["catalog"] = cfg.catalog.model_copy(update={"data": data})
    return cfg.model_copy(update=updates) if updates else cfg


def demo_config(
    material: str = "A-LPS",
    *,
    speedup: float = 2e4,
    seed: int = 0,
    tomography: str = "sim",
    emulator: str = "methodscript",
    output: str = "experiments",
    data: str | None = None,
) -> ExperimentConfig:
    """The demo: the seed paper's in-situ experiment on a simulated bench (small pellet).

    Parameters
    ----------
    material : str
        Material preset of the virtual cell.
    speedup : float
        Simulated seconds per real second.
    seed : int
        Seed of the cell and the scans.
    tomography : {"sim", "sim-epics"}
        The simulated beamline in process, or as an EPICS IOC.
    emulator : {"methodscript", "keithley2450"}
        The emulated potentiostat (the Keithley 2450 has no EIS).
    output : str
        Folder of the experiments.
    data : str, optional
        Catalog folder (default ``./insitu-data`` or ``$INSITU_DATA``).
    """
    config: dict[str, Any] = {
        "sample": f"demo-{material}",
        "material": material,
        "output": output,
        "catalog": {"data": data},
        "devices": {
            "potentiostat": "sim",
            "tomography": tomography,
            "simulation": {
                "speedup": speedup,
                "seed": seed,
                "size": "small",
                "emulator": emulator,
            },
        },
    }
    return validate_config(config, source="the demo's settings")
