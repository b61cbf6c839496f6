"""The virtual Li|SE|Li cell: the physics behind every simulated potentiostat.

PROVISIONAL: this file fixes the public API that the emulators use; the physics inside is a
plain ohmic placeholder until the full model (Arrhenius bulk, Butler-Volmer, interphase
growth, contact loss, damage and short) replaces it behind the same API.

Conventions
-----------
* SI units throughout (A, V, s, m, S/m, K, Pa, C).
* The two electrodes are ``"working"`` and ``"counter"``. Positive current flows from the
  working electrode through the electrolyte to the counter electrode: Li is stripped from the
  working electrode and plated on the counter electrode. The cell voltage is
  ``phi_working - phi_counter``, positive for positive current.
* Time is the simulation time in seconds (the :class:`~insitu.simulators.clock.SimClock`'s
  ``now()``), absolute, starting wherever the cell was created (``start_time_s``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from .materials import MaterialPreset, get_material

__all__ = ["BOLTZMANN_EV", "CellGeometry", "CellState", "VirtualCell"]

BOLTZMANN_EV = 8.617333262e-5  # eV/K
ROOM_TEMPERATURE_K = 298.15


@dataclass(frozen=True)
class CellGeometry:
    """Geometry and conditions of a cell.

    Attributes
    ----------
    area_m2 : float
        Electrode area (the pellet's cross-section).
    thickness_m : float
        Electrolyte pellet thickness.
    temperature_K : float
        Cell temperature at start.
    stack_pressure_Pa : float
        Stack pressure.
    electrodes : str
        ``"li"`` for Li|SE|Li, ``"blocking"`` for carbon-coated Al|SE|Al.
    li_thickness_m : float
        Initial Li foil thickness of each electrode (ignored for blocking electrodes).
    """

    area_m2: float = 1.0e-4
    thickness_m: float = 0.6e-3
    temperature_K: float = 333.15
    stack_pressure_Pa: float = 29e6
    electrodes: str = "li"
    li_thickness_m: float = 150e-6

    @classmethod
    def lab_ccd(cls) -> CellGeometry:
        """The lab CCD cell: 1.0 cm² Macor ring, 100 mg pellet, Li foil 150 µm, 60 °C, 29 MPa."""
        return cls()

    @classmethod
    def conductivity(cls, temperature_K: float = ROOM_TEMPERATURE_K) -> CellGeometry:
        """The conductivity cell: carbon-coated Al blocking electrodes at 88 MPa."""
        return cls(temperature_K=temperature_K, stack_pressure_Pa=88e6, electrodes="blocking")

    @classmethod
    def insitu(cls) -> CellGeometry:
        """The synchrotron cell: 3 mm pellet, room temperature, stack pressure 0.5 MPa."""
        return cls(
            area_m2=np.pi * (1.5e-3) ** 2,
            thickness_m=0.6e-3,
            temperature_K=ROOM_TEMPERATURE_K,
            stack_pressure_Pa=0.5e6,
        )


@dataclass(frozen=True)
class CellState:
    """Snapshot of the cell's explicit state (what tomography will image later).

    PROVISIONAL: the full model extends this with per-electrode interphase, contact loss and
    electrode thickness, and the crack list with Li volume per crack.
    """

    time_s: float
    temperature_K: float
    charge_passed_C: float  # ∫|I| dt
    damage: float  # 0 (pristine) .. 1 (short)
    shorted: bool
    extra: dict = field(default_factory=dict)


class VirtualCell:
    """A symmetric Li|SE|Li (or blocking) cell of one material preset.

    Parameters
    ----------
    material : str or MaterialPreset
        Preset name, e.g. ``"A-LPS"``.
    geometry : CellGeometry, optional
        Defaults to the lab CCD cell.
    seed : int or None
        Seed of the measurement noise; the same seed gives the same data.
    noise_V : float
        Standard deviation of the voltage measurement noise.
    start_time_s : float
        Simulation time at which the cell is assembled.
    """

    def __init__(
        self,
        material: str | MaterialPreset,
        geometry: CellGeometry | None = None,
        *,
        seed: int | None = 0,
        noise_V: float = 20e-6,
        start_time_s: float = 0.0,
    ) -> None:
        self.material = get_material(material)
        self.geometry = geometry or CellGeometry.lab_ccd()
        self.temperature_K = self.geometry.temperature_K
        self.noise_V = noise_V
        self._rng = np.random.default_rng(seed)
        self.time_s = float(start_time_s)
        self._charge_passed_C = 0.0

    # --- material laws -------------------------------------------------------------------
    def conductivity_S_m(self, temperature_K: float | None = None) -> float:
        """Total ionic conductivity σ(T) in S/m (Arrhenius, σ·T convention)."""
        t = self.temperature_K if temperature_K is None else temperature_K
        m = self.material
        sigma_rt = m.sigma_rt_S_cm * 100.0
        ea = m.activation_energy_eV
        return (
            sigma_rt
            * ROOM_TEMPERATURE_K
            / t
            * np.exp(-ea / BOLTZMANN_EV * (1.0 / t - 1.0 / ROOM_TEMPERATURE_K))
        )

    def bulk_resistance_ohm(self) -> float:
        """Electrolyte resistance L/(σA)."""
        g = self.geometry
        return g.thickness_m / (self.conductivity_S_m() * g.area_m2)

    # --- time evolution -----------------------------------------------------------------
    def voltage(self, current_A: float) -> float:
        """Noise-free terminal voltage at ``current_A`` in the present state (no time passes)."""
        return current_A * self.bulk_resistance_ohm()

    def advance_to(self, time_s: float, current_A: float) -> None:
        """Pass constant ``current_A`` from the present time until ``time_s``."""
        dt = time_s - self.time_s
        if dt < 0:
            raise ValueError(f"cannot go back in time from {self.time_s} s to {time_s} s")
        self._charge_passed_C += abs(current_A) * dt
        self.time_s = float(time_s)

    def hold(self, current_A: float, sample_times_s: ArrayLike) -> np.ndarray:
        """Pass ``current_A`` and return the measured (noisy) voltage at each sample time.

        ``sample_times_s`` are absolute, non-decreasing and not before :attr:`time_s`; the cell
        ends at the last sample time.
        """
        times = np.asarray(sample_times_s, dtype=float)
        out = np.empty(times.shape)
        for i, t in enumerate(times):
            self.advance_to(t, current_A)
            out[i] = self.voltage(current_A)
        return out + self._rng.normal(0.0, self.noise_V, size=out.shape)

    def impedance(self, frequency_Hz: ArrayLike, *, noise: bool = True) -> np.ndarray:
        """Complex impedance Z(f) in ohm of the cell in its present state."""
        f = np.asarray(frequency_Hz, dtype=float)
        w = 2 * np.pi * f
        r = self.bulk_resistance_ohm()
        z = r + 1.0 / (1j * w * 1e-6 * self.geometry.area_m2 / 1e-4)
        if noise:
            z = z * (1 + self._rng.normal(0, 1e-3, f.shape))
        return z

    @property
    def shorted(self) -> bool:
        """Whether a filament has shorted the cell."""
        return False

    @property
    def state(self) -> CellState:
        """Snapshot of the explicit state."""
        return CellState(
            time_s=self.time_s,
            temperature_K=self.temperature_K,
            charge_passed_C=self._charge_passed_C,
            damage=0.0,
            shorted=self.shorted,
        )
