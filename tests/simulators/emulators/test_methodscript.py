"""The MethodSCRIPT emulator seen from a third-party client: raw pyserial over a pty and TCP."""

from __future__ import annotations

import time

import numpy as np
import pytest
import serial

from insitu.instruments.methodscript import codec as ms
from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.emulators.methodscript.server import MethodScriptEmulator

TRANSPORTS = ["pty", "tcp"]


@pytest.fixture(params=TRANSPORTS)
def bench(request):
    cell = VirtualCell("A-LPS")
    clock = SimClock(speedup=1e4)
    emu = MethodScriptEmulator(cell, clock, transport=request.param)
    emu.start()
    port = serial.serial_for_url(emu.resource, baudrate=230400, timeout=2)
    try:
        yield emu, cell, port
    finally:
        port.close()
        emu.stop()


def ask(port: serial.Serial, text: str) -> str:
    port.write(text.encode("ascii"))
    return port.readline().decode("ascii")


def read_until_blank(port: serial.Serial, limit_s: float = 10.0) -> list[str]:
    lines, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        line = port.readline().decode("ascii")
        if line == "\n":
            return lines
        if line:
            lines.append(line.rstrip("\n"))
    raise AssertionError(f"no end of script output; got {lines[-5:]}")


# A chronopotentiometry script written the way PalmSens' MethodSCRIPT examples do it
# (MSLoopExample009-CP: mode 6, set_i, cell_on, timer, meas_loop_cp E I i t_interval t_run).
CP_SCRIPT = """e
# chronopotentiometry, 1 mA, a package every 100 ms for 2 s
var potential
var current
var t
set_pgstat_chan 0
set_pgstat_mode 6
set_max_bandwidth 10
set_range ab 1
set_autoranging ab 100m 2
set_range db 20m
set_autoranging db 20m 20m
set_i 0
cell_on
timer_start
meas_loop_cp potential current 1m 100m 2
    timer_get t
    pck_start
        pck_add t
        pck_add current
        pck_add potential
    pck_end
endloop
on_finished:
    cell_off

"""


def test_identity(bench):
    emu, _, port = bench
    first, second = ask(port, "t\n"), port.readline().decode()
    info = ms.parse_firmware(first, second)
    assert info.device_code == "es4_hr" and info.release
    assert ask(port, "i\n") == f"i{emu.serial}\n"
    assert ask(port, "v\n").startswith("v01.")


def test_third_party_session_parses_packages_with_the_codec(bench):
    emu, cell, port = bench
    # A-LPS's interphase grows while the cell rests, and how long it rests before the script
    # starts depends on how busy the machine is: bracket the readings by the cell model's
    # voltage at 1 mA before and after the run instead of comparing with one of them.
    v_before = cell.voltage(1e-3)
    port.write(CP_SCRIPT.encode("ascii"))
    assert port.readline() == b"e\n"
    lines = read_until_blank(port)
    assert lines[0] == "M000A" and lines[-1] == "*"
    packages = [ms.parse_package(line) for line in lines if line.startswith("P")]
    assert len(packages) == 20
    t = np.array([p[0].value for p in packages])
    i = np.array([p[1].value for p in packages])
    v = np.array([p[2].value for p in packages])
    assert [var.type for var in packages[0]] == ["eb", "ba", "ab"]
    np.testing.assert_allclose(t, 0.1 * np.arange(1, 21), atol=1e-6)
    np.testing.assert_allclose(i, 1e-3, rtol=1e-6)
    v_after = cell.voltage(1e-3)
    assert v_before < v_after
    assert np.all(v > 0.995 * v_before) and np.all(v < 1.005 * v_after), (v_before, v, v_after)
    assert packages[0][1].range == 21  # the 1 mA range of the EmStat4
    assert not emu.cell_is_on  # on_finished: cell_off ran


def test_unknown_command_then_keeps_working(bench):
    _, _, port = bench
    assert ask(port, "hello\n") == "h!0003\n"
    assert ms.parse_error("h!0003").code == 0x0003
    assert ask(port, "Z\n") == "Z!0006\n"  # nothing running
    assert ask(port, "i\n").startswith("i")


@pytest.mark.parametrize(
    ("script", "code", "line", "col"),
    [
        ("var p\nbogus_command 1\n", 0x4001, 2, 14),
        ("var p\nvar p\n", 0x4026, 2, 5),
        ("set_e 1.5\n", 0x4004, 1, 7),
        ("set_e x\n", 0x4007, 1, 7),
        ("var p\nmeas_loop_ocp p 100m\n", 0x4002, 2, 17),
        ("var p\nmeas_loop_ocp p 100m 2\n", 0x4018, 2, None),
    ],
)
def test_script_syntax_errors(bench, script, code, line, col):
    _, _, port = bench
    reply = ask(port, f"e\n{script}\n")
    err = ms.parse_error(reply)
    assert err is not None and (err.code, err.line, err.column) == (code, line, col), reply
    assert ask(port, "i\n").startswith("i")  # still serving


def test_runtime_error_ocp_with_cell_on(bench):
    _, _, port = bench
    port.write(b"e\nvar p\nset_pgstat_mode 2\ncell_on\nmeas_loop_ocp p 1 2\nendloop\n\n")
    assert port.readline() == b"e\n"
    lines = read_until_blank(port)
    assert ms.parse_error(lines[-1]) == ms.ErrorReply(0x0014, line=4)


def test_abort_mid_script(bench):
    emu, _, port = bench
    script = CP_SCRIPT.replace("1m 100m 2\n", "1m 1 100000\n")  # ~10 s of wall time
    port.write(script.encode("ascii"))
    assert port.readline() == b"e\n"
    assert port.readline() == b"M000A\n"
    assert port.readline().startswith(b"P")
    start = time.monotonic()
    port.write(b"Z\n")
    lines = read_until_blank(port, limit_s=3)
    assert time.monotonic() - start < 1.0
    assert "Z" in lines and lines[-1] == "*"
    assert not emu.running and not emu.cell_is_on


def test_samples_at_exact_times_and_loops(bench):
    _, _, port = bench
    script = (
        "e\nvar p\nvar t\nvar n\nstore_var n 0i ja\nset_pgstat_mode 2\ntimer_start\n"
        "loop n < 3i\n  wait 500m\n  add_var n 1i\nendloop\n"
        "meas_loop_ocp p 250m 1\n  timer_get t\n  pck_start\n  pck_add t\n  pck_add p\n"
        "  pck_add n\n  pck_end\n  if t >= 2\n    breakloop\n  endif\nendloop\n\n"
    )
    port.write(script.encode("ascii"))
    assert port.readline() == b"e\n"
    lines = read_until_blank(port)
    assert lines[:2] == ["L", "+"]
    packages = [ms.parse_package(x) for x in lines if x.startswith("P")]
    times = [p[0].value for p in packages]
    assert times == pytest.approx([1.75, 2.0])  # 3 waits of 0.5 s, then 250 ms samples
    assert all(p[2].value == 3 for p in packages)
    assert all(abs(p[1].value) < 1e-3 for p in packages)  # pristine symmetric cell: OCV ≈ 0


def test_garble_hook(bench):
    emu, _, port = bench
    emu.garble_next_package()
    port.write(CP_SCRIPT.encode("ascii"))
    assert port.readline() == b"e\n"
    lines = read_until_blank(port)
    with pytest.raises(ms.PackageError):
        ms.parse_package(lines[1])
    ms.parse_package(lines[2])


def test_tcp_is_loopback_only_and_stop_is_idempotent():
    emu = MethodScriptEmulator(VirtualCell("A-LPS"), SimClock(1e4), transport="tcp")
    url = emu.start()
    assert url.startswith("socket://127.0.0.1:")
    emu.stop()
    emu.stop()
    with pytest.raises(ValueError):
        MethodScriptEmulator(VirtualCell("A-LPS"), SimClock(1e4), transport="usb")


class _FarAheadClock:
    """A clock at which every sample is already due: the runner takes whole loops at once."""

    speedup = 1e12
    time_s = 0.0

    def now(self) -> float:
        return self.time_s

    def sleep_until(self, t: float) -> None:
        pass


# A CP sequence as the driver writes it: voltage window inside the script, a guard variable,
# a step that stops on the limit, an integer variable and a literal in the packages' rules.
FAST_PATH_SCRIPT = """var p
var c
var t
var s
store_var s 0i ja
set_pgstat_chan 0
set_pgstat_mode 6
set_i 0
cell_on
timer_start
meas_loop_cp p c 2m 10 3600
  timer_get t
  pck_start
    pck_add t
    pck_add p
    pck_add c
    pck_add s
  pck_end
  if p > 5
    store_var s 1i ja
    breakloop
  endif
  if t >= 3000
    breakloop
  elseif t > 1800
    add_var s 1i
  endif
endloop
if s < 1000i
  meas_loop_cp p c -50m 10 3600
    timer_get t
    pck_start
      pck_add t
      pck_add p
      pck_add c
    pck_end
  endloop
endif
cell_off
set_pgstat_mode 2
meas_loop_ocp p 1 60
  pck_start
    pck_add p
  pck_end
endloop
on_finished:
  cell_off
"""


def _run_script_lines(fast: bool, monkeypatch) -> list[str]:
    import threading

    from insitu.simulators.emulators.methodscript import interpreter as mi

    if not fast:
        monkeypatch.setattr(mi.ScriptRunner, "_quiet_plan", lambda self, s, outs: None)
    else:
        monkeypatch.undo()
    out: list[str] = []
    blocks: list[int] = []

    def emit_block(text: str, n: int) -> None:
        blocks.append(n)
        out.extend(text.splitlines())

    main, finished = mi.parse_script(FAST_PATH_SCRIPT.splitlines())
    state = {"cell_on": False, "mode": 2, "e": 0.0, "i": 0.0, "chan": 0}
    clock = _FarAheadClock()
    runner = mi.ScriptRunner(
        VirtualCell("LiI-AT", seed=5),
        clock,
        out.append,
        lambda: None,
        threading.Lock(),
        mi.EMSTAT4_HR,
        threading.Event(),
        state,
        emit_block=emit_block,
    )
    clock.time_s = 1e5  # every sample of the script is due at once
    runner.run(main, finished)
    assert bool(blocks) == fast
    return out


def test_fast_path_output_is_identical_to_the_interpreter(monkeypatch):
    slow = _run_script_lines(False, monkeypatch)
    fast = _run_script_lines(True, monkeypatch)
    packages = [x for x in slow if x.startswith("P")]
    # first loop: 180 quiet samples, 119 that add to s, a break at t = 3000 s; then the
    # second loop and the OCP loop
    assert len(packages) == 300 + 360 + 60
    assert {x.rsplit(";", 1)[1] for x in packages[:300]} == {
        "ja" + ms.encode_value(k, integer=True) for k in range(120)
    }
    assert fast == slow
