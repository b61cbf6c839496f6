"""Tomographic reconstruction, re-exported flat as TomoPy does: ``prep`` (normalise, stripes,
phase, alignment), ``recon`` (gridrec, rotation centre, backends) and the chunked ``pipeline``
that turns a Data Exchange scan into a volume slab by slab.
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import pipeline, prep, recon
from .pipeline import *
from .prep import *
from .recon import *

__all__ = list(dict.fromkeys([*pipeline.__all__, *prep.__all__, *recon.__all__]))
