"""Slice reconstruction, as in ``tomopy.recon``: Fourier-gridding filtered back-projection,
the rotation centre, and the optional TomoPy backend.
"""

from .algorithm import (
    FILTERS,
    GridrecPlan,
    angle_weights,
    gridrec,
    ramp_filter,
)
from .backends import (
    BACKENDS,
    Backend,
    BackendUnavailable,
    make_backend,
)
from .rotation import (
    find_center_pc,
    find_center_vo,
)

__all__ = [
    "BACKENDS",
    "FILTERS",
    "Backend",
    "BackendUnavailable",
    "GridrecPlan",
    "angle_weights",
    "find_center_pc",
    "find_center_vo",
    "gridrec",
    "make_backend",
    "ramp_filter",
]
