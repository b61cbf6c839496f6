"""Bluesky plans: electrochemistry (EIS, plate/strip, CCD, conductivity), tomography (with its
public stubs) and the in-situ experiment with its state machine.
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import device_failures, electrochem, experiment, experiment_protocol, tomo, tomo_stubs
from .device_failures import *
from .electrochem import *
from .experiment import *
from .experiment_protocol import *
from .tomo import *
from .tomo_stubs import *

__all__ = list(
    dict.fromkeys(
        [
            *device_failures.__all__,
            *electrochem.__all__,
            *experiment.__all__,
            *experiment_protocol.__all__,
            *tomo.__all__,
            *tomo_stubs.__all__,
        ]
    )
)
