"""The in-situ experiment as one YAML file, validated before anything moves.

An experiment file names the sample and its material, the cell geometry, the electrochemical
schedule, the tomography scan, where runs are stored, which devices to use and what to
analyse while it runs. Every key has the seed paper's value as its default, so the smallest
valid file is ``material: A-LPS``::

    sample: S1
    material: A-LPS
    schedule:
      current_densities_mA_cm2: [0.04, 0.08, 0.1, 0.2]
      voltage_limit_V: 10
    scan: {n_projections: 180}
    devices:
      potentiostat: sim            # or a resource: TCPIP::10.0.0.5::5025::SOCKET, /dev/ttyACM0
      tomography: sim              # sim | sim-epics | epics (then epics_prefix: "2bma:")
    faults:                        # simulated devices only: test the software through them
      potentiostat: "delay=1%:0.2,garble=0.5%,disconnect=400"   # wire and instrument items
      beamline: "lose_frame=12,beam_loss=40:5"

The schema is pydantic (every model forbids unknown keys, so a typo is an error, not a
silently ignored setting); :func:`load_config` turns its errors into one
:class:`ExperimentConfigError` that names each bad key with its path in the file and says
what is allowed.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from insitu.simulators.beamline.faults import BeamlineFaults
from insitu.simulators.cell.parameters import INSITU_DENSITIES_MA_CM2, INSITU_HALF_CYCLE_S
from insitu.simulators.faults import InstrumentFaults, WireFaults
from insitu.simulators.materials import MATERIALS

from .errors import UserError
from .secrets import read_api_key

__all__ = [
    "AdaptiveConfig",
    "AnalysisConfig",
    "CatalogConfig",
    "DevicesConfig",
    "EisConfig",
    "ExperimentConfig",
    "ExperimentConfigError",
    "ExperimentError",
    "FaultsConfig",
    "GeometryConfig",
    "LimitsConfig",
    "ScanConfig",
    "ScheduleConfig",
    "SimulationConfig",
    "load_config",
    "validate_config",
]

#: The in-situ pellet of the paper: 3 mm diameter.
PAPER_PELLET_AREA_CM2 = math.pi * 0.15**2


class ExperimentError(UserError, ValueError):
    """An experiment that cannot be run, resumed or found as asked; the message says why."""


class ExperimentConfigError(ExperimentError):
    """An experiment file that cannot run; the message names every bad key and the fix."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GeometryConfig(_Model):
    """The cell: electrode area and electrolyte thickness."""

    area_cm2: float = Field(PAPER_PELLET_AREA_CM2, gt=0, description="electrode area, cm²")
    thickness_cm: float | None = Field(None, gt=0, description="electrolyte thickness, cm")


class EisConfig(_Model):
    """Potentiostatic EIS before and after (and to confirm a short)."""

    f_start_Hz: float = Field(1e6, gt=0)
    f_stop_Hz: float = Field(0.1, gt=0)
    points_per_decade: int = Field(10, ge=1, le=100)
    amplitude_V: float = Field(0.010, gt=0, le=1.0)

    @model_validator(mode="after")
    def _descending(self) -> EisConfig:
        if self.f_stop_Hz >= self.f_start_Hz:
            raise ValueError(
                f"f_stop_Hz ({self.f_stop_Hz:g}) must be below f_start_Hz ({self.f_start_Hz:g})"
            )
        return self


class ScheduleConfig(_Model):
    """Plating and stripping at rising current density (the paper's in-situ protocol)."""

    current_densities_mA_cm2: list[float] = Field(
        default_factory=lambda: list(INSITU_DENSITIES_MA_CM2), min_length=1
    )
    half_cycle_s: float = Field(INSITU_HALF_CYCLE_S, gt=0, description="s per plating/stripping")
    cycles_per_step: int = Field(1, ge=1, description="plate+strip cycles per current density")
    interval_s: float = Field(10.0, gt=0, description="sampling interval, s")
    voltage_limit_V: float = Field(
        10.0, gt=0, description="cut-off |V|; exceeding it moves on to the next current density"
    )
    ocv_interval_s: float = Field(10.0, gt=0, description="OCV sampling during a scan, s")
    drop_fraction: float = Field(
        0.2, gt=0, lt=0.9, description="a short: |V| below this fraction of the half-cycle's"
    )
    short_confirm_ratio: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="EIS confirms a short when |Z| at the lowest frequency falls below this "
        "fraction of its value before the experiment",
    )
    eis: EisConfig = Field(default_factory=EisConfig)

    @field_validator("current_densities_mA_cm2")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        bad = [j for j in value if not (math.isfinite(j) and j > 0)]
        if bad:
            raise ValueError(f"current densities must be positive mA/cm², got {bad}")
        return value


class ScanConfig(_Model):
    """The tomography scan after every step (2-BM: 1500 projections, 100 ms)."""

    n_projections: int | None = Field(
        None, ge=2, description="over 180°; default 180 (small simulated size) or 1500"
    )
    exposure_s: float = Field(0.1, gt=0)
    n_darks: int = Field(10, ge=0)
    n_flats: int = Field(10, ge=0)
    mode: Literal["step", "fly"] = "step"
    min_ring_current_mA: float = Field(10.0, ge=0, description="suspend the scan below this")
    every_half_cycles: int = Field(
        1, ge=1, description="scan after every N-th half-cycle (1: the paper's protocol)"
    )


class AdaptiveConfig(_Model):
    """Rules that close the loop between imaging and electrochemistry."""

    after_crack_onset_every: int | None = Field(
        None,
        ge=1,
        description="once the analysis sees crack onset, scan after every N-th half-cycle",
    )
    crack_onset_um3: float = Field(
        1000.0, gt=0, description="crack volume grown since the pristine scan that is onset"
    )
    stop_before_charge_mC: float | None = Field(
        None,
        gt=0,
        description="end before a half-cycle would take the charge passed past this (image "
        "the pre-failure state, e.g. just below the expected charge-to-failure)",
    )


class AnalysisConfig(_Model):
    """Reconstruction and microstructure analysis as the scans come in."""

    enabled: bool = True
    scheduler: str = Field(
        "process", description="'process' (a local process pool) or a Dask scheduler address"
    )
    workers: int = Field(1, ge=1, le=64)
    psd: bool = Field(False, description="pore-size distribution in the final analysis")
    memory_gib: float = Field(2.0, gt=0)
    method: Literal["default", "otsu"] = "default"
    min_crack_um3: float = Field(1000.0, gt=0)


class CatalogConfig(_Model):
    """Where runs go: an embedded catalog folder, or a tiled server.

    The server's key never travels with the settings (:mod:`insitu.protocols.secrets`): it
    is read from ``api_key_file`` or ``$TILED_API_KEY`` when the file is validated (again on
    every resume), and it is left out of :meth:`ExperimentConfig.to_dict`, so neither
    ``experiment.yaml``, the journal nor the runs' start documents hold it. A literal
    ``api_key`` is still read, with a warning.
    """

    data: str | None = Field(None, description="catalog folder (default ./insitu-data)")
    uri: str | None = None
    api_key_file: str | None = Field(
        None, description="file holding the tiled server's key (default: $TILED_API_KEY)"
    )
    api_key: str | None = Field(None, exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _key_from_file_or_environment(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("uri"):
            return data
        if data.get("api_key"):
            warnings.warn(
                "the experiment file holds the tiled server's API key, which would be copied "
                "into its folder; use catalog.api_key_file or $TILED_API_KEY instead",
                UserWarning,
                stacklevel=2,
            )
            return data
        return {**data, "api_key": read_api_key(data.get("api_key_file"))}


class SimulationConfig(_Model):
    """The simulated bench (only used for devices named ``sim``)."""

    # The EmStat4 (MethodSCRIPT) measures EIS; the Keithley 2450 cannot (EIS is skipped).
    # "protocol" was this key's name before 0.2 (and in experiments journaled then).
    emulator: Literal["keithley2450", "methodscript"] = Field(
        "methodscript",
        validation_alias=AliasChoices("emulator", "protocol"),
        description="the instrument a simulated potentiostat emulates",
    )
    speedup: float = Field(
        2e4, gt=0, description="simulated seconds per real second while current flows"
    )
    rest_speedup: float = Field(
        100.0,
        gt=0,
        description="simulated seconds per real second at rest (scans, EIS, between segments):"
        " the cell relaxes at open circuit, so the software's own time must not become hours"
        " of simulated rest",
    )
    seed: int = 0
    size: Literal["small", "full"] = "small"


class LimitsConfig(_Model):
    """What this sample may take, whatever the schedule says (``None``: no limit of its own).

    Checked when the file is validated (the schedule must stay inside them) and again before
    every half-cycle is sent (:mod:`insitu.protocols.plans.experiment`): a segment that would
    exceed them is not sent, and the experiment ends as ``out_of_range`` with the reason. The
    voltage window also bounds the cut-off the instrument enforces itself (its compliance).
    """

    max_current_density_mA_cm2: float | None = Field(
        None, gt=0, description="largest |current density| the sample may carry, mA/cm²"
    )
    max_voltage_V: float | None = Field(
        None, gt=0, description="largest |cell voltage| allowed: bounds schedule.voltage_limit_V"
    )


class DevicesConfig(_Model):
    """Which hardware: simulated or real."""

    potentiostat: str = Field("sim", description="'sim' or an instrument resource string")
    tomography: Literal["sim", "sim-epics", "epics", "none"] = "sim"
    epics_prefix: str | None = Field(None, description="PV prefix of a real beamline")
    timeout_s: float = Field(5.0, gt=0)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)

    @model_validator(mode="after")
    def _consistent(self) -> DevicesConfig:
        if self.tomography == "epics" and not self.epics_prefix:
            raise ValueError("tomography: epics needs epics_prefix (e.g. '2bma:')")
        if self.tomography.startswith("sim") and self.potentiostat != "sim":
            raise ValueError(
                "a simulated beamline images the simulated cell: use potentiostat: sim, or "
                "tomography: epics (with epics_prefix) for a real beamline"
            )
        return self

    @property
    def simulated(self) -> bool:
        """Whether the potentiostat (and so the cell) is simulated."""
        return self.potentiostat == "sim"


class FaultsConfig(_Model):
    """Faults injected on the simulated bench, to see the software through them.

    Each is a string in the command line's form: ``potentiostat`` as ``insitu ccd --faults``
    (the cable between the driver and the emulator, and the emulated instrument itself),
    ``beamline`` as ``insitu tomo-scan --faults``. Only simulated devices take them: with
    a real instrument or beamline the file is refused. A resumed experiment opens a new
    bench, on which they count again from its start.
    """

    potentiostat: str | None = Field(
        None,
        description="wire items per reply line: delay=P[:S], garble=P, drop=P, split=P "
        "(P a fraction or N%), disconnect=N (after N reply lines); instrument items: error=N, "
        "overload=N (after N points); e.g. 'delay=1%:0.2,garble=0.5%,disconnect=400'",
    )
    beamline: str | None = Field(
        None,
        description="lose_frame=N (the N-th frame since the bench opened, retaken at most "
        "twice), stall=N (the N-th stage move stalls: the experiment stops), "
        "beam_loss=N[:S] (the beam goes at frame N, back after S simulated s); "
        "e.g. 'lose_frame=12,beam_loss=40:5'",
    )

    @field_validator("potentiostat")
    @classmethod
    def _potentiostat_items(cls, value: str | None) -> str | None:
        if value is not None:
            WireFaults.parse(value)  # a SimulatorInputError naming the item and the kinds
            InstrumentFaults.parse(value)
        return value

    @field_validator("beamline")
    @classmethod
    def _beamline_items(cls, value: str | None) -> str | None:
        if value is not None:
            BeamlineFaults.parse(value)
        return value

    def wire_faults(self, *, seed: int = 0) -> WireFaults | None:
        """The cable's faults, drawn from ``seed`` (``None`` if none are asked for)."""
        faults = WireFaults.parse(self.potentiostat or "", seed=seed)
        return faults if faults.any else None

    def instrument_faults(self) -> InstrumentFaults | None:
        """The emulated instrument's own faults (``None`` if none are asked for)."""
        faults = InstrumentFaults.parse(self.potentiostat or "")
        return faults if faults.any else None

    def beamline_faults(self) -> BeamlineFaults | None:
        """The simulated beamline's faults (``None`` if none are asked for)."""
        faults = BeamlineFaults.parse(self.beamline or "")
        return faults if faults.any else None


class ExperimentConfig(_Model):
    """One in-situ experiment (see the module docstring)."""

    sample: str = Field("sample", min_length=1, max_length=200)
    material: str
    operator: str | None = None
    geometry: GeometryConfig = Field(default_factory=GeometryConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    scan: ScanConfig = Field(default_factory=ScanConfig)
    adaptive: AdaptiveConfig = Field(default_factory=AdaptiveConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    devices: DevicesConfig = Field(default_factory=DevicesConfig)
    faults: FaultsConfig = Field(default_factory=FaultsConfig)
    output: str = Field("experiments", description="folder of the experiments' files")

    @model_validator(mode="after")
    def _schedule_inside_the_limits(self) -> ExperimentConfig:
        limits, sched = self.limits, self.schedule
        j_max = limits.max_current_density_mA_cm2
        over = [j for j in sched.current_densities_mA_cm2 if j_max is not None and j > j_max]
        if over:
            raise ValueError(
                f"schedule.current_densities_mA_cm2 has {over} above "
                f"limits.max_current_density_mA_cm2 ({j_max:g}); lower them or raise the limit"
            )
        v_max = limits.max_voltage_V
        if v_max is not None and sched.voltage_limit_V > v_max:
            raise ValueError(
                f"schedule.voltage_limit_V ({sched.voltage_limit_V:g}) is above "
                f"limits.max_voltage_V ({v_max:g}); lower the cut-off or raise the limit"
            )
        return self

    @model_validator(mode="after")
    def _material_known_when_simulated(self) -> ExperimentConfig:
        if self.devices.simulated and self.material not in MATERIALS:
            raise ValueError(
                f"material {self.material!r} has no simulator preset; use one of "
                f"{', '.join(MATERIALS)} with potentiostat: sim"
            )
        return self

    @model_validator(mode="after")
    def _faults_on_simulated_devices_only(self) -> ExperimentConfig:
        faults, dev = self.faults, self.devices
        if faults.potentiostat and not dev.simulated:
            raise ValueError(
                f"faults.potentiostat is injected on the simulated bench only, and "
                f"devices.potentiostat is {dev.potentiostat!r}: remove faults.potentiostat "
                "or use potentiostat: sim"
            )
        beamline = faults.beamline_faults()
        if beamline is not None:
            if not dev.tomography.startswith("sim"):
                raise ValueError(
                    f"faults.beamline is injected on a simulated beamline only, and "
                    f"devices.tomography is {dev.tomography!r}: remove faults.beamline or "
                    "use tomography: sim"
                )
            try:
                beamline.check_flavour(dev.tomography)  # sim-epics: beam losses only
            except ValueError as exc:
                raise ValueError(f"faults.beamline: {exc}") from None
        return self

    @property
    def n_projections(self) -> int:
        """Projections per scan: the configured number, else the size's default."""
        if self.scan.n_projections is not None:
            return self.scan.n_projections
        return 180 if self.devices.simulated and self.devices.simulation.size == "small" else 1500

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict (what the journal and the runs record)."""
        return self.model_dump(mode="json")


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def validate_config(data: Any, source: str = "the experiment") -> ExperimentConfig:
    """Validate a mapping as an :class:`ExperimentConfig`.

    Raises
    ------
    ExperimentConfigError
        Naming every bad key (dotted path), what was wrong and the value given.
    """
    if isinstance(data, ExperimentConfig):
        return data
    if not isinstance(data, dict):
        raise ExperimentConfigError(
            f"{source} must be a mapping of keys (sample, material, schedule, ...), got "
            f"{type(data).__name__}"
        )
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _location(err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key (check the spelling; see `insitu experiment run --help`)"
            elif err["type"] == "missing":
                message = "required"
            given = err.get("input")
            # A check across sections (top level) names its keys itself: its input is the
            # whole file, no help to repeat.
            quiet = err["type"] in ("missing", "extra_forbidden") or not err["loc"]
            suffix = "" if quiet else f" (got {given!r})"
            problems.append(f"{where}: {message}{suffix}")
        raise ExperimentConfigError(f"{source} is not valid: " + "; ".join(problems)) from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML file.

    Raises
    ------
    ExperimentConfigError
        For a missing or unreadable file, bad YAML (with its line) or a bad key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExperimentConfigError(f"no experiment file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExperimentConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ExperimentConfigError(
            f"{path} nests its YAML too deeply to read; an experiment file is a few levels deep"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ExperimentConfigError(f"{path} is not valid YAML{where}: {problem}") from None
    return validate_config(data, source=str(path))
