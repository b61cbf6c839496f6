"""What each command does, callable from Python: lab CCD and conductivity runs and their
analysis, stored runs (list, export, report), instruments and emulators, tomography scans,
reconstructions and microstructure analysis, the cross-material comparison, the in-situ
experiment (file, run, resume, analysis, report), the queue server, and stopping a running
plan from outside (Ctrl-C, SIGTERM, SIGHUP, :func:`emergency_stop`).
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do),
# each module imported when first asked for (see insitu.analysis.lazy_exports): a command
# imports only its own workflow.
from insitu.analysis.lazy_exports import lazy_union

__getattr__, __dir__ = lazy_union(
    __name__,
    (
        "electrochem_analysis",
        "experiment",
        "experiment_analysis",
        "experiment_setup",
        "instrument",
        "interrupts",
        "lab",
        "materials",
        "queue_server",
        "reports",
        "runs",
        "sim",
        "solid_level",
        "tomo",
        "tomo_analysis",
        "volume_export",
    ),
)
