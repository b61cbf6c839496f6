"""The description of a bench: which potentiostat, oven and tomography, real or simulated.

A :class:`BenchSpec` says what to open; :func:`insitu.protocols.bench.open_bench` opens it.
It is checked when it is made, so a bench that cannot exist (a simulated oven around a real
cell, a simulated beamline with nothing to image) fails before any instrument is touched,
with a :class:`BenchSpecError` that says how to fix it. :meth:`BenchSpec.from_experiment`
maps the ``devices`` section of an experiment file onto it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, InitVar, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.faults import InstrumentFaults, WireFaults
from insitu.simulators.materials import get_material

from ..errors import UserError
from .emulated import SIM_PREFIX, EmulatorKind, is_sim_resource

if TYPE_CHECKING:
    from insitu.simulators.beamline.faults import BeamlineFaults

    from ..experiment_config import ExperimentConfig

__all__ = [
    "CELL_CHECKPOINT",
    "BenchSpec",
    "BenchSpecError",
    "EpicsBeamline",
    "SimTomography",
    "insitu_geometry",
]

#: The simulated cell's checkpoint in an experiment's folder.
CELL_CHECKPOINT = "cell.pkl"

#: The simulated beamlines: in this process, or a caproto IOC reached over Channel Access.
SimTomography = Literal["sim", "sim-epics"]


class BenchSpecError(UserError, ValueError):
    """A bench description that cannot be opened; the message says what to change."""


@dataclass(frozen=True)
class EpicsBeamline:
    """A real tomography end station: where its PVs are.

    Parameters
    ----------
    prefix : str
        Prefix of every PV, e.g. ``"2bma:"``.
    stage_pv, camera_prefix, ring_current_pv : str
        PV names after the prefix: the rotation stage's motor record, the camera, the ring
        current (those of :func:`insitu.instruments.devices.tomo.epics_tomo_devices`).
    """

    prefix: str
    stage_pv: str = "m1"
    camera_prefix: str = "cam1:"
    ring_current_pv: str = "RingCurrent"


@dataclass(frozen=True)
class BenchSpec:
    """What a bench is made of; :func:`~insitu.protocols.bench.open_bench` opens it.

    Parameters
    ----------
    potentiostat : str, optional
        A potentiostat resource (VISA ``TCPIP::…::SOCKET``, a serial port…, see
        :func:`insitu.instruments.resources.open_potentiostat`), or ``sim:MATERIAL``: a
        virtual cell of that preset behind an emulator on 127.0.0.1. ``None``: no
        potentiostat (a tomography bench alone).
    emulator : {"keithley2450", "methodscript"}
        Simulated potentiostat only: which instrument's wire protocol the emulator speaks
        (a Keithley 2450 SourceMeter over SCPI, or a PalmSens EmStat4 over MethodSCRIPT, the
        one that measures EIS). ``sim_protocol=`` is accepted as an alias.
    timeout_s : float
        Instrument answer timeout, in real seconds.
    oven : str, optional
        Temperature controller: a Lake Shore 336 resource, or ``"sim"`` (with a simulated
        potentiostat) for an emulated oven holding the virtual cell.
    oven_tolerance_K, oven_settle_time_s, oven_timeout_s : float
        The oven is settled within the tolerance for the settle time (simulated seconds on a
        simulated bench), giving up after the timeout (``None``: never).
    tomography : {"sim", "sim-epics"} or EpicsBeamline, optional
        ``"sim"``: simulated 2-BM devices in this process; ``"sim-epics"``: the simulated
        beamline as a caproto IOC in its own process, reached through ordinary ophyd EPICS
        devices; an :class:`EpicsBeamline`: a real beamline's PVs; ``None``: no tomography.
        With a simulated potentiostat the simulated beamline images that same cell, in the
        state it is in when each scan starts.
    scans : str or Path, optional
        Folder the simulated camera writes its Data Exchange files to (created on open).
    frame_source : callable or str, optional
        Simulated beamline without a simulated potentiostat: what the camera sees.
        ``"sim"``: a :data:`~insitu.simulators.beamline.devices.FrameSource`
        (``frame_source(angle_rad, kind)``; its ``shape`` attribute, if it has one, sets the
        frame shape; the bench does not close it). ``"sim-epics"``: ``"package.module:callable"``
        that the IOC loads (default: a disc phantom).
    frame_source_kwargs : mapping, optional
        ``"sim-epics"`` only: JSON-friendly keyword arguments of that callable.
    metadata : mapping, optional
        Data Exchange metadata of the simulated camera, over its 2-BM defaults.
    size : {"small", "full"}
        The simulated pellet the beamline images (64 × 128 × 128 voxels of 3 µm, or the full
        one).
    n_projections : int, optional
        Nominal projections per scan of that pellet (default: the size's).
    exposure_s : float
        Exposure per frame of that pellet.
    speedup : float
        Simulated seconds per real second of the one simulation clock (while current flows,
        when ``rest_speedup`` is given).
    rest_speedup : float, optional
        Simulated potentiostat only: the bench gets a :class:`~insitu.protocols.bench.SimPace`
        (``bench.pace``, subscribe it to the RunEngine) that runs the clock at ``speedup``
        while current flows and at ``rest_speedup`` otherwise.
    seed : int or None
        Seed of the simulated cell's noise and damage (and of the imaged pellet).
    geometry : CellGeometry, optional
        The simulated cell (default: the lab CCD cell).
    temperature_C : float, optional
        The simulated cell's starting temperature, over the geometry's.
    cell : VirtualCell, optional
        Serve this existing cell (e.g. loaded from a checkpoint) instead of a new one; it
        keeps its own geometry, temperature and random state.
    checkpoint : str or Path, optional
        Save the simulated cell here every half second and at exit (what
        ``insitu experiment resume`` continues from).
    restore : bool
        Continue with the cell saved at ``checkpoint`` instead of a new one.
    faults : WireFaults, optional
        Simulated potentiostat only: a faulty cable between its driver and the emulator
        (:mod:`insitu.simulators.faults`); what it did is counted in ``bench.sim.link``.
    instrument_faults : InstrumentFaults, optional
        Simulated potentiostat only: faults inside the emulated instrument itself (one of its
        own errors, or its readings flagged in compliance/overload, after N points).
    beamline_faults : BeamlineFaults, optional
        Simulated beamline only: frames the camera loses, a stage move that stalls, beam
        losses (:mod:`insitu.simulators.beamline.faults`), counted from the bench's opening;
        what was done is counted in ``bench.beamline_faults.injected``. The EPICS flavour
        (``"sim-epics"``) can only lose the beam.
    """

    potentiostat: str | None = None
    _: KW_ONLY
    emulator: EmulatorKind = "keithley2450"
    timeout_s: float = 5.0
    oven: str | None = None
    oven_tolerance_K: float = 0.5
    oven_settle_time_s: float = 600.0
    oven_timeout_s: float | None = None
    tomography: SimTomography | EpicsBeamline | None = None
    scans: Path | None = None
    frame_source: Any = None
    frame_source_kwargs: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    size: Literal["small", "full"] = "small"
    n_projections: int | None = None
    exposure_s: float = 0.1
    speedup: float = 1e5
    rest_speedup: float | None = None
    seed: int | None = 0
    geometry: CellGeometry | None = None
    temperature_C: float | None = None
    cell: VirtualCell | None = None
    checkpoint: Path | None = None
    restore: bool = False
    faults: WireFaults | None = None
    instrument_faults: InstrumentFaults | None = None
    beamline_faults: BeamlineFaults | None = None
    # The name the old keyword form used for ``emulator``.
    sim_protocol: InitVar[EmulatorKind | None] = None

    def __post_init__(self, sim_protocol: EmulatorKind | None) -> None:
        if sim_protocol is not None:
            if sim_protocol != self.emulator and self.emulator != "keithley2450":
                raise BenchSpecError(
                    f"emulator={self.emulator!r} and sim_protocol={sim_protocol!r} disagree; "
                    "give emulator= only"
                )
            object.__setattr__(self, "emulator", sim_protocol)
        for name in ("scans", "checkpoint"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        self._check()

    # --- what it describes -----------------------------------------------------------------
    @property
    def simulated(self) -> bool:
        """Whether the potentiostat, and so the cell, is simulated (``sim:MATERIAL``)."""
        return self.potentiostat is not None and is_sim_resource(self.potentiostat)

    @property
    def material(self) -> str | None:
        """The simulated cell's material preset, as given (``None`` for a real cell)."""
        if not self.simulated:
            return None
        assert self.potentiostat is not None
        return self.potentiostat.strip()[len(SIM_PREFIX) :]

    # --- checks ----------------------------------------------------------------------------
    def _check(self) -> None:
        if self.emulator not in get_args(EmulatorKind):
            raise BenchSpecError(
                f"unknown emulator {self.emulator!r}; choose {' or '.join(get_args(EmulatorKind))}"
            )
        if not self.speedup > 0 or (self.rest_speedup is not None and not self.rest_speedup > 0):
            raise BenchSpecError(
                f"speed-ups must be positive, got speedup={self.speedup!r}, "
                f"rest_speedup={self.rest_speedup!r}"
            )
        if self.simulated:
            get_material(self.material or "")  # fails with the list of valid names
            self._check_simulated_cell()
        else:
            self._check_real_cell()
        self._check_tomography()

    def _check_simulated_cell(self) -> None:
        if self.oven is not None and self.oven != "sim":
            raise BenchSpecError(
                f"a simulated cell can only sit in a simulated oven; use oven='sim' "
                f"(--oven sim), not {self.oven!r}"
            )
        if self.cell is not None and self.temperature_C is not None:
            raise BenchSpecError(
                "temperature_C sets up a new cell; the cell given keeps its own: leave "
                "temperature_C out"
            )
        if self.restore and self.cell is not None:
            raise BenchSpecError("restore=True loads the cell from checkpoint; do not give cell=")
        if self.restore and self.checkpoint is None:
            raise BenchSpecError("restore=True needs checkpoint=PATH, the cell to continue with")

    def _check_real_cell(self) -> None:
        if self.oven == "sim":
            raise BenchSpecError(
                "a simulated oven needs a simulated cell: use potentiostat='sim:MATERIAL' "
                "(--instrument sim:MATERIAL)"
            )
        simulation_only = {
            "cell": self.cell is not None,
            "checkpoint": self.checkpoint is not None,
            "restore": self.restore,
            "rest_speedup": self.rest_speedup is not None,
            "temperature_C": self.temperature_C is not None,
            "faults": self.faults is not None and self.faults.any,
            "instrument_faults": self.instrument_faults is not None and self.instrument_faults.any,
        }
        given = [name for name, is_given in simulation_only.items() if is_given]
        if given:
            raise BenchSpecError(
                f"{', '.join(given)} only apply to a simulated cell, and this bench has "
                f"{'no potentiostat' if self.potentiostat is None else repr(self.potentiostat)}"
                ": leave them out or use potentiostat='sim:MATERIAL'"
            )

    def _check_beamline_faults(self) -> None:
        faults = self.beamline_faults
        if faults is None or not faults.any:
            return
        tomo = self.tomography
        if tomo not in get_args(SimTomography):
            where = "no beamline" if tomo is None else f"the real beamline {tomo.prefix!r}"
            raise BenchSpecError(
                f"beamline faults ({faults}) are injected on a simulated beamline only, and "
                f"this bench has {where}: leave them out or use tomography='sim'"
            )
        try:
            faults.check_flavour(str(tomo))
        except ValueError as exc:
            raise BenchSpecError(str(exc)) from None

    def _check_tomography(self) -> None:
        self._check_beamline_faults()
        tomo = self.tomography
        if tomo is None or isinstance(tomo, EpicsBeamline):
            if self.frame_source is not None:
                raise BenchSpecError(
                    "frame_source feeds a simulated beamline: give tomography='sim' or "
                    "'sim-epics' with it, or leave it out"
                )
            return
        if tomo not in get_args(SimTomography):
            raise BenchSpecError(
                f"unknown tomography {tomo!r}: give 'sim', 'sim-epics', "
                f"EpicsBeamline(prefix=...) for a real beamline, or None"
            )
        if self.scans is None:
            raise BenchSpecError(
                f"tomography={tomo!r} writes Data Exchange files: give scans=FOLDER"
            )
        if self.potentiostat is not None and not self.simulated:
            raise BenchSpecError(
                "a simulated beamline images the simulated cell: use potentiostat="
                "'sim:MATERIAL', or tomography=EpicsBeamline(prefix=...) for a real beamline"
            )
        if self.simulated and self.frame_source is not None:
            raise BenchSpecError(
                "the simulated beamline images the simulated cell; leave frame_source out "
                "(or the potentiostat, to image a frame source alone)"
            )
        if tomo == "sim" and self.potentiostat is None and not callable(self.frame_source):
            raise BenchSpecError(
                "tomography='sim' without a simulated cell needs frame_source="
                "callable(angle_rad, kind), or potentiostat='sim:MATERIAL' to image that cell"
            )
        if tomo == "sim-epics" and self.frame_source is not None:
            if not isinstance(self.frame_source, str) or ":" not in self.frame_source:
                raise BenchSpecError(
                    "tomography='sim-epics' runs the camera in an IOC process: give "
                    f"frame_source='package.module:callable', not {self.frame_source!r}"
                )

    # --- from an experiment file -----------------------------------------------------------
    @classmethod
    def from_experiment(
        cls, cfg: ExperimentConfig, folder: str | Path, *, restore: bool = False
    ) -> BenchSpec:
        """The bench of an in-situ experiment (the ``devices`` section of its file).

        Parameters
        ----------
        cfg : ExperimentConfig
            The validated experiment.
        folder : str or Path
            The experiment's folder: scans go to ``folder/scans``, a simulated cell is
            checkpointed to ``folder/cell.pkl``.
        restore : bool
            Simulated cell: continue with the checkpointed cell (a resume).

        Returns
        -------
        BenchSpec
            ``potentiostat: sim`` is ``sim:MATERIAL`` with the in-situ cell (3 mm pellet,
            0.5 MPa, the experiment's area and thickness), paced between
            ``simulation.speedup`` (current flowing) and ``simulation.rest_speedup``;
            ``tomography: epics`` is an :class:`EpicsBeamline` at ``epics_prefix``;
            ``none`` is no tomography. The file's ``faults`` section gives ``faults`` and
            ``instrument_faults`` (its ``potentiostat`` string, the wire's seeded with
            ``simulation.seed``) and ``beamline_faults`` (its ``beamline`` string).
        """
        dev = cfg.devices
        sim = dev.simulation
        folder = Path(folder)
        tomography: SimTomography | EpicsBeamline | None
        if dev.tomography == "none":
            tomography = None
        elif dev.tomography == "epics":
            tomography = EpicsBeamline(dev.epics_prefix or "")
        else:
            tomography = dev.tomography
        spec = cls(
            f"{SIM_PREFIX}{cfg.material}" if dev.simulated else dev.potentiostat,
            emulator=sim.emulator,
            timeout_s=dev.timeout_s,
            tomography=tomography,
            scans=folder / "scans",
            size=sim.size,
            n_projections=cfg.n_projections,
            exposure_s=cfg.scan.exposure_s,
            speedup=sim.speedup,
            seed=sim.seed,
        )
        if dev.simulated:
            spec = replace(
                spec,
                rest_speedup=sim.rest_speedup,
                geometry=insitu_geometry(cfg),
                checkpoint=folder / CELL_CHECKPOINT,
                restore=restore,
            )
        faults = cfg.faults
        if faults.potentiostat or faults.beamline:
            # The file was checked: faults only where the devices are simulated.
            spec = replace(
                spec,
                faults=faults.wire_faults(seed=sim.seed),
                instrument_faults=faults.instrument_faults(),
                beamline_faults=faults.beamline_faults(),
            )
        return spec


def insitu_geometry(cfg: ExperimentConfig) -> CellGeometry:
    """The in-situ cell (3 mm pellet, 0.5 MPa) with the experiment's area and thickness."""
    geometry = replace(CellGeometry.insitu(), area_m2=cfg.geometry.area_cm2 * 1e-4)
    if cfg.geometry.thickness_cm is not None:
        geometry = replace(geometry, thickness_m=cfg.geometry.thickness_cm * 1e-2)
    return geometry
