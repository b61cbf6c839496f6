"""What each command does, callable from Python: lab CCD and conductivity runs and their
analysis, stored runs (list, export, report), instruments and emulators, tomography scans,
reconstructions and microstructure analysis, the cross-material comparison, the in-situ
experiment (file, run, resume, analysis, report), the queue server, and stopping a running
plan from outside (Ctrl-C, SIGTERM, SIGHUP, :func:`emergency_stop`).
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import (
    electrochem_analysis,
    experiment,
    experiment_analysis,
    experiment_setup,
    instrument,
    interrupts,
    lab,
    materials,
    queue_server,
    reports,
    runs,
    sim,
    solid_level,
    tomo,
    tomo_analysis,
    volume_export,
)
from .electrochem_analysis import *
from .experiment import *
from .experiment_analysis import *
from .experiment_setup import *
from .instrument import *
from .interrupts import *
from .lab import *
from .materials import *
from .queue_server import *
from .reports import *
from .runs import *
from .sim import *
from .solid_level import *
from .tomo import *
from .tomo_analysis import *
from .volume_export import *

__all__ = list(
    dict.fromkeys(
        [
            *electrochem_analysis.__all__,
            *experiment.__all__,
            *experiment_analysis.__all__,
            *experiment_setup.__all__,
            *instrument.__all__,
            *interrupts.__all__,
            *lab.__all__,
            *materials.__all__,
            *queue_server.__all__,
            *reports.__all__,
            *runs.__all__,
            *sim.__all__,
            *solid_level.__all__,
            *tomo.__all__,
            *tomo_analysis.__all__,
            *volume_export.__all__,
        ]
    )
)
