"""The emulated Keithley 2450: SCPI server, command handlers, instrument state, source front end
and trigger model.
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import server
from .server import *

__all__ = list(dict.fromkeys([*server.__all__]))
