"""The emulated Keithley 2450: SCPI server, command handlers, instrument state, source front end
and trigger model.
"""

from .server import (
    Keithley2450Emulator,
)

__all__ = ["Keithley2450Emulator"]
