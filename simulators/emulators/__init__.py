"""Instrument emulators: servers on 127.0.0.1 (TCP) or pseudo-terminals that speak the real
instruments' protocols, with the virtual cell behind them.

All of them stand on one line server (:class:`LineServer`: transport, framing, clients, life
cycle); each emulator keeps only what a line does to its instrument.
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import keithley2450, lakeshore336, line_server, methodscript, scpi
from .keithley2450 import *
from .lakeshore336 import *
from .line_server import *
from .methodscript import *
from .scpi import *

__all__ = list(
    dict.fromkeys(
        [
            *keithley2450.__all__,
            *lakeshore336.__all__,
            *line_server.__all__,
            *methodscript.__all__,
            *scpi.__all__,
        ]
    )
)
