"""X-ray imaging of the virtual pellet: attenuation and projector, detector model, and camera frame
sources (a pellet at a point of its history, a live cell, an analytic disc).
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import cell_imaging, detector, disc_phantom, frame_source, xray
from .cell_imaging import *
from .detector import *
from .disc_phantom import *
from .frame_source import *
from .xray import *

__all__ = list(
    dict.fromkeys(
        [
            *cell_imaging.__all__,
            *detector.__all__,
            *disc_phantom.__all__,
            *frame_source.__all__,
            *xray.__all__,
        ]
    )
)
