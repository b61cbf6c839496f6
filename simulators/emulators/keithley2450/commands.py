"""The emulated 2450's SCPI command table: the manual's command patterns → their handlers.

The native "SCPI" command set of the Reference Manual (2450-901-01), as far as emulated:

* IEEE 488.2 common commands ``*IDN?``, ``*RST``, ``*CLS``, ``*OPC``, ``*OPC?``, ``*WAI``,
  ``*ESR?``, ``*STB?``, ``*TRG`` (ignored), ``*TST?``;
* ``:SYSTem:ERRor[:NEXT]?``, ``:SYSTem:ERRor:COUNt?``, ``:SYSTem:ERRor:CLEar`` (error queue
  with the standard SCPI codes and texts), ``:SYSTem:BEEP`` and similar harmless commands;
* ``:SOURce:FUNCtion CURRent|VOLTage``, ``:SOURce:CURRent[:LEVel]``, ``:SOURce:CURRent:RANGe``
  (``:AUTO``), ``:SOURce:CURRent:VLIMit`` (``:TRIPped?``), the voltage-source equivalents
  with ``ILIMit``;
* ``:SENSe:FUNCtion "VOLT"|"CURR"``, ``:SENSe:VOLTage|CURRent:RANGe`` (``:AUTO``), ``:NPLCycles``;
* ``:OUTPut[:STATe] ON|OFF|1|0``;
* ``:READ?`` and ``:MEASure:VOLTage|CURRent?`` (optionally with a buffer name and elements);
* reading buffers: ``:TRACe:MAKE``, ``:DELete``, ``:CLEar``, ``:POINts``, ``:ACTual?``,
  ``:ACTual:STARt?``, ``:ACTual:END?``, ``:DATA?`` with the elements ``READing``,
  ``RELative``, ``SOURce``, ``SEConds``, ``FRACtional``, ``TSTamp``, ``UNIT``, ``SOURUNIT``,
  ``SOURSTATus`` (the source status bits: output on, source limited);
* source configuration lists: ``:SOURce:CONFiguration:LIST:CREate``, ``:STORe`` (the source
  function, levels, ranges, limits and the output state, as the manual lists them),
  ``:SIZE?``, ``:DELete``, ``:RECall``;
* the trigger model: see :mod:`~insitu.simulators.emulators.keithley2450.trigger_commands`.

Handlers take the parameter strings and return the reply (queries) or None (commands); they
raise :class:`~insitu.simulators.emulators.scpi.SCPIError` for the error queue.
"""

from __future__ import annotations

from collections.abc import Callable

from ..scpi import (
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
)
from .instrument import Keithley2450Instrument
from .state import (
    ELEMENTS,
    FIRMWARE,
    MANUFACTURER,
    MAX_BUFFER_POINTS,
    MAX_CONFIG_POINTS,
    MAX_CURRENT_A,
    MAX_VOLTAGE_V,
    MODEL,
    SOURCE_CURRENT_RANGES,
    SOURCE_VOLTAGE_RANGES,
    ConfigList,
    InstrumentState,
    ReadingBuffer,
    SourceSettings,
    fit_range,
)
from .state import format_setting as _fmt
from .trigger_commands import add_trigger_commands

__all__ = ["build_command_set"]

Getter = Callable[[list[str]], str]


def _const(reply: str) -> Getter:
    def get(params: list[str]) -> str:
        check_count(params, 0, 0)
        return reply

    return get


def _getter(fn: Callable[[], str]) -> Getter:
    """A query without parameters whose reply ``fn`` gives at the time of the query."""

    def get(params: list[str]) -> str:
        check_count(params, 0, 0)
        return fn()

    return get


def _ignore(params: list[str]) -> None:
    return None


def _elements(params: list[str]) -> list[str]:
    if len(params) > 14:
        raise SCPIError(-108)
    return [parse_choice(p, ELEMENTS) for p in params]


def build_command_set(inst: Keithley2450Instrument) -> CommandSet:
    """The command table of a 2450 whose handlers act on ``inst``.

    Parameters
    ----------
    inst : Keithley2450Instrument
        The instrument model (its ``state`` is looked up at each command: ``*RST`` replaces
        it).

    Returns
    -------
    CommandSet
        One group of commands after the other, in the manual's order; the first pattern that
        matches a command wins, so the order of the groups is kept.
    """
    h = _Handlers(inst)
    cs = CommandSet()
    for add_group in (
        _add_common,
        _add_system,
        _add_source_current,
        _add_source_voltage,
        _add_sense,
        _add_output_and_measurements,
        _add_buffers,
        _add_config_lists,
    ):
        add_group(cs, h)
    add_trigger_commands(cs, inst)
    return cs


def _add_common(cs: CommandSet, h: _Handlers) -> None:
    """IEEE 488.2 common commands."""
    add = cs.add
    add("*IDN", getter=_const(f"{MANUFACTURER},{MODEL},{h.inst.serial},{FIRMWARE}"))
    add("*RST", setter=h.rst)
    add("*CLS", setter=h.cls)
    add("*OPC", setter=h.opc, getter=_const("1"))
    add("*WAI", setter=lambda p: check_count(p, 0, 0))
    add("*ESR", getter=h.esr)
    # Status byte: bit 2 (value 4) is "error available" on the 2450.
    add("*STB", getter=lambda p: "4" if len(h.state.errors) else "0")
    add("*TRG", setter=_ignore)
    add("*TST", getter=_const("0"))


def _add_system(cs: CommandSet, h: _Handlers) -> None:
    """The error queue, and system settings that change nothing emulated."""
    add = cs.add
    add(":SYSTem:ERRor[:NEXT]", getter=_getter(lambda: ErrorQueue.format(h.state.errors.pop())))
    add(":SYSTem:ERRor:COUNt", getter=lambda p: str(len(h.state.errors)))
    add(":SYSTem:ERRor:CLEar", setter=lambda p: h.state.errors.clear())
    add(":SYSTem:CLEar", setter=lambda p: h.state.errors.clear())
    add(":SYSTem:BEEPer[:IMMediate]", setter=_ignore)
    add(":SYSTem:LFRequency", getter=_const("60"))
    add(":SYSTem:VERSion", getter=_const("1999.0"))
    add(":DISPlay:LIGHt:STATe", setter=_ignore, getter=_const("ON50"))
    add(":DISPlay:SCReen", setter=_ignore)
    add(":ROUTe:TERMinals", setter=_ignore, getter=_const("FRON"))
    add(":FORMat[:DATA]", setter=h.format, getter=_const("ASC"))
    add(":STATus:PRESet", setter=_ignore)


def _add_source_current(cs: CommandSet, h: _Handlers) -> None:
    """The source function, and sourcing current (level, range, voltage limit)."""
    add = cs.add
    add(
        "[:SOURce]:FUNCtion[:MODE]",
        setter=h.source_function,
        getter=_getter(lambda: h.source.function),
    )
    add(
        "[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]",
        setter=h.current,
        getter=lambda p: _fmt(h.source.current_A),
    )
    add(
        "[:SOURce]:CURRent:RANGe",
        setter=h.current_range,
        getter=lambda p: _fmt(h.source.current_range_A),
    )
    add(
        "[:SOURce]:CURRent:RANGe:AUTO",
        setter=h.current_range_auto,
        getter=lambda p: str(int(h.source.current_range_auto)),
    )
    add("[:SOURce]:CURRent:VLIMit[:LEVel]", setter=h.vlim, getter=lambda p: _fmt(h.source.vlim_V))
    add(
        "[:SOURce]:CURRent:VLIMit[:LEVel]:TRIPped",
        getter=_getter(lambda: str(int(h.inst.smu.tripped("CURR")))),
    )
    add("[:SOURce]:CURRent:READ:BACK", setter=_ignore, getter=_const("1"))
    add("[:SOURce]:CURRent:DELay", setter=_ignore, getter=_const(_fmt(0.0)))
    add("[:SOURce]:CURRent:DELay:AUTO", setter=_ignore, getter=_const("1"))


def _add_source_voltage(cs: CommandSet, h: _Handlers) -> None:
    """Sourcing voltage (level, range, current limit)."""
    add = cs.add
    add(
        "[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
        setter=h.voltage,
        getter=lambda p: _fmt(h.source.voltage_V),
    )
    add(
        "[:SOURce]:VOLTage:RANGe",
        setter=h.voltage_range,
        getter=lambda p: _fmt(h.source.voltage_range_V),
    )
    add(
        "[:SOURce]:VOLTage:RANGe:AUTO",
        setter=h.voltage_range_auto,
        getter=lambda p: str(int(h.source.voltage_range_auto)),
    )
    add("[:SOURce]:VOLTage:ILIMit[:LEVel]", setter=h.ilim, getter=lambda p: _fmt(h.source.ilim_A))
    add(
        "[:SOURce]:VOLTage:ILIMit[:LEVel]:TRIPped",
        getter=_getter(lambda: str(int(h.inst.smu.tripped("VOLT")))),
    )
    add("[:SOURce]:VOLTage:READ:BACK", setter=_ignore, getter=_const("1"))


def _add_sense(cs: CommandSet, h: _Handlers) -> None:
    """The measure function, and per function its range, auto range and integration time."""
    add = cs.add
    add(
        "[:SENSe]:FUNCtion[:ON]",
        setter=h.sense_function,
        getter=lambda p: f'"{h.state.sense.function}:DC"',
    )
    for func in ("VOLT", "CURR"):
        node = "VOLTage" if func == "VOLT" else "CURRent"
        add(
            f"[:SENSe]:{node}[:DC]:RANGe[:UPPer]",
            setter=h.sense_range(func),
            getter=_getter(lambda f=func: _fmt(h.state.sense.range[f])),
        )
        add(
            f"[:SENSe]:{node}[:DC]:RANGe:AUTO",
            setter=h.sense_auto(func),
            getter=_getter(lambda f=func: str(int(h.state.sense.auto[f]))),
        )
        add(
            f"[:SENSe]:{node}[:DC]:NPLCycles",
            setter=h.nplc(func),
            getter=_getter(lambda f=func: _fmt(h.state.sense.nplc[f])),
        )
        add(f"[:SENSe]:{node}[:DC]:RSENse", setter=_ignore, getter=_const("0"))
        add(f"[:SENSe]:{node}[:DC]:AZERo[:STATe]", setter=_ignore, getter=_const("1"))
    add("[:SENSe]:COUNt", setter=_ignore, getter=_const("1"))


def _add_output_and_measurements(cs: CommandSet, h: _Handlers) -> None:
    """The output switch, and single readings (``:READ?``, ``:MEASure?``)."""
    add = cs.add
    add(":OUTPut[:STATe]", setter=h.output, getter=lambda p: str(int(h.source.output)))
    add(":READ", getter=h.measure(None))
    add(":MEASure", getter=h.measure(None))
    add(":MEASure:VOLTage[:DC]", getter=h.measure("VOLT"))
    add(":MEASure:CURRent[:DC]", getter=h.measure("CURR"))


def _add_buffers(cs: CommandSet, h: _Handlers) -> None:
    """Reading buffers: make, delete, clear, resize, count and read them."""
    add = cs.add
    add(":TRACe:MAKE", setter=h.trace_make)
    add(":TRACe:DELete", setter=h.trace_delete)
    add(":TRACe:CLEar", setter=lambda p: h.buffer(p, maximum=1).clear())
    add(":TRACe:POINts", setter=h.trace_points, getter=lambda p: str(h.buffer(p, 1).capacity))
    add(":TRACe:ACTual", getter=lambda p: str(len(h.buffer(p, 1))))
    add(":TRACe:ACTual:STARt", getter=lambda p: "1" if len(h.buffer(p, 1)) else "0")
    add(":TRACe:ACTual:END", getter=lambda p: str(len(h.buffer(p, 1))))
    add(":TRACe:DATA", getter=h.trace_data)


def _add_config_lists(cs: CommandSet, h: _Handlers) -> None:
    """Source configuration lists: create, store, size, delete, recall."""
    add = cs.add
    add("[:SOURce]:CONFiguration:LIST:CREate", setter=h.conf_create)
    add("[:SOURce]:CONFiguration:LIST:STORe", setter=h.conf_store)
    add(
        "[:SOURce]:CONFiguration:LIST:SIZE",
        getter=lambda p: str(len(h.state.config_points(one_param(p)))),
    )
    add("[:SOURce]:CONFiguration:LIST:DELete", setter=h.conf_delete)
    add("[:SOURce]:CONFiguration:LIST:RECall", setter=h.conf_recall)


class _Handlers:
    """The handlers that are more than a line, acting on the instrument model."""

    def __init__(self, inst: Keithley2450Instrument) -> None:
        self.inst = inst

    @property
    def state(self) -> InstrumentState:
        return self.inst.state

    @property
    def source(self) -> SourceSettings:
        return self.inst.state.source

    # common
    def rst(self, params: list[str]) -> None:
        check_count(params, 0, 0)
        self.inst.reset()

    def cls(self, params: list[str]) -> None:
        check_count(params, 0, 0)
        self.state.errors.clear()
        self.state.opc = False

    def opc(self, params: list[str]) -> None:
        check_count(params, 0, 0)
        self.state.opc = True

    def esr(self, params: list[str]) -> str:
        check_count(params, 0, 0)
        value = 1 if self.state.opc else 0
        self.state.opc = False
        return str(value)

    def format(self, params: list[str]) -> None:
        if parse_choice(one_param(params), ("ASCii", "REAL", "SREal")) != "ASC":
            raise SCPIError(-221, "Settings conflict; only ASCII data are emulated")

    # source
    def source_function(self, params: list[str]) -> None:
        func = parse_choice(one_param(params), ("CURRent", "VOLTage"))
        source = self.state.source
        if func != source.function and source.output:
            # Changing the source function switches the output off on the real instrument.
            source.output = False
        source.function = func

    def current(self, params: list[str]) -> None:
        source = self.state.source
        value = parse_number(
            one_param(params), minimum=-MAX_CURRENT_A, maximum=MAX_CURRENT_A, default=0.0
        )
        if not source.current_range_auto and abs(value) > source.current_range_A * 1.05:
            raise SCPIError(-222)
        source.current_A = value
        if source.current_range_auto:
            source.current_range_A = fit_range(value, SOURCE_CURRENT_RANGES)

    def current_range(self, params: list[str]) -> None:
        value = parse_number(
            one_param(params), minimum=-MAX_CURRENT_A, maximum=MAX_CURRENT_A, default=1e-6
        )
        self.state.source.current_range_A = fit_range(value, SOURCE_CURRENT_RANGES)
        self.state.source.current_range_auto = False

    def current_range_auto(self, params: list[str]) -> None:
        self.state.source.current_range_auto = parse_bool(one_param(params))

    def vlim(self, params: list[str]) -> None:
        self.state.source.vlim_V = parse_number(
            one_param(params), minimum=0.02, maximum=MAX_VOLTAGE_V, default=21.0
        )

    def voltage(self, params: list[str]) -> None:
        source = self.state.source
        value = parse_number(
            one_param(params), minimum=-MAX_VOLTAGE_V, maximum=MAX_VOLTAGE_V, default=0.0
        )
        source.voltage_V = value
        if source.voltage_range_auto:
            source.voltage_range_V = fit_range(value, SOURCE_VOLTAGE_RANGES)

    def voltage_range(self, params: list[str]) -> None:
        value = parse_number(
            one_param(params), minimum=-MAX_VOLTAGE_V, maximum=MAX_VOLTAGE_V, default=0.02
        )
        self.state.source.voltage_range_V = fit_range(value, SOURCE_VOLTAGE_RANGES)
        self.state.source.voltage_range_auto = False

    def voltage_range_auto(self, params: list[str]) -> None:
        self.state.source.voltage_range_auto = parse_bool(one_param(params))

    def ilim(self, params: list[str]) -> None:
        self.state.source.ilim_A = parse_number(
            one_param(params), minimum=1e-9, maximum=MAX_CURRENT_A, default=105e-6
        )

    def output(self, params: list[str]) -> None:
        self.state.source.output = parse_bool(one_param(params))

    # sense
    def sense_function(self, params: list[str]) -> None:
        text = parse_string(one_param(params))
        func = parse_choice(text.split(":")[0], ("VOLTage", "CURRent", "RESistance"))
        if func == "RES":
            raise SCPIError(-221, "Settings conflict; resistance is not emulated")
        self.state.sense.function = func

    def sense_range(self, func: str) -> Callable[[list[str]], None]:
        limit = MAX_VOLTAGE_V if func == "VOLT" else MAX_CURRENT_A

        def setter(params: list[str]) -> None:
            sense = self.state.sense
            sense.range[func] = abs(
                parse_number(one_param(params), minimum=-limit, maximum=limit, default=limit)
            )
            sense.auto[func] = False

        return setter

    def sense_auto(self, func: str) -> Callable[[list[str]], None]:
        def setter(params: list[str]) -> None:
            self.state.sense.auto[func] = parse_bool(one_param(params))

        return setter

    def nplc(self, func: str) -> Callable[[list[str]], None]:
        def setter(params: list[str]) -> None:
            self.state.sense.nplc[func] = parse_number(
                one_param(params), minimum=0.01, maximum=10.0, default=1.0
            )

        return setter

    # measurements
    def measure(self, func: str | None) -> Getter:
        """``:READ?`` (func None), ``:MEAS?`` (the active function) or ``:MEAS:<func>?``."""

        def getter(params: list[str]) -> str:
            name = self.state.buffer_key(params, 0)
            elements = _elements(params[1:]) if len(params) > 1 else ["READ"]
            if func is not None:
                self.state.sense.function = func
            self.inst.single_reading(name)
            buf = self.state.buffers[name]
            return buf.rows(len(buf) - 1, len(buf) - 1, elements)

        return getter

    # buffers
    def buffer(self, params: list[str], maximum: int) -> ReadingBuffer:
        """The buffer named by the only (optional) parameter."""
        check_count(params, 0, maximum)
        return self.state.buffers[self.state.buffer_key(params, 0)]

    def trace_make(self, params: list[str]) -> None:
        check_count(params, 2, 3)
        name = parse_string(params[0], required_quotes=True)
        key = name.upper()
        if key in self.state.buffers or not name or len(name) > 31:
            raise SCPIError(-224, "Illegal parameter value; buffer name exists or is invalid")
        size = parse_int(params[1], minimum=10, maximum=MAX_BUFFER_POINTS)
        self.state.check_buffer_memory(size)
        self.state.buffers[key] = ReadingBuffer(size)

    def trace_delete(self, params: list[str]) -> None:
        name = self.state.buffer_key([one_param(params)], 0)
        if name in ("DEFBUFFER1", "DEFBUFFER2"):
            raise SCPIError(-224, "Illegal parameter value; default buffers cannot be deleted")
        if self.inst.trigger.uses(buffer=name):
            raise SCPIError(-221, "Settings conflict; buffer in use by the trigger model")
        del self.state.buffers[name]

    def trace_points(self, params: list[str]) -> None:
        check_count(params, 1, 2)
        size = parse_int(params[0], minimum=10, maximum=MAX_BUFFER_POINTS)
        key = self.state.buffer_key(params, 1)
        self.state.check_buffer_memory(size, replacing=key)
        buf = self.state.buffers[key]
        buf.capacity = size
        buf.clear()  # resizing a buffer clears it on the real instrument

    def trace_data(self, params: list[str]) -> str:
        if len(params) < 2:
            raise SCPIError(-109)
        buf = self.state.buffers[self.state.buffer_key(params, 2)]
        n = len(buf)
        if n == 0:
            raise SCPIError(-230, "Data corrupt or stale; the buffer is empty")
        start = parse_int(params[0], minimum=1, maximum=n)
        end = parse_int(params[1], minimum=1, maximum=n)
        if end < start:
            raise SCPIError(-222)
        elements = _elements(params[3:]) if len(params) > 3 else ["READ"]
        return buf.rows(start - 1, end - 1, elements)

    # source configuration lists
    def conf_create(self, params: list[str]) -> None:
        name = self.state.config_name(one_param(params), exists=False)
        if name.upper() in self.state.config_lists:
            raise SCPIError(-224, "Illegal parameter value; configuration list already exists")
        self.state.check_config_memory(new_list=True)
        self.state.config_lists[name.upper()] = ConfigList(name)

    def conf_store(self, params: list[str]) -> None:
        check_count(params, 1, 2)
        points = self.state.config_points(params[0])
        index = len(points) + 1
        if len(params) > 1:
            index = parse_int(params[1], minimum=1, maximum=len(points) + 1)
        if index > MAX_CONFIG_POINTS:
            raise SCPIError(-222, "Parameter data out of range; configuration list is full")
        point = self.state.source.copy()
        if index > len(points):
            self.state.check_config_memory()
            points.append(point)
        else:
            points[index - 1] = point

    def conf_delete(self, params: list[str]) -> None:
        check_count(params, 1, 2)
        key = self.state.config_name(params[0]).upper()
        if self.inst.trigger.uses(config=key):
            raise SCPIError(
                -221, "Settings conflict; configuration list in use by the trigger model"
            )
        if len(params) == 1:
            del self.state.config_lists[key]
            return
        points = self.state.config_lists[key].points
        del points[self.state.config_index(params[1], points) - 1]

    def conf_recall(self, params: list[str]) -> None:
        check_count(params, 1, 2)
        points = self.state.config_points(params[0])
        index = self.state.config_index(params[1] if len(params) > 1 else None, points)
        self.state.recall(points[index - 1])
