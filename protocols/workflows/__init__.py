"""What each command does, callable from Python: lab CCD and conductivity runs, tomography scans
and reconstructions, the in-situ experiment (file, run, resume, analysis, report) and HTML
reports of stored runs.
"""

from .experiment import (
    ExperimentError,
    experiment_report,
    experiment_status,
    find_experiment,
    resume_experiment,
    run_experiment,
)
from .experiment_analysis import (
    ScanAnalyzer,
    ScanResult,
    reconstruct_and_measure,
)
from .lab import (
    ccd_summary,
    conductivity_summary,
    run_ccd,
    run_conductivity,
)
from .reports import (
    ccd_tables,
    report_for_run,
)
from .tomo import (
    TRUTH_LABELS_MAX_BYTES,
    run_tomo_scan,
    truth_paths,
)

__all__ = [
    "TRUTH_LABELS_MAX_BYTES",
    "ExperimentError",
    "ScanAnalyzer",
    "ScanResult",
    "ccd_summary",
    "ccd_tables",
    "conductivity_summary",
    "experiment_report",
    "experiment_status",
    "find_experiment",
    "reconstruct_and_measure",
    "report_for_run",
    "resume_experiment",
    "run_ccd",
    "run_conductivity",
    "run_experiment",
    "run_tomo_scan",
    "truth_paths",
]
