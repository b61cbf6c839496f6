"""The emulated PalmSens EmStat4: MethodSCRIPT server and script interpreter."""

from .interpreter import (
    EMSTAT4_HR,
    DeviceSpec,
    ScriptError,
    ScriptRunner,
    Statement,
    parse_script,
)
from .server import (
    MethodScriptEmulator,
)

__all__ = [
    "EMSTAT4_HR",
    "DeviceSpec",
    "MethodScriptEmulator",
    "ScriptError",
    "ScriptRunner",
    "Statement",
    "parse_script",
]
