"""Keithley 2450 SourceMeter driver (SCPI over VISA), with the trigger-model builder that runs
whole sequences instrument-side.
"""

from .driver import (
    Keithley2450,
)
from .trigger import (
    CONFIG_LIST,
    DEFAULT_BUFFER_POINTS,
    MAX_TRIGGER_BLOCKS,
    OCV_VOLTAGE_LIMIT_V,
    Step,
    StepReplay,
    TriggerPlan,
    load_commands,
    plan_technique,
    readings_in,
    trigger_model_commands,
)

__all__ = [
    "CONFIG_LIST",
    "DEFAULT_BUFFER_POINTS",
    "MAX_TRIGGER_BLOCKS",
    "OCV_VOLTAGE_LIMIT_V",
    "Keithley2450",
    "Step",
    "StepReplay",
    "TriggerPlan",
    "load_commands",
    "plan_technique",
    "readings_in",
    "trigger_model_commands",
]
