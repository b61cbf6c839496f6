"""The simulators on their own: an emulator serving a virtual cell, and the material presets.

What ``insitu sim serve`` and ``insitu sim materials`` run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, replace
from typing import Any, Literal

from insitu.simulators.cell.model import CellGeometry
from insitu.simulators.materials import MATERIALS

from ..bench.emulated import EmulatorKind, SimBench, start_emulator
from ..errors import InvalidInputError

__all__ = ["material_presets", "serve_cell"]


def material_presets() -> list[dict[str, Any]]:
    """The material presets with their published numbers, one dict per material."""
    return [asdict(m) for m in MATERIALS.values()]


@contextmanager
def serve_cell(
    material: str,
    *,
    emulator: EmulatorKind,
    speedup: float = 1.0,
    seed: int | None = 0,
    temperature_C: float | None = None,
    port: int = 0,
    transport: Literal["tcp", "pty"] = "tcp",
) -> Iterator[SimBench]:
    """Serve a virtual lab CCD cell of ``material`` through an emulator on 127.0.0.1.

    Parameters
    ----------
    material : str
        Material preset (``A-LPS``, ``LPS:0.5LiI``, ``LiI-AT``, ``LiI-AN``).
    emulator : {"keithley2450", "methodscript"}
        The instrument to emulate.
    speedup : float
        Simulated seconds per real second.
    seed : int or None
        Seed of the cell's noise and damage.
    temperature_C : float, optional
        Cell temperature (default: the lab CCD cell's, 60 °C).
    port : int
        TCP port (0: a free one).
    transport : {"tcp", "pty"}
        MethodSCRIPT only: a ``socket://`` URL or a pseudo-terminal path.

    Yields
    ------
    SimBench
        Its ``resource`` is what a client opens.
    """
    geometry = CellGeometry.lab_ccd()
    if temperature_C is not None:
        geometry = replace(geometry, temperature_K=temperature_C + 273.15)
    with ExitStack() as stack:
        try:
            bench = stack.enter_context(
                start_emulator(
                    material,
                    emulator=emulator,
                    speedup=speedup,
                    seed=seed,
                    geometry=geometry,
                    port=port,
                    transport=transport,
                )
            )
        except OSError as exc:
            if not port:
                raise
            # A port in use or reserved is the user's to change, not a bug.
            raise InvalidInputError(
                f"cannot serve on port {port}: {exc.strerror or exc}; choose another --port, "
                "or leave it out for a free one"
            ) from exc
        yield bench
