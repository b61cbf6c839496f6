"""The settings and stored data of the emulated Keithley 2450, as ``*RST`` leaves them.

What the instrument remembers between commands, apart from the trigger model: the source
settings (function, levels, ranges, limits, output state), the sense settings, the reading
buffers, the source configuration lists, the error queue and the operation-complete flag;
plus the ASCII formats of numbers and buffer elements on the wire. Nothing here touches the
cell or the clock.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

from ..scpi import ErrorQueue, SCPIError, parse_int, parse_string

__all__ = [
    "CONFIG_LIST_MISSING",
    "DEFAULT_BUFFERS",
    "ELEMENTS",
    "ConfigList",
    "InstrumentState",
    "ReadingBuffer",
    "SenseSettings",
    "SourceSettings",
    "fit_range",
    "format_reading",
    "format_setting",
]

FIRMWARE = "1.7.12b"
MANUFACTURER = "KEITHLEY INSTRUMENTS"
MODEL = "MODEL 2450"

MAX_CURRENT_A = 1.05
MAX_VOLTAGE_V = 210.0
DEFAULT_BUFFER_POINTS = 100_000
MAX_BUFFER_POINTS = 4_000_000  # all buffers together share this much memory on the 2450
# What the buffers may hold together: one buffer at its largest beside the two default ones at
# their default size (what the driver asks for at most), so that making buffer after buffer
# from the wire cannot fill the emulator's memory. More is SCPI -225 "Out of memory".
MAX_TOTAL_BUFFER_POINTS = MAX_BUFFER_POINTS + 2 * DEFAULT_BUFFER_POINTS
MAX_CONFIG_POINTS = 100_000  # indexes per configuration list (emulator bound)
# Points of all configuration lists together (emulator bound; -225 beyond it).
MAX_TOTAL_CONFIG_POINTS = MAX_CONFIG_POINTS
# Buffers and configuration lists in all (emulator bounds: each costs memory even when empty).
MAX_BUFFERS = 100
MAX_CONFIG_LISTS = 100
# Keithley event code for a configuration list or index that does not exist.
CONFIG_LIST_MISSING = 2790
CONFIG_LIST_MISSING_TEXT = "Configuration list, error, does not exist"

SOURCE_CURRENT_RANGES = (10e-9, 100e-9, 1e-6, 10e-6, 100e-6, 1e-3, 10e-3, 100e-3, 1.0)
SOURCE_VOLTAGE_RANGES = (0.02, 0.2, 2.0, 20.0, 200.0)
DEFAULT_BUFFERS = ("DEFBUFFER1", "DEFBUFFER2")
#: The buffer elements ``:READ?``, ``:MEAS?`` and ``:TRACe:DATA?`` accept (manual notation).
ELEMENTS = (
    "READing",
    "RELative",
    "SOURce",
    "SEConds",
    "FRACtional",
    "TSTamp",
    "UNIT",
    "SOURUNIT",
    "SOURSTATus",
)


def format_setting(value: float) -> str:
    """A number in the instrument's ASCII format for settings: ``8.592543E-03``."""
    return f"{value:.6E}"


def format_reading(value: float) -> str:
    """A reading in ASCII: more digits than settings (6½ digits, plus noise headroom)."""
    return f"{value:.9E}"


def fit_range(value: float, ranges: tuple[float, ...]) -> float:
    """The smallest of ``ranges`` that holds ``value`` (5 % over-range allowed)."""
    for r in ranges:
        if abs(value) <= r * 1.05:
            return r
    return ranges[-1]


@dataclass
class SourceSettings:
    """The source settings; exactly what one source configuration list point holds.

    The output state is among them: ``:OUTPut:STATe`` is saved in and affected by source
    configuration lists (Reference Manual 2450-901-01).
    """

    function: str = "VOLT"  # "CURR" or "VOLT"
    current_A: float = 0.0
    voltage_V: float = 0.0
    current_range_A: float = 1e-6
    current_range_auto: bool = True
    voltage_range_V: float = 0.02
    voltage_range_auto: bool = True
    vlim_V: float = 21.0
    ilim_A: float = 105e-6
    output: bool = False

    def copy(self) -> SourceSettings:
        """An independent copy (a stored configuration point, or one recalled from it)."""
        return dataclasses.replace(self)


@dataclass
class SenseSettings:
    """The measure function and the per-function range, auto-range and integration time."""

    function: str = "CURR"  # "VOLT" or "CURR"
    range: dict[str, float] = field(default_factory=lambda: {"VOLT": 0.02, "CURR": 1e-6})
    auto: dict[str, bool] = field(default_factory=lambda: {"VOLT": True, "CURR": True})
    nplc: dict[str, float] = field(default_factory=lambda: {"VOLT": 1.0, "CURR": 1.0})


@dataclass
class ReadingBuffer:
    """One reading buffer (``defbuffer1``, ``defbuffer2`` or user-made)."""

    capacity: int
    readings: list[float] = field(default_factory=list)
    sources: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    source_units: list[str] = field(default_factory=list)
    #: The source status of each reading (``SOURSTATus``, bits of
    #: :mod:`~insitu.simulators.emulators.keithley2450.source`: output on, source limited).
    source_statuses: list[int] = field(default_factory=list)
    first_time: float | None = None

    def _columns(self) -> tuple[list, ...]:
        return (
            self.readings,
            self.sources,
            self.times,
            self.units,
            self.source_units,
            self.source_statuses,
        )

    def clear(self) -> None:
        """Remove every reading."""
        for column in self._columns():
            column.clear()
        self.first_time = None

    def add(
        self,
        readings: list[float],
        sources: list[float],
        times: list[float],
        unit: str,
        sunit: str,
        statuses: list[int] | None = None,
    ) -> None:
        """Append readings with their source values, times, units and source statuses (0
        when not given)."""
        if self.first_time is None and times:
            self.first_time = times[0]
        self.readings.extend(readings)
        self.sources.extend(sources)
        self.times.extend(times)
        self.units.extend([unit] * len(readings))
        self.source_units.extend([sunit] * len(readings))
        self.source_statuses.extend(statuses if statuses is not None else [0] * len(readings))
        excess = len(self.readings) - self.capacity
        if excess > 0:
            # Fill mode CONTinuous (the default buffers' default): the oldest readings go.
            for column in self._columns():
                del column[:excess]

    def rows(self, first: int, last: int, elements: list[str]) -> str:
        """Readings ``first`` to ``last`` (0-based, inclusive) as ``:TRACe:DATA?`` sends them.

        ``elements`` are short forms of :data:`ELEMENTS`, in the order asked for.
        """
        origin = self.first_time if self.first_time is not None else 0.0
        out: list[str] = []
        for i in range(first, last + 1):
            t = self.times[i]
            for e in elements:
                if e == "READ":
                    out.append(format_reading(self.readings[i]))
                elif e == "REL":
                    out.append(f"{t - origin:.9f}")
                elif e == "SOUR":
                    out.append(format_reading(self.sources[i]))
                elif e == "SEC":
                    out.append(str(_split_seconds(t)[0]))
                elif e == "FRAC":
                    out.append(f"{_split_seconds(t)[1] * 1e-9:.9f}")
                elif e == "TST":
                    out.append(_timestamp(t))
                elif e == "UNIT":
                    out.append(self.units[i])
                elif e == "SOURUNIT":
                    out.append(self.source_units[i])
                elif e == "SOURSTAT":
                    out.append(str(self.source_statuses[i]))
        return ",".join(out)

    def __len__(self) -> int:
        return len(self.readings)


@dataclass
class ConfigList:
    """One source configuration list: its name as created and its points (index 1 first)."""

    name: str
    points: list[SourceSettings] = field(default_factory=list)


def _missing_config() -> SCPIError:
    return SCPIError(CONFIG_LIST_MISSING, CONFIG_LIST_MISSING_TEXT)


@dataclass
class InstrumentState:
    """Everything ``*RST`` resets, and the error queue (which only ``*CLS`` clears)."""

    errors: ErrorQueue = field(default_factory=ErrorQueue)
    source: SourceSettings = field(default_factory=SourceSettings)
    sense: SenseSettings = field(default_factory=SenseSettings)
    buffers: dict[str, ReadingBuffer] = field(
        default_factory=lambda: {n: ReadingBuffer(DEFAULT_BUFFER_POINTS) for n in DEFAULT_BUFFERS}
    )
    # Keyed by the upper-case name: list names, like buffer names, are case-insensitive.
    config_lists: dict[str, ConfigList] = field(default_factory=dict)
    opc: bool = False

    # --- memory -----------------------------------------------------------------------------
    def check_buffer_memory(self, capacity: int, replacing: str | None = None) -> None:
        """Refuse a buffer of ``capacity`` readings the buffers' memory cannot hold.

        Parameters
        ----------
        capacity : int
            The new (or resized) buffer's capacity.
        replacing : str, optional
            Key of the buffer being resized (its present capacity is freed).

        Raises
        ------
        SCPIError
            -225 when all buffers together would exceed :data:`MAX_TOTAL_BUFFER_POINTS`.
        """
        if replacing is None and len(self.buffers) >= MAX_BUFFERS:
            raise SCPIError(-225, f"Out of memory; at most {MAX_BUFFERS} reading buffers")
        others = sum(b.capacity for key, b in self.buffers.items() if key != replacing)
        if others + capacity > MAX_TOTAL_BUFFER_POINTS:
            raise SCPIError(
                -225,
                f"Out of memory; the reading buffers hold {MAX_TOTAL_BUFFER_POINTS} readings "
                f"together and {others} are taken",
            )

    def check_config_memory(self, *, new_list: bool = False) -> None:
        """Refuse one more configuration point (or, with ``new_list``, one more list) beyond
        :data:`MAX_TOTAL_CONFIG_POINTS` (:data:`MAX_CONFIG_LISTS`).

        Raises
        ------
        SCPIError
            -225 when the configuration lists together are full.
        """
        if new_list:
            if len(self.config_lists) >= MAX_CONFIG_LISTS:
                raise SCPIError(
                    -225, f"Out of memory; at most {MAX_CONFIG_LISTS} configuration lists"
                )
            return
        if sum(len(c.points) for c in self.config_lists.values()) >= MAX_TOTAL_CONFIG_POINTS:
            raise SCPIError(
                -225,
                f"Out of memory; the configuration lists hold {MAX_TOTAL_CONFIG_POINTS} "
                "points together",
            )

    # --- parameters naming stored things -------------------------------------------------
    def buffer_key(self, params: list[str], index: int) -> str:
        """The buffer named by ``params[index]`` (``defbuffer1`` when absent).

        Raises
        ------
        SCPIError
            -224 when no such buffer exists.
        """
        if len(params) <= index:
            return "DEFBUFFER1"
        name = parse_string(params[index], required_quotes=True).upper()
        if name not in self.buffers:
            raise SCPIError(-224, "Illegal parameter value; buffer does not exist")
        return name

    def config_name(self, text: str, *, exists: bool = True) -> str:
        """A configuration list name parameter, checked to exist unless ``exists`` is False.

        Raises
        ------
        SCPIError
            -224 for an invalid name, 2790 for a list that does not exist.
        """
        name = parse_string(text, required_quotes=True)
        if not name or len(name) > 31:
            raise SCPIError(-224, "Illegal parameter value; invalid configuration list name")
        if exists and name.upper() not in self.config_lists:
            raise _missing_config()
        return name

    def config_points(self, text: str) -> list[SourceSettings]:
        """The points of the existing configuration list named by the parameter ``text``."""
        return self.config_lists[self.config_name(text).upper()].points

    @staticmethod
    def config_index(text: str | None, points: list[SourceSettings]) -> int:
        """A configuration index parameter (1 when absent) that must exist in ``points``."""
        index = 1 if text is None else parse_int(text, minimum=1, maximum=MAX_CONFIG_POINTS)
        if index > len(points):
            raise _missing_config()
        return index

    def recall(self, point: SourceSettings) -> None:
        """Make ``point`` the present source settings (output state included)."""
        self.source = point.copy()


def _split_seconds(t: float) -> tuple[int, int]:
    """Whole seconds and nanoseconds of ``t`` (so that FRAC never prints as 1.000000000)."""
    seconds = math.floor(t)
    nanoseconds = round((t - seconds) * 1e9)
    if nanoseconds >= 1_000_000_000:
        seconds, nanoseconds = seconds + 1, nanoseconds - 1_000_000_000
    return seconds, nanoseconds


def _timestamp(t: float) -> str:
    """``TSTamp`` element: ``MM/DD/YYYY HH:MM:SS.fffffffff`` with simulated time as UTC."""
    seconds, nanoseconds = _split_seconds(t)
    return time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime(seconds)) + f".{nanoseconds:09d}"
