"""The virtual cell: its model, parameters, damage, EIS spectrum, imaged state, cycling history
and checkpoints.
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import damage, eis, history, model, parameters, persistence
from .damage import *
from .eis import *
from .history import *
from .model import *
from .parameters import *
from .persistence import *

__all__ = list(
    dict.fromkeys(
        [
            *damage.__all__,
            *eis.__all__,
            *history.__all__,
            *model.__all__,
            *parameters.__all__,
            *persistence.__all__,
        ]
    )
)
