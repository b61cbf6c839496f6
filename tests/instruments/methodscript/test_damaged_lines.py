"""Telling damaged MethodSCRIPT output lines apart by their layout (codec)."""

from __future__ import annotations

import itertools
import random

import pytest

from insitu.instruments.methodscript import codec as ms

NOISE = "#@$%&*?~^"  # what insitu.simulators.faults.FaultyLink garbles with
CP = ms.format_package([("eb", 12.5), ("ab", 1.234, 0), ("ba", 1e-3, 0, 21)])
OCP = ms.format_package([("eb", 0.25), ("ab", -0.001, 0)])
EIS = ms.format_package([("dc", 1e3), ("cc", 12.3, 0, 21), ("cd", -3.2, 0)])
ONE_VARIABLE = ms.format_package([("ab", 0.5)])
KINDS = {
    CP: "package",
    OCP: "package",
    EIS: "package",
    ONE_VARIABLE: "package",
    "M000A": "loop_start",
    "M000D": "loop_start",
    "*": "marker",
    "Z": "marker",
    "!000E: Line 16": "error",
    "!4001: Line 3, Col 12": "error",
    "!0007: Line 123": "error",
}


def damaged(line: str, rng: random.Random) -> str:
    """``line`` with 1 to 3 characters replaced by noise, as the faulty link does."""
    out = list(line)
    for _ in range(rng.randint(1, min(3, len(out)))):
        out[rng.randrange(len(out))] = rng.choice(NOISE)
    return "".join(out)


@pytest.mark.parametrize("line", [*KINDS, "e", "Z!0006", "L", "+", "Tsome text"])
def test_well_formed_lines_are_not_damaged(line):
    assert not ms.is_damaged(line)


@pytest.mark.parametrize(("line", "kind"), KINDS.items())
def test_every_single_replacement_is_told_apart(line, kind):
    for position, noise in itertools.product(range(len(line)), NOISE):
        bad = line[:position] + noise + line[position + 1 :]
        if bad == "*":
            continue  # "*" for "*", or a "Z" that reads as a loop end (both harmless)
        assert ms.is_damaged(bad), bad
        assert ms.classify_damaged(bad) == kind, bad


@pytest.mark.parametrize(("line", "kind"), KINDS.items())
def test_up_to_three_replacements_are_told_apart(line, kind):
    rng = random.Random(line)
    for _ in range(2000):
        bad = damaged(line, rng)
        if bad != line:
            assert ms.classify_damaged(bad) == kind, bad


def test_what_a_damaged_error_line_still_says():
    assert ms.damaged_error("#000E: Line 16") == ms.ErrorReply(0x000E, line=16)
    assert ms.damaged_error("!0#0E: Line 16") == ms.ErrorReply(-1, line=16)
    # A damaged digit of the line number would name another line: none is read.
    assert ms.damaged_error("!000E: Line 1#") == ms.ErrorReply(0x000E)
    assert ms.damaged_error("!4001: Line 3, Col 1?") == ms.ErrorReply(0x4001)
    assert ms.damaged_error("!000E: Line 16") is None  # well-formed: parse_error's
    assert ms.damaged_error(damaged(CP, random.Random(1))) is None


def test_damaged_forms_of_a_fixed_reply():
    assert ms.is_damaged_form_of("Z!0#06", "Z!0006")
    assert ms.is_damaged_form_of("*!0006", "Z!0006")  # parse_error would read this as !0006
    assert ms.is_damaged_form_of("#", "e")
    assert not ms.is_damaged_form_of("Z!0006", "Z!0006")  # not damaged
    assert not ms.is_damaged_form_of("Z!#", "Z!0006")  # another length
    assert not ms.is_damaged_form_of("#~^?06", "Z!0006")  # four replaced: too many
