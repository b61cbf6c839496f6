"""The in-situ protocol as a state machine: which segment comes next, given what happened.

The experiment is a sequence of *segments*, each one Bluesky run: EIS before, the pristine
tomogram, then for each current density of the schedule plate → tomogram → strip → tomogram,
until the cell shorts (a voltage collapse confirmed by EIS), the schedule ends or the
potentiostat cannot source the next current; then a tomogram of the failed cell and EIS
after. What comes next depends on what the last segment measured (a cut-off moves on to the
next current density; a collapse calls for a confirming EIS), and on adaptive rules fed by the
analysis (scan more often after crack onset, stop before the expected short).

The whole state is a JSON-friendly dict holding the *pending* segment, so the journal can
record it after every segment and ``insitu experiment resume`` continues from exactly that
point, whatever the analysis knew at the time. :func:`initial_state` starts an experiment;
:func:`advance` takes a finished segment's :class:`Outcome` and returns the next state.
Nothing here touches a device: the plan (:mod:`insitu.protocols.plans.experiment`) runs the
segments.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..experiment_config import ExperimentConfig

__all__ = [
    "ELECTROCHEM_KINDS",
    "Outcome",
    "Segment",
    "SegmentKind",
    "advance",
    "initial_state",
    "note_crack_onset",
    "pending_segment",
]

SegmentKind = Literal["eis_before", "tomogram", "plate", "strip", "eis_confirm", "eis_after"]
#: Segments that pass current or measure the cell: never rewound, never repeated.
ELECTROCHEM_KINDS = frozenset({"eis_before", "plate", "strip", "eis_confirm", "eis_after"})


@dataclass(frozen=True)
class Segment:
    """One run of the experiment."""

    index: int
    kind: SegmentKind
    label: str
    step: int = 0
    cycle: int = 0
    current_density_mA_cm2: float | None = None
    current_A: float | None = None
    duration_s: float | None = None
    #: "pristine", "failed", "final" (last scan without a short) or None.
    tag: str | None = None

    @property
    def half_cycle(self) -> str | None:
        """``"plate"`` or ``"strip"`` for half-cycles, else None."""
        return self.kind if self.kind in ("plate", "strip") else None

    @property
    def electrochemical(self) -> bool:
        """Whether the segment drives or measures the cell (never rewound or repeated)."""
        return self.kind in ELECTROCHEM_KINDS

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass
class Outcome:
    """What a finished segment measured that decides the next one."""

    end_reason: str
    #: ∫|I| dt over the segment, C (half-cycles; 0 otherwise).
    charge_C: float = 0.0
    #: The voltage collapsed mid-half-cycle.
    short: bool = False
    #: EIS: |Z| at the lowest frequency, Ω.
    z_low_ohm: float | None = None
    run_uid: str | None = None
    scan_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def initial_state() -> dict[str, Any]:
    """The state of an experiment that has not started: EIS before is pending."""
    state: dict[str, Any] = {
        "next_index": 0,
        "step": 0,  # index into the schedule's current densities
        "cycle": 0,
        "half": 0,  # 0: plate next, 1: strip next
        "charge_C": 0.0,  # ∫|I| dt of every half-cycle so far
        "half_cycles_since_scan": 0,
        "crack_onset": False,
        "z_before_ohm": None,
        "phase": "running",  # running | ending | failed | done
        "end_reason": None,
        "pending": None,
        "notes": [],
    }
    state["pending"] = _make(state, "eis_before", "EIS before").to_dict()
    return state


def pending_segment(state: dict[str, Any]) -> Segment | None:
    """The segment to run next, or None when the experiment has ended."""
    pending = state.get("pending")
    return None if pending is None else Segment.from_dict(pending)


def note_crack_onset(state: dict[str, Any]) -> dict[str, Any]:
    """The analysis saw cracks grow: from now on the crack-onset scan rule applies."""
    new = copy.deepcopy(state)
    new["crack_onset"] = True
    return new


def _make(state: dict[str, Any], kind: SegmentKind, label: str, **kwargs: Any) -> Segment:
    return Segment(index=int(state["next_index"]), kind=kind, label=label, **kwargs)


def _half_cycle(state: dict[str, Any], config: ExperimentConfig) -> Segment:
    densities = config.schedule.current_densities_mA_cm2
    j = float(densities[state["step"]])
    kind: SegmentKind = "plate" if state["half"] == 0 else "strip"
    current_A = j * 1e-3 * config.geometry.area_cm2
    return _make(
        state,
        kind,
        f"{kind} {j:g} mA/cm²",
        step=int(state["step"]),
        cycle=int(state["cycle"]),
        current_density_mA_cm2=j,
        # Positive current plates Li on the counter electrode (insitu.protocols.plans.electrochem).
        current_A=current_A if kind == "plate" else -current_A,
        duration_s=float(config.schedule.half_cycle_s),
    )


def _half_cycle_charge_C(state: dict[str, Any], config: ExperimentConfig) -> float:
    j = config.schedule.current_densities_mA_cm2[state["step"]]
    return j * 1e-3 * config.geometry.area_cm2 * config.schedule.half_cycle_s


def _end(state: dict[str, Any], reason: str) -> None:
    """Stop cycling: a last tomogram if the state since the last one is unseen, EIS after."""
    state["phase"] = "ending"
    state["end_reason"] = reason
    if state["half_cycles_since_scan"] > 0:
        state["half_cycles_since_scan"] = 0
        state["pending"] = _make(state, "tomogram", "tomogram (final)", tag="final").to_dict()
    else:
        state["pending"] = _make(state, "eis_after", "EIS after").to_dict()


def _next_half_cycle_or_end(state: dict[str, Any], config: ExperimentConfig) -> None:
    if state["step"] >= len(config.schedule.current_densities_mA_cm2):
        _end(state, "schedule_complete")
        return
    limit = config.adaptive.stop_before_charge_mC
    if limit is not None:
        after_mC = (state["charge_C"] + _half_cycle_charge_C(state, config)) * 1e3
        if after_mC > limit:
            state["notes"].append(
                f"stopped before a half-cycle that would reach {after_mC:.3g} mC "
                f"(adaptive stop_before_charge_mC {limit:g})"
            )
            _end(state, "pre_failure")
            return
    state["pending"] = _half_cycle(state, config).to_dict()


def _scan_every(state: dict[str, Any], config: ExperimentConfig) -> int:
    dense = config.adaptive.after_crack_onset_every
    if state["crack_onset"] and dense is not None:
        return dense
    return config.scan.every_half_cycles


def _step_on(state: dict[str, Any], config: ExperimentConfig, *, cut_off: bool) -> None:
    """Move the schedule position past the half-cycle just run."""
    if cut_off:
        # The paper: exceeding the cut-off moves on to the next current density.
        state["step"] += 1
        state["cycle"] = 0
        state["half"] = 0
        return
    if state["half"] == 0:
        state["half"] = 1
        return
    state["half"] = 0
    state["cycle"] += 1
    if state["cycle"] >= config.schedule.cycles_per_step:
        state["cycle"] = 0
        state["step"] += 1


def _after_half_cycle(
    state: dict[str, Any], config: ExperimentConfig, *, cut_off: bool, after: str
) -> None:
    _step_on(state, config, cut_off=cut_off)
    if cut_off or state["half_cycles_since_scan"] >= _scan_every(state, config):
        state["half_cycles_since_scan"] = 0
        label = f"tomogram after {after}" + (" (cut-off)" if cut_off else "")
        state["pending"] = _make(state, "tomogram", label).to_dict()
        return
    _next_half_cycle_or_end(state, config)


def advance(
    state: dict[str, Any], segment: Segment, outcome: Outcome, config: ExperimentConfig
) -> dict[str, Any]:
    """The state after ``segment`` ended with ``outcome`` (a new dict; ``state`` is kept).

    Parameters
    ----------
    state : dict
        The state whose pending segment is ``segment``.
    segment : Segment
        The segment that ran.
    outcome : Outcome
        What it measured. ``end_reason`` of a half-cycle is the potentiostat's
        (``completed``, ``voltage_limit``, ``stopped``), ``short`` when the plan stopped it at
        a collapse, ``out_of_range`` when the instrument refused the current, or
        ``interrupted`` when the process ended during it (resume): its charge counts and the
        protocol goes on as after a completed half-cycle.
    config : ExperimentConfig
    """
    pending = state.get("pending")
    if pending is None or pending["index"] != segment.index:
        raise ValueError(
            f"segment {segment.index} ({segment.label}) is not the pending segment of this "
            f"experiment ({pending and pending['index']})"
        )
    new = copy.deepcopy(state)
    new["next_index"] = segment.index + 1
    kind = segment.kind
    if kind == "eis_before":
        new["z_before_ohm"] = outcome.z_low_ohm
        new["pending"] = _make(new, "tomogram", "tomogram (pristine)", tag="pristine").to_dict()
    elif kind == "tomogram":
        if new["phase"] in ("failed", "ending"):
            new["pending"] = _make(new, "eis_after", "EIS after").to_dict()
        else:
            _next_half_cycle_or_end(new, config)
    elif kind in ("plate", "strip"):
        new["charge_C"] += float(outcome.charge_C)
        new["half_cycles_since_scan"] += 1
        if outcome.short:
            new["pending"] = _make(
                new, "eis_confirm", "EIS (confirm short)", step=segment.step, cycle=segment.cycle
            ).to_dict()
            new["suspected"] = segment.to_dict()
        elif outcome.end_reason in ("out_of_range", "failed"):
            # The instrument cannot go on (range) or the technique failed: image the cell as
            # it is and finish with EIS.
            _end(new, outcome.end_reason)
        else:
            _after_half_cycle(
                new, config, cut_off=outcome.end_reason == "voltage_limit", after=segment.label
            )
    elif kind == "eis_confirm":
        before = new.get("z_before_ohm")
        ratio = config.schedule.short_confirm_ratio
        confirmed = (
            before is None or outcome.z_low_ohm is None or outcome.z_low_ohm < ratio * float(before)
        )
        if confirmed:
            new["phase"] = "failed"
            new["end_reason"] = "short"
            new["half_cycles_since_scan"] = 0
            new["pending"] = _make(
                new, "tomogram", "tomogram (failed cell)", tag="failed"
            ).to_dict()
        else:
            new["notes"].append(
                f"voltage collapse in segment {new['suspected']['index']} not confirmed by "
                f"EIS (|Z| {outcome.z_low_ohm:.4g} Ω against {float(before):.4g} Ω before): "
                "a soft short; cycling goes on"
            )
            _after_half_cycle(new, config, cut_off=False, after=new["suspected"]["label"])
    elif kind == "eis_after":
        new["phase"] = "done"
        new["pending"] = None
    else:  # pragma: no cover - SegmentKind is closed
        raise ValueError(f"unknown segment kind {kind!r}")
    return new
