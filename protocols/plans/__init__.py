"""Bluesky plans: electrochemistry (EIS, plate/strip, CCD, conductivity), tomography (with its
public stubs) and the in-situ experiment with its state machine.
"""

from .electrochem import (
    LAB_CCD_DENSITIES_MA_CM2,
    ccd_test,
    conductivity_vs_temperature,
    cycling_sequence,
    eis,
    galvanostatic_hold,
    lab_ccd_densities_mA_cm2,
    plate_strip,
    run_technique,
)
from .experiment import (
    ExperimentObserver,
    charge_passed_C,
    insitu_experiment,
    new_experiment_id,
    z_at_lowest_frequency,
)
from .experiment_protocol import (
    ELECTROCHEM_KINDS,
    Outcome,
    Segment,
    SegmentKind,
    advance,
    initial_state,
    note_crack_onset,
    pending_segment,
)
from .tomo import (
    projection_angles_deg,
    tomo_scan,
)
from .tomo_stubs import (
    dark_frames,
    declare_tomo_streams,
    flat_frames,
    fly_projections,
    step_projections,
    tomo_start_metadata,
)

__all__ = [
    "ELECTROCHEM_KINDS",
    "LAB_CCD_DENSITIES_MA_CM2",
    "ExperimentObserver",
    "Outcome",
    "Segment",
    "SegmentKind",
    "advance",
    "ccd_test",
    "charge_passed_C",
    "conductivity_vs_temperature",
    "cycling_sequence",
    "dark_frames",
    "declare_tomo_streams",
    "eis",
    "flat_frames",
    "fly_projections",
    "galvanostatic_hold",
    "initial_state",
    "insitu_experiment",
    "lab_ccd_densities_mA_cm2",
    "new_experiment_id",
    "note_crack_onset",
    "pending_segment",
    "plate_strip",
    "projection_angles_deg",
    "run_technique",
    "step_projections",
    "tomo_scan",
    "tomo_start_metadata",
    "z_at_lowest_frequency",
]
