"""The Instrument base against the tiny line-based TCP server of ``conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from insitu.instruments.base import Instrument
from insitu.instruments.errors import (
    InstrumentConnectionError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeoutError,
)
from insitu.instruments.keithley2450 import Keithley2450
from insitu.instruments.lakeshore336 import LakeShore336

pytestmark = pytest.mark.timeout(30)

NAME = "Test instrument (tcp)"


@pytest.fixture
def inst(line_server) -> Iterator[Instrument]:
    with Instrument(
        line_server.resource, name=NAME, timeout_s=0.3, read_termination="\r\n"
    ) as instrument:
        yield instrument


def test_the_drivers_derive_from_the_base() -> None:
    assert issubclass(Keithley2450, Instrument)
    assert issubclass(LakeShore336, Instrument)


def test_write_query_and_last_command(inst, line_server) -> None:
    assert inst.query("A?") == "ok:A?"
    inst.write("*CLS")
    assert inst.last_command == "*CLS"
    inst.last_command = "SETP 1,300"  # a driver names a chained command more precisely
    assert inst.last_command == "SETP 1,300"
    assert inst.query("B?") == "ok:B?"  # answered after *CLS arrived
    assert line_server.received == ["A?", "*CLS", "B?"]
    assert inst.resource_name == line_server.resource and inst.timeout_s == 0.3


@pytest.mark.parametrize(
    ("reply", "kind", "expected"),
    [
        ("+2.500E+01", float, 25.0),
        ("1.000E+00", int, 1),
        ("-113", int, -113),
        ("0", bool, False),
        ("+1", bool, True),
    ],
)
def test_query_numbers(inst, line_server, reply, kind, expected) -> None:
    line_server.replies["N? 1"] = reply
    query = {float: inst.query_float, int: inst.query_int, bool: inst.query_bool}[kind]
    value = query("N? 1")
    assert value == expected and type(value) is kind


@pytest.mark.parametrize("reply", ["garbled", "", "inf"])
def test_a_bad_number_names_the_reply_the_query_and_the_command(inst, line_server, reply):
    # "inf" as an int overflows; it is a protocol error too, not an OverflowError.
    line_server.replies["RANGE? 1"] = reply
    with pytest.raises(InstrumentProtocolError) as info:
        inst.query_int("RANGE? 1")
    assert info.value.message == f"unexpected reply {reply!r} to RANGE?"
    assert info.value.last_command == "RANGE? 1"
    assert info.value.instrument == NAME


def test_parse_number_of_a_field_and_what_it_answers(inst) -> None:
    inst.write("KRDG? A;RDGST? A")
    assert inst.parse_number("4", int, "RDGST?") == 4
    with pytest.raises(InstrumentProtocolError) as info:
        inst.parse_number("x", float, "KRDG?")
    assert info.value.message == "unexpected reply 'x' to KRDG?"
    assert info.value.last_command == "KRDG? A;RDGST? A"
    with pytest.raises(TypeError, match="bool, int or float"):
        inst.parse_number("1", str, "X?")  # type: ignore[type-var]


def test_query_idn(inst, line_server) -> None:
    line_server.replies["*IDN?"] = "LSCI, MODEL336 ,123/456,2.9"
    assert inst.query_idn() == ("LSCI", "MODEL336", "123/456", "2.9")
    line_server.replies["*IDN?"] = "LSCI,MODEL336"
    with pytest.raises(InstrumentProtocolError, match="expected 4 comma-separated") as info:
        inst.query_idn()
    assert info.value.last_command == "*IDN?"


def test_a_reply_that_does_not_parse_is_asked_again_on_the_same_connection(
    inst, line_server
) -> None:
    line_server.replies["N?"] = "4#2"  # as a noisy line garbles "412"
    answers = iter(["4#2", "412"])

    def parse(reply: str) -> int:
        assert reply == "4#2"  # what the server sent, each time
        return inst.parse_number(next(answers), int, "N?")

    assert inst.query_parsed("N?", parse) == 412
    assert line_server.received == ["N?", "N?"] and line_server.connections == 1


def test_a_reply_that_never_parses_is_a_protocol_error_after_the_tries(inst, line_server):
    line_server.replies["N? 1"] = "4#2"
    with pytest.raises(InstrumentProtocolError) as info:
        inst.query_int("N? 1", tries=3)
    assert info.value.message == "unexpected reply '4#2' to N? (asked 3 times)"
    assert info.value.last_command == "N? 1"
    assert line_server.received == ["N? 1"] * 3
    line_server.received.clear()
    with pytest.raises(InstrumentProtocolError) as info:
        inst.query_int("N? 1")  # one try unless asked for more (the Lake Shore's default)
    assert info.value.message == "unexpected reply '4#2' to N?"
    assert line_server.received == ["N? 1"]


def test_query_idn_asks_again_for_a_damaged_identity_only(inst, line_server) -> None:
    line_server.replies["*IDN?"] = "LSCI,MODEL336#123/456,2.9"  # a separator garbled
    with pytest.raises(InstrumentProtocolError, match="not an instrument identity"):
        inst.query_idn(tries=3)
    assert line_server.received == ["*IDN?"] * 3
    line_server.received.clear()
    line_server.replies["*IDN?"] = "<!DOCTYPE HTML>"  # plainly not an identity: asked once
    with pytest.raises(InstrumentProtocolError, match="not an instrument identity"):
        inst.query_idn(tries=3)
    assert line_server.received == ["*IDN?"]


def test_check_errors_is_a_hook(line_server) -> None:
    class WithErrorQueue(Instrument):
        def check_errors(self) -> None:
            code = self.query_int("ERR?")
            if code:
                raise self._error(InstrumentReportedError, f"error {code}", code=code)

    line_server.replies["ERR?"] = "0"
    with WithErrorQueue(line_server.resource, name=NAME, read_termination="\r\n") as inst:
        inst.check_errors()  # the base checks nothing; the override reads the queue
    line_server.replies["ERR?"] = "-222"
    with (
        pytest.raises(InstrumentReportedError) as info,
        WithErrorQueue(line_server.resource, name=NAME, read_termination="\r\n") as inst,
    ):
        inst.check_errors()
    assert info.value.code == -222 and info.value.last_command == "ERR?"


def test_the_base_check_errors_sends_nothing(inst, line_server) -> None:
    inst.check_errors()
    assert inst.query("A?") == "ok:A?"
    assert line_server.received == ["A?"]


def test_connection_errors_come_from_the_session(line_server) -> None:
    with Instrument(
        line_server.resource, name=NAME, timeout_s=0.2, timeout_hint="ask the oven"
    ) as inst:
        with pytest.raises(InstrumentTimeoutError, match="ask the oven") as info:
            inst.query("SILENT?")
        assert info.value.last_command == "SILENT?" and NAME in str(info.value)


def test_close_on_exit_is_safe_to_repeat(line_server) -> None:
    with Instrument(line_server.resource, name=NAME) as inst:
        assert inst.is_open
    assert not inst.is_open
    inst.close()
    with pytest.raises(InstrumentConnectionError, match="connection is closed"):
        inst.write("*CLS")


def test_reopen_after_the_instrument_closed_the_connection(inst, line_server) -> None:
    with pytest.raises(InstrumentConnectionError):
        inst.query("BYE")
    inst.reopen()
    assert inst.query("A?") == "ok:A?"
    assert line_server.connections == 2
