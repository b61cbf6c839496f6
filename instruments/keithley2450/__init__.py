"""Keithley 2450 SourceMeter driver (SCPI over VISA), with the trigger-model builder that runs
whole sequences instrument-side.
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import driver, trigger
from .driver import *
from .trigger import *

__all__ = list(dict.fromkeys([*driver.__all__, *trigger.__all__]))
