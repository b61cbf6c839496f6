"""PalmSens MethodSCRIPT driver (EmStat4 over a serial line), with the codec shared with the
emulator.
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import codec, driver
from .codec import *
from .driver import *

__all__ = list(dict.fromkeys([*codec.__all__, *driver.__all__]))
