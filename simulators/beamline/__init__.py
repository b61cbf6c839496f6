"""The simulated 2-BM beamline: in-process ophyd devices, and the caproto IOC with its process."""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import devices, ioc_process
from .devices import *
from .ioc_process import *

__all__ = list(dict.fromkeys([*devices.__all__, *ioc_process.__all__]))
