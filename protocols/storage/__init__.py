"""Storage: the tiled catalog with its JSONL backup, and the in-situ experiment's journal."""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import catalog, journal
from .catalog import *
from .journal import *

__all__ = list(dict.fromkeys([*catalog.__all__, *journal.__all__]))
