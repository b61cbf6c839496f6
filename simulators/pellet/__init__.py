"""The virtual pellet: phases, porosity and Li fields, and crack geometry."""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import cracks, fields, model, phases
from .cracks import *
from .fields import *
from .model import *
from .phases import *

__all__ = list(dict.fromkeys([*cracks.__all__, *fields.__all__, *model.__all__, *phases.__all__]))
