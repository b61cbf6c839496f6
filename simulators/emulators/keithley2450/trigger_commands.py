"""The emulated 2450's trigger-model commands: building blocks, templates, start and abort.

``:TRIGger:BLOCk:BUFFer:CLEar``, ``:MEASure`` (with a count), ``:DELay:CONStant``,
``:SOURce:STATe``, ``:CONFig:RECall``, ``:CONFig:NEXT``, ``:BRANch:COUNter`` (and
``:COUNt?``), ``:BRANch:COUNter:RESet``, ``:BRANch:ALWays``, ``:BRANch:LIMit:CONStant``
(ABOVe, BELow, INside, OUTSide), ``:NOP``, ``:LIST?``; the templates
``:TRIGger:LOAD "SimpleLoop", <count>[, <delay>[, "<buffer>"]]`` (its four blocks: buffer
clear, delay, measure, counter) and ``"Empty"``; ``:INITiate``, ``:ABORt``,
``:TRIGger:STATe?`` (``RUNNING;RUNNING;5``: state twice and the block last executed).
What the blocks do when the model runs is :mod:`~insitu.simulators.emulators.keithley2450.trigger`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..scpi import (
    CommandSet,
    SCPIError,
    check_count,
    one_param,
    parse_bool,
    parse_choice,
    parse_int,
    parse_number,
    parse_string,
)
from .instrument import Keithley2450Instrument
from .state import MAX_CONFIG_POINTS
from .trigger import LIMIT_TYPES, MAX_BLOCKS, Block

__all__ = ["add_trigger_commands"]

MAX_TRIGGER_COUNT = 268_435_455
MAX_DELAY_S = 10_000.0

# A block command's parameters after the block number → the block it defines.
BlockParser = Callable[[Keithley2450Instrument, list[str]], Block]


def _block_number(text: str) -> int:
    return parse_int(text, minimum=1, maximum=MAX_BLOCKS)


def _count(params: list[str], index: int) -> int:
    """An optional count parameter (1 when absent)."""
    if len(params) <= index:
        return 1
    return parse_int(params[index], minimum=1, maximum=MAX_TRIGGER_COUNT)


def _limit_block(inst: Keithley2450Instrument, params: list[str]) -> Block:
    kind = parse_choice(params[1], LIMIT_TYPES)
    a = parse_number(params[2])
    b = parse_number(params[3])
    if a > b:
        a, b = b, a  # the lesser value is the lower limit
    return Block(
        "BRANCH_LIMIT_CONSTANT",
        limit_type=kind,
        limit_a=a,
        limit_b=b,
        target=_block_number(params[4]),
        measure_block=parse_int(params[5], minimum=0, maximum=MAX_BLOCKS) if len(params) > 5 else 0,
    )


def _config_recall_block(inst: Keithley2450Instrument, params: list[str]) -> Block:
    name = inst.state.config_name(params[1])
    index = parse_int(params[2], minimum=1, maximum=MAX_CONFIG_POINTS) if len(params) > 2 else 1
    return Block("CONFIG_RECALL", config=name, index=index)


# Pattern → (fewest parameters, most parameters, parser); the block number comes first.
_BLOCK_COMMANDS: dict[str, tuple[int, int, BlockParser]] = {
    ":TRIGger:BLOCk:BUFFer:CLEar": (
        1,
        2,
        lambda inst, p: Block("BUFFER_CLEAR", buffer=inst.state.buffer_key(p, 1)),
    ),
    ":TRIGger:BLOCk:MEASure": (
        1,
        3,
        lambda inst, p: Block("MEASURE", buffer=inst.state.buffer_key(p, 1), count=_count(p, 2)),
    ),
    ":TRIGger:BLOCk:DELay:CONStant": (
        2,
        2,
        lambda inst, p: Block(
            "DELAY_CONSTANT", delay_s=parse_number(p[1], minimum=0.0, maximum=MAX_DELAY_S)
        ),
    ),
    ":TRIGger:BLOCk:SOURce:STATe": (
        2,
        2,
        lambda inst, p: Block("SOURCE_OUTPUT", state=parse_bool(p[1])),
    ),
    ":TRIGger:BLOCk:CONFig:RECall": (2, 3, _config_recall_block),
    ":TRIGger:BLOCk:CONFig:NEXT": (
        2,
        2,
        lambda inst, p: Block("CONFIG_NEXT", config=inst.state.config_name(p[1])),
    ),
    ":TRIGger:BLOCk:BRANch:COUNter": (
        3,
        3,
        lambda inst, p: Block(
            "BRANCH_COUNTER",
            count=parse_int(p[1], minimum=1, maximum=MAX_TRIGGER_COUNT),
            target=_block_number(p[2]),
        ),
    ),
    ":TRIGger:BLOCk:BRANch:COUNter:RESet": (
        2,
        2,
        lambda inst, p: Block("BRANCH_COUNTER_RESET", target=_block_number(p[1])),
    ),
    ":TRIGger:BLOCk:BRANch:ALWays": (
        2,
        2,
        lambda inst, p: Block("BRANCH_ALWAYS", target=_block_number(p[1])),
    ),
    ":TRIGger:BLOCk:BRANch:LIMit:CONStant": (5, 6, _limit_block),
    ":TRIGger:BLOCk:NOP": (1, 1, lambda inst, p: Block("NOP")),
}


def _block_setter(
    inst: Keithley2450Instrument, minimum: int, maximum: int, parse: BlockParser
) -> Callable[[list[str]], None]:
    def setter(params: list[str]) -> None:
        check_count(params, minimum, maximum)
        # The instrument refuses a change of a running model before looking at the values.
        inst.trigger.refuse_if_running()
        number = _block_number(params[0])
        inst.trigger.set_block(number, parse(inst, params))

    return setter


def add_trigger_commands(cs: CommandSet, inst: Keithley2450Instrument) -> None:
    """Register the trigger-model commands of a 2450 acting on ``inst`` in ``cs``.

    Parameters
    ----------
    cs : CommandSet
        The instrument's command table.
    inst : Keithley2450Instrument
        The instrument model (its ``trigger`` is looked up at each command: ``*RST``
        replaces it).
    """
    for pattern, (minimum, maximum, parse) in _BLOCK_COMMANDS.items():
        cs.add(pattern, setter=_block_setter(inst, minimum, maximum, parse))

    def counter_count(params: list[str]) -> str:
        return str(inst.trigger.counter_value(_block_number(one_param(params))))

    def block_list(params: list[str]) -> str:
        check_count(params, 0, 0)
        return inst.trigger.list_reply()

    def load(params: list[str]) -> None:
        if not params:
            raise SCPIError(-109)
        template = parse_string(params[0]).upper()
        if template == "EMPTY":
            check_count(params, 1, 1)
            inst.trigger.load_empty()
            return
        if template != "SIMPLELOOP":
            raise SCPIError(-224, "Illegal parameter value; only SimpleLoop and Empty emulated")
        load_simple(params[1:])

    def load_simple(params: list[str]) -> None:
        check_count(params, 1, 3)
        count = parse_int(params[0], minimum=1, maximum=MAX_TRIGGER_COUNT)
        delay = (
            parse_number(params[1], minimum=0.0, maximum=MAX_DELAY_S) if len(params) > 1 else 0.0
        )
        inst.trigger.load_simple_loop(count, delay, inst.state.buffer_key(params, 2))

    def initiate(params: list[str]) -> None:
        check_count(params, 0, 0)
        inst.initiate()

    def abort(params: list[str]) -> None:
        check_count(params, 0, 0)
        inst.trigger.abort()

    cs.add(":TRIGger:BLOCk:BRANch:COUNter:COUNt", getter=counter_count)
    cs.add(":TRIGger:BLOCk:LIST", getter=block_list)
    cs.add(":TRIGger:LOAD", setter=load)
    cs.add(":TRIGger:LOAD:LOOP:SIMPle", setter=load_simple)
    cs.add(":TRIGger:STATe", getter=lambda p: inst.trigger.state_reply())
    cs.add(":INITiate[:IMMediate]", setter=initiate)
    cs.add(":ABORt", setter=abort)
