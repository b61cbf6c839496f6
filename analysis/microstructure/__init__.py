"""Microstructure of reconstructed volumes: segmentation and the study threshold, porosity and
pore sizes, the partial-volume porosity, cracks, porosity-factor maps, electrode thickness,
interface intensity, and the measurement of a whole experiment's scans.
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import cracks, electrodes, experiment, interface, maps, partial_volume, pores, segment
from .cracks import *
from .electrodes import *
from .experiment import *
from .interface import *
from .maps import *
from .partial_volume import *
from .pores import *
from .segment import *

__all__ = list(
    dict.fromkeys(
        [
            *cracks.__all__,
            *electrodes.__all__,
            *experiment.__all__,
            *interface.__all__,
            *maps.__all__,
            *partial_volume.__all__,
            *pores.__all__,
            *segment.__all__,
        ]
    )
)
