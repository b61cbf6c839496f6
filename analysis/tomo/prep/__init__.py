"""Projection preprocessing, as in ``tomopy.prep``: flat/dark normalisation, stripe (ring)
removal, phase retrieval and alignment.
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import alignment, flat_field, phase, stripe
from .alignment import *
from .flat_field import *
from .phase import *
from .stripe import *

__all__ = list(
    dict.fromkeys([*alignment.__all__, *flat_field.__all__, *phase.__all__, *stripe.__all__])
)
