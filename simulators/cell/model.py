"""The virtual Li|SE|Li cell: the physics behind every simulated potentiostat.

Model
-----
The terminal voltage of a Li|SE|Li cell at current I (density j = I/A) is ::

    V = I·L/(σA) + Σ_electrodes sign(I)·[(2RT/F)·asinh(|j|/(2 j0 c)) + |j|·R_sei/c]

* **Electrolyte**: σ(T) from the preset's σ at 25 °C and Eₐ with the convention
  σ·T = A·exp(-Eₐ/kT) (:meth:`VirtualCell.conductivity_S_m`), split into grain (bulk) and
  grain-boundary parts for EIS; their sum is L/(σA).
* **Charge transfer**: Butler–Volmer with α = 0.5 (the asinh form), j0 per material.
* **Interphase**: thickness δ grows parabolically in contact with Li, δ² = δ0² + k·t
  (strongly for the unstable A-LPS interphase, weakly for the LiI-doped metastable ones);
  area-specific resistance δ/σ_sei.
* **Contact loss**: the excess stripped Li thickness not refilled by Li creep, ``h``, grows
  at ``Ω·j_strip/F - v_creep(P, T)`` and shrinks when plating or resting; the contact fraction
  is ``c = c_P·h0/(h0 + h)`` with c_P = min(1, (P/29 MPa)^0.3) and h0 ∝ P. The current
  crosses only the contacting area, so both interfacial terms are divided by c.
* **Damage**: ``dD/dt = max(0, j/c - j_c)/q_c`` with ``j/c`` the local current density at the
  stripping electrode (j_c and q_c from the lab calibration at 29 MPa, from the in-situ
  calibration, :func:`insitu_damage_law`, at the in-situ cell's ≤ 0.5 MPa, interpolated
  in between); cracks nucleate at the stripping electrode once damage starts, grow
  through the thickness with damage and take up Li while their origin electrode plates. At
  D = 1 a Li filament shorts the cell: a resistance in parallel falling from 10 kΩ to 0.5 Ω
  within minutes, after which no more Li is transferred.
* **Blocking electrodes**: no Faradaic current; DC charges the double layers (with a large
  leakage resistance so the response stays finite).

The model constants are in :mod:`insitu.simulators.cell.parameters`, the EIS circuit in
:mod:`insitu.simulators.cell.eis`, the state snapshots in :mod:`insitu.simulators.cell.state`.

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

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ..materials import MaterialPreset, get_material
from . import parameters as cp
from .damage import Crack, fill_cracks, nucleate_cracks
from .eis import EquivalentCircuit
from .parameters import (
    BOLTZMANN_EV,
    FARADAY_C_MOL,
    GAS_CONSTANT_J_MOL_K,
    LI_MOLAR_VOLUME_M3_MOL,
    REFERENCE_TEMPERATURE_K,
    ROOM_TEMPERATURE_K,
    CellParameters,
    arrhenius_factor,
    get_cell_parameters,
)
from .state import CellState, CrackState, ElectrodeState

__all__ = [
    "BOLTZMANN_EV",
    "ELECTRODES",
    "CellGeometry",
    "CellState",
    "CrackState",
    "ElectrodeState",
    "InsituDamageLaw",
    "VirtualCell",
    "insitu_damage_law",
]

ELECTRODES = ("working", "counter")
_EIS_NOISE_RELATIVE = 3e-3  # relative noise of |Z| of a bench potentiostat, ~0.3 %


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

    def __post_init__(self) -> None:
        if self.electrodes not in ("li", "blocking"):
            raise ValueError(f"electrodes must be 'li' or 'blocking', got {self.electrodes!r}")
        for name in ("area_m2", "thickness_m", "temperature_K", "stack_pressure_Pa"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")

    @property
    def radius_m(self) -> float:
        """Radius of the (round) pellet."""
        return float(np.sqrt(self.area_m2 / np.pi))

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
            stack_pressure_Pa=cp.INSITU_PRESSURE_PA,
        )


@dataclass(frozen=True)
class InsituDamageLaw:
    """Damage constants of the in-situ cell of one material (see :func:`insitu_damage_law`).

    Attributes
    ----------
    critical_current_A_m2 : float
        j_c at ``temperature_K`` (scaled with σ(T) at other temperatures, as the lab j_c).
    damage_charge_C_m2 : float
        q_c: excess local charge density above j_c that takes damage from 0 to 1.
    temperature_K : float
        Temperature of the in-situ cell the constants were derived at.
    failure_local_current_A_m2 : float
        Local current density at the stripping electrode when the calibrated cell fails.
    """

    critical_current_A_m2: float
    damage_charge_C_m2: float
    temperature_K: float
    failure_local_current_A_m2: float


def _insitu_weight(stack_pressure_Pa: float) -> float:
    """Weight of the in-situ damage constants: 0 at ≥ 29 MPa, 1 at ≤ 0.5 MPa, log-linear between."""
    span = np.log(cp.REFERENCE_PRESSURE_PA / cp.INSITU_PRESSURE_PA)
    w = np.log(cp.REFERENCE_PRESSURE_PA / stack_pressure_Pa) / span
    return float(np.clip(w, 0.0, 1.0))


def insitu_damage_law(material: str | MaterialPreset) -> InsituDamageLaw:
    """Derive the in-situ cell's damage constants from the preset's in-situ charge-to-failure.

    The lab pair (j_c, q_c) is fixed by the lab failure (:mod:`~insitu.simulators.
    cell_parameters`); this fixes the in-situ pair the same way from
    ``insitu_charge_to_failure_mC``, because at ≤ 0.5 MPa the failure is governed by the
    void-limited local current density rather than the nominal one, and the paper ascribes the
    in-situ differences between materials to the in-situ assembly. The cell of
    :meth:`CellGeometry.insitu` is run through the in-situ protocol
    (:data:`~insitu.simulators.cell.parameters.INSITU_DENSITIES_MA_CM2`, full half-cycles of
    :data:`~insitu.simulators.cell.parameters.INSITU_HALF_CYCLE_S`) with damage switched off,
    recording the local current density ``j_loc`` at the stripping electrode on the damage
    law's own integration grid (the voids do not depend on damage). With ``Q_f`` the
    charge-to-failure (∫|I|dt):

    * ``j_c = INSITU_CRITICAL_FRACTION · j_loc(Q_f)``, so damage is still growing at ``Q_f``;
    * ``q_c = ∫ max(0, j_loc - j_c) dt`` up to ``Q_f``, with the same trapezoidal rule and
      linear interpolation as :class:`VirtualCell` uses, so damage reaches 1 at ``Q_f``.

    Parameters
    ----------
    material : str or MaterialPreset
        Preset name or preset.

    Returns
    -------
    InsituDamageLaw

    Raises
    ------
    ValueError
        If the protocol passes less charge than the preset's in-situ charge-to-failure.
    """
    return _insitu_damage_law(get_material(material))


@functools.cache
def _insitu_damage_law(preset: MaterialPreset) -> InsituDamageLaw:
    """:func:`insitu_damage_law` of a resolved preset, derived once per preset."""
    cell = VirtualCell(preset, CellGeometry.insitu(), seed=0, noise_V=0.0)
    trace: list[tuple[np.ndarray, np.ndarray, float, float]] = []
    cell._local_trace = trace
    target_C = preset.insitu_charge_to_failure_mC * 1e-3
    area = cell.geometry.area_m2
    for j_mA_cm2 in cp.INSITU_DENSITIES_MA_CM2:
        current_A = j_mA_cm2 * 10.0 * area
        for sign in (1.0, -1.0):
            if cell.state.charge_passed_C >= target_C:
                break
            cell.advance_to(cell.time_s + cp.INSITU_HALF_CYCLE_S, sign * current_A)
    if cell.state.charge_passed_C < target_C:
        raise ValueError(
            f"the in-situ protocol passes only {cell.state.charge_passed_C * 1e3:.4g} mC, less "
            f"than the in-situ charge-to-failure of {preset.name} "
            f"({preset.insitu_charge_to_failure_mC:g} mC)"
        )
    # The hold in which Q_f falls, and j_loc there.
    charges = [q0 + i_abs * (grid - grid[0]) for grid, _, q0, i_abs in trace]
    k = next(i for i, q in enumerate(charges) if q[-1] >= target_C)
    j_fail = float(np.interp(target_C, charges[k], trace[k][1]))
    j_c = cp.INSITU_CRITICAL_FRACTION * j_fail
    q_c = 0.0
    for i in range(k + 1):
        grid, j_loc, _, _ = trace[i]
        excess = np.maximum(j_loc - j_c, 0.0)
        cumulative = np.concatenate(
            ([0.0], np.cumsum(0.5 * (excess[1:] + excess[:-1]) * np.diff(grid)))
        )
        q_c += cumulative[-1] if i < k else float(np.interp(target_C, charges[i], cumulative))
    return InsituDamageLaw(
        critical_current_A_m2=j_c,
        damage_charge_C_m2=q_c,
        temperature_K=cell.geometry.temperature_K,
        failure_local_current_A_m2=j_fail,
    )


class _Rates(NamedTuple):
    """Temperature- and pressure-dependent rates at the present conditions."""

    electrolyte_ohm: float  # L/(σA)
    thermal_V: float  # 2RT/F, the asinh prefactor for α = 0.5
    exchange_A_m2: float  # j0
    interphase_S_m: float  # σ_sei
    interphase_rate_m2_s: float  # k of δ² = δ0² + k t
    creep_m_s: float  # void refill velocity Ω·j_void_free/F
    void_scale_m: float  # h0 of the contact fraction c_P·h0/(h0 + h)
    contact_pressure: float  # c_P, void-free contact fraction set by the stack pressure
    critical_A_m2: float  # j_c
    damage_charge_C_m2: float  # q_c


class VirtualCell:
    """A symmetric Li|SE|Li (or blocking) cell of one material preset.

    Parameters
    ----------
    material : str or MaterialPreset
        Preset name, e.g. ``"A-LPS"``.
    geometry : CellGeometry, optional
        Defaults to the lab CCD cell.
    seed : int or None
        Seed of the measurement noise and of the crack positions; the same seed gives the
        same data.
    noise_V : float
        Standard deviation of the voltage measurement noise.
    start_time_s : float
        Simulation time at which the cell is assembled.

    Attributes
    ----------
    material : MaterialPreset
    parameters : CellParameters
        Model constants of the material.
    geometry : CellGeometry
    temperature_K : float
        Present temperature; an oven may set it.
    time_s : float
        Present simulation time.
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
        self.parameters: CellParameters = get_cell_parameters(self.material)
        self.geometry = geometry or CellGeometry.lab_ccd()
        self.temperature_K = float(self.geometry.temperature_K)
        self.noise_V = float(noise_V)
        # Separate streams so crack positions do not depend on how often data were sampled.
        noise_seq, crack_seq = np.random.SeedSequence(seed).spawn(2)
        self._rng = np.random.default_rng(noise_seq)
        self._crack_rng = np.random.default_rng(crack_seq)
        self.time_s = float(start_time_s)
        li = not self.blocking
        self._li_m = np.full(2, self.geometry.li_thickness_m if li else 0.0)
        self._sei_m = np.full(2, self.parameters.interphase_initial_m if li else 0.0)
        self._void_m = np.zeros(2)
        self._plated_C = np.zeros(2)
        self._stripped_C = np.zeros(2)
        self._damage = 0.0
        self._cracks: list[Crack] = []
        self._short_time_s: float | None = None
        self._short_charge_C: float | None = None
        self._charge_passed_C = 0.0
        self._hold_start_charge_C = 0.0  # ∫|I| dt at the start of the present hold
        # Set only by insitu_damage_law: damage off, and each hold's grid, local current
        # density at the stripping electrode, charge passed at its start and |I| recorded.
        self._local_trace: list[tuple[np.ndarray, np.ndarray, float, float]] | None = None
        self._dl_voltage_V = 0.0
        # Charge moved into (+) or out of (-) cracks at each electrode in the present hold.
        self._crack_charge_C = np.zeros(2)

    # --- material laws -------------------------------------------------------------------
    @property
    def blocking(self) -> bool:
        """Whether the electrodes are blocking (no Faradaic current)."""
        return self.geometry.electrodes == "blocking"

    def conductivity_S_m(self, temperature_K: float | None = None) -> float:
        """Total (bulk + grain boundary) ionic conductivity σ(T) in S/m.

        Arrhenius with the σ·T convention, σ·T = A·exp(-Eₐ/kT), through the preset's σ at
        25 °C and Eₐ: a fit of ln(σT) against 1/T recovers both exactly.
        """
        t = self.temperature_K if temperature_K is None else float(temperature_K)
        m = self.material
        sigma_rt = m.sigma_rt_S_cm * 100.0
        inv = 1.0 / t - 1.0 / ROOM_TEMPERATURE_K
        return float(
            sigma_rt * ROOM_TEMPERATURE_K / t * np.exp(-m.activation_energy_eV / BOLTZMANN_EV * inv)
        )

    def bulk_resistance_ohm(self) -> float:
        """Total electrolyte resistance L/(σA) (grain + grain boundary) at the present T."""
        g = self.geometry
        return g.thickness_m / (self.conductivity_S_m() * g.area_m2)

    def _rates(self) -> _Rates:
        p, g, t = self.parameters, self.geometry, self.temperature_K
        pressure = g.stack_pressure_Pa / cp.REFERENCE_PRESSURE_PA
        void_free = (
            p.void_free_current_A_m2
            * float(arrhenius_factor(cp.CREEP_ACTIVATION_EV, t))
            * pressure**cp.CREEP_PRESSURE_EXPONENT
        )
        # Nucleation theory (Eq. 1): j* ∝ 1/ρ, so j_c follows σ(T).
        sigma_ratio = self.conductivity_S_m(t) / self.conductivity_S_m(REFERENCE_TEMPERATURE_K)
        critical = p.critical_current_A_m2 * sigma_ratio
        damage_charge = p.damage_charge_C_m2
        w = _insitu_weight(g.stack_pressure_Pa)
        if self._local_trace is not None:
            critical, damage_charge = np.inf, 1.0  # deriving the in-situ law: no damage
        elif w > 0.0 and not self.blocking:
            # Low stack pressure: geometric interpolation towards the in-situ calibration,
            # whose j_c keeps the σ(T) scaling about its own temperature.
            law = _insitu_damage_law(self.material)
            insitu_critical = law.critical_current_A_m2 * (
                self.conductivity_S_m(t) / self.conductivity_S_m(law.temperature_K)
            )
            critical = critical ** (1.0 - w) * insitu_critical**w
            damage_charge = damage_charge ** (1.0 - w) * law.damage_charge_C_m2**w
        return _Rates(
            electrolyte_ohm=self.bulk_resistance_ohm(),
            thermal_V=2.0 * GAS_CONSTANT_J_MOL_K * t / FARADAY_C_MOL,
            exchange_A_m2=p.exchange_current_A_m2
            * float(arrhenius_factor(p.exchange_activation_eV, t)),
            interphase_S_m=p.interphase_conductivity_S_m
            * float(arrhenius_factor(p.interphase_conductivity_activation_eV, t)),
            interphase_rate_m2_s=p.interphase_rate_m2_s
            * float(arrhenius_factor(p.interphase_rate_activation_eV, t)),
            creep_m_s=LI_MOLAR_VOLUME_M3_MOL * void_free / FARADAY_C_MOL,
            void_scale_m=cp.VOID_SCALE_M * pressure**cp.VOID_SCALE_PRESSURE_EXPONENT,
            contact_pressure=min(1.0, pressure**cp.CONTACT_PRESSURE_EXPONENT),
            critical_A_m2=critical,
            damage_charge_C_m2=damage_charge,
        )

    @staticmethod
    def _contact(r: _Rates, void_m: np.ndarray) -> np.ndarray:
        """Contact fraction: pressure-limited contact times the void loss h0/(h0 + h)."""
        return r.contact_pressure * r.void_scale_m / (r.void_scale_m + void_m)

    def interface_resistance_ohm(self) -> np.ndarray:
        """Low-current resistance of each interface (working, counter), ohm.

        Charge transfer RT/(F j0) plus interphase δ/σ_sei, divided by the contact fraction
        and the area; zeros for blocking electrodes.
        """
        if self.blocking:
            return np.zeros(2)
        r = self._rates()
        contact = self._contact(r, self._void_m)
        r_area = 0.5 * r.thermal_V / r.exchange_A_m2 + self._sei_m / r.interphase_S_m
        return r_area / contact / self.geometry.area_m2

    # --- voltage --------------------------------------------------------------------------
    def _li_voltage(
        self, current_A: float, r: _Rates, sei_m: np.ndarray, void_m: np.ndarray
    ) -> np.ndarray:
        """Noise-free voltage of the unshorted Li cell for state arrays shaped (2, ...)."""
        j = current_A / self.geometry.area_m2
        if j == 0.0:
            return np.zeros(np.shape(sei_m)[1:])
        contact = self._contact(r, void_m)
        j_abs = abs(j)
        eta = r.thermal_V * np.arcsinh(j_abs / (2.0 * r.exchange_A_m2 * contact))
        eta = eta + j_abs * sei_m / (r.interphase_S_m * contact)
        return current_A * r.electrolyte_ohm + np.sign(j) * eta.sum(axis=0)

    def _short_ohm(self, time_s: np.ndarray | float) -> np.ndarray:
        ts = self._short_time_s
        elapsed = np.maximum(np.asarray(time_s, dtype=float) - ts, 0.0)
        return cp.SHORT_FINAL_OHM + cp.SHORT_INITIAL_OHM * np.exp(
            -elapsed / cp.SHORT_TIME_CONSTANT_S
        )

    def _with_short(self, current_A: float, v_cell: np.ndarray, r_short: np.ndarray):
        """Voltage with the short in parallel, the cell branch taken at its chord resistance."""
        if current_A == 0.0:
            return np.zeros_like(v_cell)
        ir = current_A * r_short
        return v_cell * ir / (ir + v_cell)

    def voltage(self, current_A: float) -> float:
        """Noise-free terminal voltage at ``current_A`` in the present state (no time passes)."""
        current_A = float(current_A)
        r = self._rates()
        if self.blocking:
            return current_A * r.electrolyte_ohm + self._dl_voltage_V
        v = self._li_voltage(current_A, r, self._sei_m[:, None], self._void_m[:, None])
        if self._short_time_s is not None:
            v = self._with_short(current_A, v, self._short_ohm(self.time_s))
        return float(v[0])

    # --- time evolution -----------------------------------------------------------------
    def advance_to(self, time_s: float, current_A: float) -> None:
        """Pass constant ``current_A`` from the present time until ``time_s``."""
        self._evolve(float(current_A), np.array([float(time_s)]))

    def hold(self, current_A: float, sample_times_s: ArrayLike) -> np.ndarray:
        """Pass ``current_A`` and return the measured (noisy) voltage at each sample time.

        Parameters
        ----------
        current_A : float
            Constant current over the whole hold.
        sample_times_s : array_like
            Absolute, non-decreasing sample times, not before :attr:`time_s`; the cell ends
            at the last one.

        Returns
        -------
        ndarray
            Voltages with Gaussian noise of standard deviation :attr:`noise_V`.
        """
        times = np.asarray(sample_times_s, dtype=float)
        flat = np.atleast_1d(times).ravel()
        v = self._evolve(float(current_A), flat)
        if self.noise_V > 0:
            v = v + self._rng.normal(0.0, self.noise_V, size=v.shape)
        return v.reshape(times.shape)

    def _evolve(self, current_A: float, times: np.ndarray) -> np.ndarray:
        """Advance the state over ``times`` at constant current; noise-free voltages."""
        if times.size == 0:
            return np.empty(0)
        t0 = self.time_s
        if times[0] < t0 - 1e-9 * max(1.0, abs(t0)) or np.any(np.diff(times) < 0):
            raise ValueError(
                f"sample times must be non-decreasing and not before the cell's time "
                f"{t0} s; got {times[0]} s .. {times[-1]} s"
            )
        times = np.maximum(times, t0)
        t_end = float(times[-1])
        r = self._rates()
        self._hold_start_charge_C = self._charge_passed_C
        self._charge_passed_C += abs(current_A) * (t_end - t0)
        if self.blocking:
            return self._evolve_blocking(current_A, r, times)

        area = self.geometry.area_m2
        j = current_A / area
        # Signed stripping flux per electrode: the working electrode strips for I > 0.
        strip = np.array([j, -j])
        void_rate = LI_MOLAR_VOLUME_M3_MOL * strip / FARADAY_C_MOL - r.creep_m_s
        sei0, void0 = self._sei_m.copy(), self._void_m.copy()

        # Faradaic current flows until the short (if any); afterwards the filament carries it.
        t_faradaic = t0 if self._short_time_s is not None else t_end
        if self._short_time_s is None and j != 0.0 and t_end > t0:
            t_faradaic = self._grow_damage(j, void_rate, r, t0, t_end)
        self._transfer_li(j, t_faradaic - t0)

        # Closed forms of the interphase and the voids at the sample times.
        tau = times - t0
        sei = np.sqrt(sei0[:, None] ** 2 + r.interphase_rate_m2_s * tau)
        void_fail = np.maximum(void0 + void_rate * (t_faradaic - t0), 0.0)
        void = np.where(
            times <= t_faradaic,
            np.maximum(void0[:, None] + void_rate[:, None] * tau, 0.0),
            np.maximum(void_fail[:, None] - r.creep_m_s * (times - t_faradaic), 0.0),
        )
        v = self._li_voltage(current_A, r, sei, void)
        if self._short_time_s is not None:
            after = times >= self._short_time_s
            v[after] = self._with_short(current_A, v[after], self._short_ohm(times[after]))

        self._sei_m = np.sqrt(sei0**2 + r.interphase_rate_m2_s * (t_end - t0))
        self._void_m = np.maximum(void_fail - r.creep_m_s * (t_end - t_faradaic), 0.0)
        self.time_s = t_end
        return v

    def _evolve_blocking(self, current_A: float, r: _Rates, times: np.ndarray) -> np.ndarray:
        """Blocking cell: DC charges the two double layers in series (RC with leakage)."""
        area = self.geometry.area_m2
        c_f = 0.5 * cp.BLOCKING_F_M2 * area
        r_leak = 2.0 * cp.BLOCKING_LEAK_OHM_M2 / area
        v_inf = current_A * r_leak
        decay = np.exp(-(times - self.time_s) / (r_leak * c_f))
        v_dl = v_inf + (self._dl_voltage_V - v_inf) * decay
        self._dl_voltage_V = float(v_dl[-1])
        self.time_s = float(times[-1])
        return current_A * r.electrolyte_ohm + v_dl

    def _grow_damage(
        self, j: float, void_rate: np.ndarray, r: _Rates, t0: float, t_end: float
    ) -> float:
        """Integrate damage on an internal grid; nucleate cracks, fill them, detect the short.

        Returns the end of the Faradaic period: the short time, or ``t_end``.
        """
        s = 0 if j > 0 else 1  # the stripping electrode
        n = max(1, int(np.ceil((t_end - t0) / cp.INTERNAL_STEP_S)))
        grid = np.linspace(t0, t_end, n + 1)
        void_s = np.maximum(self._void_m[s] + void_rate[s] * (grid - t0), 0.0)
        j_local = abs(j) / self._contact(r, void_s)
        if self._local_trace is not None:
            i_abs = abs(j) * self.geometry.area_m2
            self._local_trace.append((grid, j_local, self._hold_start_charge_C, i_abs))
        rate = np.maximum(j_local - r.critical_A_m2, 0.0) / r.damage_charge_C_m2
        damage = np.full(grid.shape, self._damage)
        if rate.any():
            damage[1:] += np.cumsum(0.5 * (rate[1:] + rate[:-1]) * np.diff(grid))
        t_stop = t_end
        if damage[-1] >= 1.0:
            i = int(np.argmax(damage >= 1.0))
            frac = (1.0 - damage[i - 1]) / (damage[i] - damage[i - 1])
            t_stop = float(grid[i - 1] + frac * (grid[i] - grid[i - 1]))
            grid = np.append(grid[:i], t_stop)
            damage = np.append(damage[:i], 1.0)
        nucleate_cracks(self._cracks, grid, damage, s, self.parameters.max_cracks, self._crack_rng)
        self._crack_charge_C = fill_cracks(self._cracks, j * self.geometry.area_m2, grid, damage)
        self._damage = float(min(damage[-1], 1.0))
        if self._damage >= 1.0:
            self._short_time_s = t_stop
            self._short_charge_C = self._hold_start_charge_C + abs(j) * self.geometry.area_m2 * (
                t_stop - t0
            )
        return t_stop

    def _transfer_li(self, j: float, duration_s: float) -> None:
        """Faradaic charge bookkeeping and foil thicknesses over ``duration_s``."""
        crack_C, self._crack_charge_C = self._crack_charge_C, np.zeros(2)
        if j == 0.0 or duration_s <= 0.0:
            return
        area = self.geometry.area_m2
        q = abs(j) * area * duration_s
        s, p = (0, 1) if j > 0 else (1, 0)
        self._stripped_C[s] += q
        self._plated_C[p] += q
        to_m = LI_MOLAR_VOLUME_M3_MOL / (FARADAY_C_MOL * area)
        # Li that goes into cracks (or comes back out of them) bypasses the foil.
        self._li_m[s] = max(self._li_m[s] - (q + crack_C[s]) * to_m, 0.0)
        self._li_m[p] += (q - crack_C[p]) * to_m

    # --- impedance ------------------------------------------------------------------------
    def equivalent_circuit(self) -> EquivalentCircuit:
        """Element values of the cell's equivalent circuit in its present state.

        ``bulk_ohm + grain_boundary_ohm`` equals :meth:`bulk_resistance_ohm`, L/(σA).
        """
        g, p = self.geometry, self.parameters
        r = self._rates()
        r_gb = p.grain_boundary_fraction * r.electrolyte_ohm
        c_geo = cp.VACUUM_PERMITTIVITY_F_M * cp.RELATIVE_PERMITTIVITY * g.area_m2 / g.thickness_m
        interfaces: list[tuple[float, float, float]] = []
        blocking: list[tuple[float, float]] = []
        if self.blocking:
            blocking = [(cp.BLOCKING_F_M2 * g.area_m2, cp.BLOCKING_EXPONENT)] * 2
        else:
            contact = self._contact(r, self._void_m)
            for r_int, c in zip(self.interface_resistance_ohm(), contact, strict=True):
                interfaces.append(
                    (float(r_int), cp.DOUBLE_LAYER_F_M2 * g.area_m2 * c, cp.DOUBLE_LAYER_EXPONENT)
                )
        short = None if self._short_time_s is None else float(self._short_ohm(self.time_s))
        return EquivalentCircuit(
            bulk_ohm=r.electrolyte_ohm - r_gb,
            geometric_F=c_geo,
            grain_boundary_ohm=r_gb,
            grain_boundary_q=p.grain_boundary_capacitance_ratio * c_geo,
            grain_boundary_exponent=cp.GRAIN_BOUNDARY_EXPONENT,
            interfaces=tuple(interfaces),
            blocking=tuple(blocking),
            short_ohm=short,
        )

    def impedance(self, frequency_Hz: ArrayLike, *, noise: bool = True) -> np.ndarray:
        """Complex impedance Z(f) in ohm of the cell in its present state.

        The circuit is :meth:`equivalent_circuit`: (R_b ‖ C_geo) + (R_gb ‖ CPE_gb) + per Li
        electrode (R_int ‖ CPE_dl), or per blocking electrode a series CPE; a shorted cell
        has the short resistance in parallel. R_b + R_gb = L/(σA) with σ the preset's σ(T):
        the intercept between the electrolyte and electrode responses, and the real-axis
        intercept of the extrapolated low-frequency spike of a blocking cell, give σ back.
        With ``noise``, each point gets independent relative Gaussian noise of 0.3 % on its
        real and imaginary parts (from the cell's seeded stream).
        """
        f = np.asarray(frequency_Hz, dtype=float)
        z = self.equivalent_circuit().impedance(f)
        if noise:
            eps = self._rng.normal(0.0, _EIS_NOISE_RELATIVE, size=(2, *f.shape))
            z = z.real * (1.0 + eps[0]) + 1j * z.imag * (1.0 + eps[1])
        return z

    # --- state ----------------------------------------------------------------------------
    @property
    def shorted(self) -> bool:
        """Whether a filament has shorted the cell (a shorted cell stays shorted)."""
        return self._short_time_s is not None

    @property
    def damage(self) -> float:
        """Damage 0 (pristine) .. 1 (short)."""
        return self._damage

    @property
    def state(self) -> CellState:
        """Frozen snapshot of the explicit state."""
        r = self._rates()
        li = not self.blocking
        contact = self._contact(r, self._void_m)
        electrodes = [
            ElectrodeState(
                name=name,
                li_thickness_m=float(self._li_m[k]),
                interphase_thickness_m=float(self._sei_m[k]),
                interphase_resistance_ohm_m2=float(self._sei_m[k] / r.interphase_S_m),
                charge_transfer_resistance_ohm_m2=0.5 * r.thermal_V / r.exchange_A_m2 if li else 0,
                void_depth_m=float(self._void_m[k]),
                void_fraction=float(1.0 - contact[k]),
                plated_charge_C=float(self._plated_C[k]),
                stripped_charge_C=float(self._stripped_C[k]),
            )
            for k, name in enumerate(ELECTRODES)
        ]
        thickness = self.geometry.thickness_m
        cracks = tuple(c.snapshot(self._damage, thickness, ELECTRODES) for c in self._cracks)
        return CellState(
            time_s=self.time_s,
            temperature_K=self.temperature_K,
            charge_passed_C=self._charge_passed_C,
            damage=self._damage,
            shorted=self.shorted,
            short_time_s=self._short_time_s,
            short_charge_C=self._short_charge_C,
            working=electrodes[0],
            counter=electrodes[1],
            cracks=cracks,
            double_layer_voltage_V=self._dl_voltage_V,
        )
