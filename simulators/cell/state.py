"""Frozen snapshots of the virtual cell's explicit state (what tomography images later).

:class:`CellState` is what :attr:`insitu.simulators.cell.model.VirtualCell.state` returns: per
electrode (:class:`ElectrodeState`) the Li foil, interphase, contact loss and charge
bookkeeping, and the list of cracks (:class:`CrackState`) with the Li they hold.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CellState", "CrackState", "ElectrodeState"]


@dataclass(frozen=True)
class ElectrodeState:
    """One Li electrode (``"working"`` or ``"counter"``) and its interface.

    Attributes
    ----------
    name : str
        ``"working"`` or ``"counter"``.
    li_thickness_m : float
        Li foil thickness (0 for a blocking electrode). Changes by Ω·Q/(F·A) with the charge
        plated onto / stripped from the foil itself (charge that goes into cracks does not
        thicken the foil).
    interphase_thickness_m : float
        Interphase (SEI) thickness between Li and electrolyte.
    interphase_resistance_ohm_m2 : float
        Area-specific resistance of the interphase at full contact.
    charge_transfer_resistance_ohm_m2 : float
        Area-specific Butler–Volmer charge-transfer resistance RT/(F j0) at full contact.
    void_depth_m : float
        Excess stripped Li thickness not yet refilled by creep (the void state variable).
    void_fraction : float
        Fraction of the interface area lost to voids (contact fraction = 1 - void_fraction).
    plated_charge_C : float
        Cumulative Faradaic charge plated at this electrode.
    stripped_charge_C : float
        Cumulative Faradaic charge stripped from this electrode.
    """

    name: str
    li_thickness_m: float
    interphase_thickness_m: float
    interphase_resistance_ohm_m2: float
    charge_transfer_resistance_ohm_m2: float
    void_depth_m: float
    void_fraction: float
    plated_charge_C: float
    stripped_charge_C: float

    @property
    def contact_fraction(self) -> float:
        """Fraction of the nominal area in contact with the electrolyte."""
        return 1.0 - self.void_fraction


@dataclass(frozen=True)
class CrackState:
    """One crack: edge chip at its origin electrode growing through the pellet.

    Attributes
    ----------
    index : int
        Order of nucleation (0 = first).
    radius_fraction : float
        In-plane position of the nucleus as a fraction of the pellet radius (near 1: edge).
    angle_rad : float
        In-plane polar angle of the nucleus.
    direction_rad : float
        In-plane direction of lateral growth.
    origin : str
        Electrode at whose interface the crack nucleated (the stripping one at the time).
    nucleation_time_s : float
        Simulation time of nucleation.
    depth_fraction : float
        Depth through the pellet thickness from the origin face, 0..1 (1 = through).
    depth_m : float
        The same depth in metres.
    length_m : float
        Lateral (in-plane) extent.
    opening_m : float
        Opening of the empty crack at its mouth.
    li_volume_m3 : float
        Electrochemically active Li in the crack (grows on plating, returns on stripping).
    dead_li_volume_m3 : float
        Isolated Li left in the crack.
    """

    index: int
    radius_fraction: float
    angle_rad: float
    direction_rad: float
    origin: str
    nucleation_time_s: float
    depth_fraction: float
    depth_m: float
    length_m: float
    opening_m: float
    li_volume_m3: float
    dead_li_volume_m3: float

    @property
    def void_volume_m3(self) -> float:
        """Empty wedge volume ½·depth·length·opening (without Li)."""
        return 0.5 * self.depth_m * self.length_m * self.opening_m

    @property
    def total_li_volume_m3(self) -> float:
        """Active plus dead Li."""
        return self.li_volume_m3 + self.dead_li_volume_m3

    @property
    def transparent_volume_m3(self) -> float:
        """X-ray transparent volume: the empty wedge plus the Li that wedges it open."""
        return self.void_volume_m3 + self.total_li_volume_m3


@dataclass(frozen=True)
class CellState:
    """Snapshot of the cell's explicit state.

    Attributes
    ----------
    time_s : float
        Simulation time.
    temperature_K : float
        Cell temperature.
    charge_passed_C : float
        ∫|I| dt through the terminals.
    damage : float
        0 (pristine) .. 1 (a crack through the pellet: short).
    shorted : bool
        Whether a filament has shorted the cell (stays shorted).
    short_time_s : float or None
        When the short happened.
    short_charge_C : float or None
        Charge passed through the terminals (∫|I| dt) when the short happened: the cell's
        charge-to-failure in the convention of the in-situ experiment.
    working, counter : ElectrodeState
        The two electrodes.
    cracks : tuple of CrackState
        Cracks in nucleation order (empty before damage starts).
    double_layer_voltage_V : float
        Voltage on the double layers of a blocking cell (0 for Li electrodes).
    """

    time_s: float
    temperature_K: float
    charge_passed_C: float
    damage: float
    shorted: bool
    short_time_s: float | None
    working: ElectrodeState
    counter: ElectrodeState
    cracks: tuple[CrackState, ...]
    double_layer_voltage_V: float = 0.0
    short_charge_C: float | None = None

    @property
    def electrodes(self) -> tuple[ElectrodeState, ElectrodeState]:
        """``(working, counter)``."""
        return (self.working, self.counter)

    @property
    def crack_li_volume_m3(self) -> float:
        """Li held in all cracks (active + dead)."""
        return sum(c.total_li_volume_m3 for c in self.cracks)

    @property
    def crack_transparent_volume_m3(self) -> float:
        """X-ray transparent volume of all cracks (empty wedge + Li)."""
        return sum(c.transparent_volume_m3 for c in self.cracks)
