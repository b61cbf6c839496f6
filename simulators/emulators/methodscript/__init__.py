"""The emulated PalmSens EmStat4: MethodSCRIPT server and script interpreter."""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import interpreter, server
from .interpreter import *
from .server import *

__all__ = list(dict.fromkeys([*interpreter.__all__, *server.__all__]))
