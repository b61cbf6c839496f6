"""Slice reconstruction, as in ``tomopy.recon``: Fourier-gridding filtered back-projection,
the rotation centre, and the optional TomoPy backend.
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import algorithm, backends, rotation
from .algorithm import *
from .backends import *
from .rotation import *

__all__ = list(dict.fromkeys([*algorithm.__all__, *backends.__all__, *rotation.__all__]))
