"""Instrument emulators: servers on 127.0.0.1 (TCP) or pseudo-terminals that speak the real
instruments' protocols, with the virtual cell behind them.
"""

from .keithley2450 import (
    Keithley2450Emulator,
)
from .lakeshore336 import (
    LakeShore336Emulator,
    first_order_response,
)
from .methodscript import (
    EMSTAT4_HR,
    DeviceSpec,
    MethodScriptEmulator,
    ScriptError,
    ScriptRunner,
    Statement,
    parse_script,
)
from .scpi import (
    STANDARD_ERRORS,
    Command,
    CommandSet,
    ErrorQueue,
    SCPIError,
    check_count,
    one_param,
    parse_bool,
    parse_choice,
    parse_int,
    parse_number,
    parse_string,
    split_message,
)

__all__ = [
    "EMSTAT4_HR",
    "STANDARD_ERRORS",
    "Command",
    "CommandSet",
    "DeviceSpec",
    "ErrorQueue",
    "Keithley2450Emulator",
    "LakeShore336Emulator",
    "MethodScriptEmulator",
    "SCPIError",
    "ScriptError",
    "ScriptRunner",
    "Statement",
    "check_count",
    "first_order_response",
    "one_param",
    "parse_bool",
    "parse_choice",
    "parse_int",
    "parse_number",
    "parse_script",
    "parse_string",
    "split_message",
]
