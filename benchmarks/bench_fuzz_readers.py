"""Benchmark: the user-file readers fuzzed with a seeded mutation fuzzer, 100 000 cases each.

Issue 12 asks that every parser of user files answers bad input with its documented error
types. For each reader below, this generates ``--cases`` files by mutating valid seed files
(bytes flipped, words overwritten with sizes and offsets that lie, blocks cut, duplicated or
spliced, files truncated; in text: lines cut, duplicated and swapped, numbers replaced by
huge, NaN or garbage ones, separators changed; in JSON and YAML: values replaced by every
type, keys dropped or misspelt, deep nesting) and reads each one the way the project does:

- ``csv``, ``tsv``, ``mpt``, ``mpr``, ``parquet``: ``read_measurement(file)`` (the dispatcher of
  :mod:`insitu.analysis.electrochem.readers`); documented refusal: AnalysisInputError;
- ``tiff``, ``tiff-folder``, ``hdf5``, ``npy``, ``zarr``: ``open_volume(path)``
  (:mod:`insitu.analysis.volumes`) and a read of every row (of the corners only when the
  file claims more than 32 MiB); AnalysisInputError;
- ``dxchange``: what the reconstruction reads of a scan, ``read_scan_info``, its energy,
  pixel size and distance, then ``read_rows``, ``read_references`` and
  ``read_data_exchange`` (:mod:`insitu.instruments.dxchange`); DataExchangeError;
- ``experiment-yaml``: ``load_config(file)`` and ``to_dict()``
  (:mod:`insitu.protocols.experiment_config`); ExperimentConfigError (and the protocols'
  other UserErrors, which the API-key file check raises).

Every case ends in a result (checked: standard columns, a 3-D volume whose rows read back in
its shape and dtype, angles one per projection, a config) or in one of the reader's
documented error types; anything else (another exception, a wrong result, a crash of the
process, a case running longer than ``--hang-s``) is a failure: the first few per distinct
failure are printed with the input saved under a temporary folder. Each reader runs in its
own process (spawned), so a segfault in a C library is caught, counted and skipped; cases
are numbered and made from ``(seed, reader, number)`` alone, so ``--replay READER:N`` rebuilds
and reruns one of them with its traceback. A table follows: reader, cases, accepted, refused
(by error type), failures, cases/s. Exit status 1 when anything failed.

Usage::

    .venv/bin/python benchmarks/bench_fuzz_readers.py                 # 100 000 per reader
    .venv/bin/python benchmarks/bench_fuzz_readers.py --quick         # 2 000 per reader
    .venv/bin/python benchmarks/bench_fuzz_readers.py --readers csv,hdf5 --cases 20000
    .venv/bin/python benchmarks/bench_fuzz_readers.py --replay mpr:1234
"""

from __future__ import annotations

import argparse
import ast
import copy
import io
import json
import logging
import multiprocessing as mp
import os
import queue as queue_module
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Files = dict[str, bytes]
"""One case: relative path → content (a key ending in ``/`` is an empty folder)."""

#: How many inputs (and tracebacks) are kept per distinct failure.
KEEP_PER_FAILURE = 3
#: Whole volumes and scans are read only up to this size (a header may claim terabytes).
MAX_READ_BYTES = 32 * 2**20
#: Counts travel from a worker to the parent at least this often (seconds).
FLUSH_S = 0.5
#: A worker gets this long to import and build its seed files before its first case.
STARTUP_S = 300.0

# --- mutation --------------------------------------------------------------------------------
#: Integers that make sizes, counts and offsets lie.
# fmt: off
INTERESTING_INTS = (
    0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 64, 100, 127, 128, 255, 256, 512, 1000, 1024, 4096,
    0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, 1 << 40,
    0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF,
)
# fmt: on
#: Number spellings that parsers get wrong.
# fmt: off
INTERESTING_NUMBERS = (
    "0", "-0", "1", "-1", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e308", "1.8e308",
    "1e309", "-1e309", "4.9e-324", "1e-400", "1e2147483648", "-1E+2147483647", "1e4294967296",
    "1e9999", "1e10000", "9" * 400, "123456789012345678901234567890", "1e", "e5", ".", "..",
    "1..2", "1,5", "1.5.5", "0x1F", "1_000", "+", "-", "", " ", "abc", "None", "null", "true",
    "1e+", "\u0661\u0662\u0663", "\uff11\uff12", "\u00bd", "1e-2147483649", "1 000", "'1'",
    '"1"',
)
# fmt: on
#: Characters inserted into text.
SPECIAL_CHARS = (
    "\t,;\"' \r\n\x00\\:#-[]{}*&!%@`|>?=.eE\u00b5\u00b0\u00e9\ufeff\u2028\u0660\uff11\x1a\x7f"
)
#: Values put into JSON and YAML trees.
# fmt: off
INTERESTING_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2, 3, 255, 256, 2**31, 2**63, -(2**63), 10**30, 0.5, -0.0,
    1e-300, 1e308, float("nan"), float("inf"), float("-inf"), "", "abc", "A-LPS", "nan",
    "1e400", "0x10", "\u00b5m", "um", "nm", "furlong", "deg", "rad", "uint8", "float32", "<f8",
    "|O", [], {}, [0], [1, 2, 3], [[1]], {"a": 1}, [-1, -1, -1], [0, 0, 0], [2**40, 2**40,
    2**40], "x" * 5000,
)
# fmt: on
_NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ASCII_RUN_RE = re.compile(rb"[\x20-\x7e]{4,}")


def _rounds(rng: random.Random) -> int:
    """How many mutations one case stacks: mostly one or two, sometimes many."""
    n = 1
    while n < 8 and rng.random() < 0.45:
        n += 1
    return n


def _where(rng: random.Random, n: int, hot: int) -> int:
    """A position in ``n`` bytes, half the time in the first ``hot`` (headers live there)."""
    if hot and rng.random() < 0.5:
        return rng.randrange(min(n, hot))
    return rng.randrange(n)


def _span(rng: random.Random, limit: int = 64) -> int:
    return rng.choice((1, 1, 2, 4, 8, rng.randint(1, limit)))


def _op_flip(rng: random.Random, buf: bytearray, i: int) -> None:
    buf[i] ^= 1 << rng.randrange(8)


def _op_byte(rng: random.Random, buf: bytearray, i: int) -> None:
    buf[i] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))


def _op_word(rng: random.Random, buf: bytearray, i: int) -> None:
    width = rng.choice((2, 4, 4, 8))
    value = rng.choice(INTERESTING_INTS) & ((1 << (8 * width)) - 1)
    buf[i : i + width] = value.to_bytes(width, rng.choice(("little", "big")))


def _op_arith(rng: random.Random, buf: bytearray, i: int) -> None:
    width = min(rng.choice((1, 2, 4, 8)), len(buf) - i)
    order = rng.choice(("little", "big"))
    value = int.from_bytes(buf[i : i + width], order) + rng.choice((-1, 1)) * rng.randint(1, 32)
    buf[i : i + width] = (value % (1 << (8 * width))).to_bytes(width, order)


def _op_truncate(rng: random.Random, buf: bytearray, i: int) -> None:
    del buf[rng.randrange(len(buf)) :]


def _op_delete(rng: random.Random, buf: bytearray, i: int) -> None:
    del buf[i : i + _span(rng)]


def _op_duplicate(rng: random.Random, buf: bytearray, i: int) -> None:
    j = rng.randrange(len(buf))
    buf[i:i] = buf[j : j + _span(rng)]


def _op_insert(rng: random.Random, buf: bytearray, i: int) -> None:
    buf[i:i] = rng.randbytes(_span(rng, 16))


def _op_overwrite(rng: random.Random, buf: bytearray, i: int) -> None:
    j, k = rng.randrange(len(buf)), _span(rng)
    buf[i : i + k] = buf[j : j + k]


def _op_zero(rng: random.Random, buf: bytearray, i: int) -> None:
    k = _span(rng)
    buf[i : i + k] = bytes(len(buf[i : i + k]))


def _op_ascii(rng: random.Random, buf: bytearray, i: int) -> None:
    """Change a few characters of a text run (ImageJ descriptions, npy headers, attributes)."""
    runs = list(_ASCII_RUN_RE.finditer(buf))
    if not runs:
        return
    run = rng.choice(runs)
    for _ in range(rng.randint(1, 3)):
        k = rng.randrange(run.start(), run.end())
        buf[k] = rng.choice(b"0123456789-.eE+ =\nabcxyz\x00,:'")


_BYTE_OPS = (
    (_op_flip, 4),
    (_op_byte, 4),
    (_op_word, 5),
    (_op_arith, 3),
    (_op_truncate, 1),
    (_op_delete, 2),
    (_op_duplicate, 2),
    (_op_insert, 2),
    (_op_overwrite, 2),
    (_op_zero, 1),
    (_op_ascii, 3),
)


def mutate_bytes(rng: random.Random, data: bytes, *, hot: int = 512) -> bytes:
    """``data`` with a few byte-level mutations (see :data:`_BYTE_OPS`)."""
    buf = bytearray(data)
    ops, weights = zip(*_BYTE_OPS, strict=True)
    for _ in range(_rounds(rng)):
        if not buf:
            buf += rng.randbytes(rng.randint(1, 8))
            continue
        op = rng.choices(ops, weights)[0]
        op(rng, buf, _where(rng, len(buf), hot))
    return bytes(buf)


def _number_like(rng: random.Random) -> str:
    """A number for a text file: an interesting spelling or a random one."""
    if rng.random() < 0.6:
        return rng.choice(INTERESTING_NUMBERS)
    value = rng.choice((rng.uniform(-1e3, 1e3), 10.0 ** rng.uniform(-320, 308), rng.randint(-9, 9)))
    text = rng.choice(("{!r}", "{:.7E}", "{:g}", "{:.3f}")).format(value)
    return text.replace(".", ",") if rng.random() < 0.2 else text


def _lines_op(rng: random.Random, lines: list[str]) -> None:
    op = rng.randrange(7)
    i = rng.randrange(len(lines))
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[rng.randrange(len(lines))])
    elif op == 2:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 3:
        lines[i] = lines[i][: rng.randint(0, len(lines[i]))]
    elif op == 4:
        lines.insert(i, rng.choice(("", " ", "\t", "#", "---", "...")))
    elif op == 5:
        sep = rng.choice("\t,; ")
        lines.insert(i, sep.join(_number_like(rng) for _ in range(rng.randint(1, 8))))
    else:
        lines[i] = lines[i] * rng.choice((2, 3, 50))


def _text_op(rng: random.Random, text: str) -> str:
    op = rng.randrange(10)
    if op in (0, 1, 2):  # a number replaced
        numbers = list(_NUMBER_RE.finditer(text))
        if numbers:
            m = rng.choice(numbers)
            return text[: m.start()] + _number_like(rng) + text[m.end() :]
        op = 3
    if op == 3:  # lines cut, duplicated, swapped ...
        lines = text.split("\n")
        _lines_op(rng, lines)
        return "\n".join(lines)
    i = rng.randint(0, len(text))
    if op == 4:
        return text[:i] + rng.choice(SPECIAL_CHARS) * rng.choice((1, 1, 2, 5)) + text[i:]
    if op == 5:
        return text[:i] + text[i + _span(rng, 16) :]
    if op == 6:  # a separator changed, dropped or doubled
        seps = [k for k, c in enumerate(text) if c in "\t,;:"]
        if seps:
            k = rng.choice(seps)
            return text[:k] + rng.choice(("", "\t", ",", ";", " ", text[k] * 2)) + text[k + 1 :]
        return text
    if op == 7:
        return text[:i]
    if op == 8:  # deep nesting (YAML, JSON)
        depth = rng.choice((10, 100, 400, 2000))
        return text[:i] + "[" * depth + text[i:]
    return text[:i] + rng.choice(("\r\n", "\r", "\n\n", "\x00", "\ufeff")) + text[i:]


def mutate_text(rng: random.Random, data: bytes) -> bytes:
    """``data`` as text with a few line-, number-, separator- and character-level mutations."""
    text = data.decode("utf-8", errors="surrogateescape")
    for _ in range(_rounds(rng)):
        text = _text_op(rng, text) if text else _number_like(rng)
    if rng.random() < 0.05:
        encoded = text.encode(rng.choice(("cp1252", "utf-16", "latin-1")), errors="replace")
    else:
        encoded = text.encode("utf-8", errors="surrogateescape")
    return mutate_bytes(rng, encoded) if rng.random() < 0.05 else encoded


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """The nodes of a JSON/YAML tree (down to depth 40), as the paths of keys leading to them."""
    out = [prefix]
    if len(prefix) >= 40:  # deep nesting is the parser's test; the generator stays shallow
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for k, v in enumerate(obj):
            out += _paths(v, (*prefix, k))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def _nested(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def _new_value(rng: random.Random, old: Any) -> Any:
    """A replacement for ``old``: an interesting value, or ``old`` in another type."""
    choice = rng.randrange(6)
    if choice == 0 and isinstance(old, int | float) and not isinstance(old, bool):
        return rng.choice((-old, old * 1000, old + 1, str(old), float(old) * 1e300))
    if choice == 1:
        return rng.choice((str(old), [old], {"value": old}, _nested(old, rng.choice((5, 20)))))
    return _interesting(rng)


def _interesting(rng: random.Random) -> Any:
    """One of :data:`INTERESTING_VALUES`, a copy (the trees are mutated in place)."""
    return copy.deepcopy(rng.choice(INTERESTING_VALUES))


def mutate_tree(rng: random.Random, tree: Any) -> Any:
    """A JSON/YAML tree with a few values replaced, keys dropped, misspelt or added."""
    tree = json.loads(json.dumps(tree))  # a copy (the seeds are JSON-compatible)
    for _ in range(_rounds(rng)):
        path = rng.choice(_paths(tree))
        if not path:
            tree = _new_value(rng, tree) if rng.random() < 0.1 else tree
            continue
        parent, key = _get(tree, path[:-1]), path[-1]
        op = rng.randrange(8)
        if op <= 3:
            parent[key] = _new_value(rng, parent[key])
        elif op == 4:
            del parent[key]
        elif op == 5 and isinstance(parent, dict):  # misspelt or unknown key
            value = parent.pop(key)
            name = str(key)
            parent[rng.choice((name[:-1], name.upper(), name + "_", "x"))] = value
        elif op == 6 and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif isinstance(parent, dict):
            parent[rng.choice(("extra", "voxel_um", "units", "grey_min", "x"))] = _interesting(rng)
    return tree


# --- cases -----------------------------------------------------------------------------------
@dataclass
class Target:
    """One reader under test.

    Attributes
    ----------
    name : str
    entry : str
        The path (inside a case's folder) that the reader opens: a file or a folder.
    corpus : callable
        ``corpus(rng, scratch) -> list[Files]``: the valid (and semantically odd) seed files.
    mutate : callable
        ``mutate(rng, files) -> Files``.
    run : callable
        ``run(path) -> str | None``: reads the file as the project does; None for a correct
        result, else what is wrong with it. Raises what the reader raises.
    allowed : tuple of exception types
        The documented error types (a refusal).
    """

    name: str
    entry: str
    corpus: Callable[[random.Random, Path], list[Files]]
    mutate: Callable[[random.Random, Files], Files]
    run: Callable[[Path], str | None]
    allowed: tuple[type[BaseException], ...] = ()


def _single(entry: str, mutate: Callable[[random.Random, bytes], bytes]):
    """A mutator of single-file cases."""

    def apply(rng: random.Random, files: Files) -> Files:
        return {entry: mutate(rng, files[entry])}

    return apply


def make_case(target: Target, corpus: list[Files], seed: int, index: int) -> Files:
    """Case ``index`` of ``target``: a seed file, mutated (one in ten left as it is)."""
    rng = random.Random(f"{seed}/{target.name}/{index}")
    files = corpus[rng.randrange(len(corpus))]
    return dict(files) if rng.random() < 0.1 else target.mutate(rng, files)


def write_case(folder: Path, files: Files) -> None:
    """The case's files under ``folder`` (emptied first)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for rel, data in files.items():
        path = folder / rel
        if path.exists():  # a file and a folder of one name: the first one stays
            continue
        if rel.endswith("/"):
            path.mkdir(parents=True)
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except (FileExistsError, NotADirectoryError):  # a file where a folder should be
            continue


def read_tree(root: Path, prefix: str) -> Files:
    """Files under ``root`` (recursively) as case entries under ``prefix``."""
    out: Files = {prefix + "/": b""}
    for path in sorted(root.rglob("*")):
        rel = f"{prefix}/{path.relative_to(root).as_posix()}"
        out[rel + "/" if path.is_dir() else rel] = b"" if path.is_dir() else path.read_bytes()
    return out


def _nprng(rng: random.Random) -> Any:
    import numpy as np

    return np.random.default_rng(rng.getrandbits(64))


# --- electrochemistry files: seeds -----------------------------------------------------------
_TS_NAMES = {
    "time_s": (
        ("time_s", 1.0),
        ("time/s", 1.0),
        ("Time (s)", 1.0),
        ("t/s", 1.0),
        ("elapsed time/s", 1.0),
        ("time", 1.0),
    ),
    "voltage_V": (
        ("voltage_V", 1.0),
        ("Ewe/V", 1.0),
        ("<Ewe>/V", 1.0),
        ("Ecell/V", 1.0),
        ("Voltage (V)", 1.0),
        ("potential", 1.0),
        ("E/V", 1.0),
    ),
    "current_A": (
        ("current_A", 1.0),
        ("I/mA", 1e3),
        ("<I>/mA", 1e3),
        ("I/A", 1.0),
        ("Current (mA)", 1e3),
        ("current", 1.0),
    ),
    "step": (("step", 1.0), ("Ns", 1.0)),
    "cycle": (("cycle", 1.0), ("cycle number", 1.0)),
    "charge_C": (("charge_C", 1.0), ("(Q-Qo)/C", 1.0), ("(Q-Qo)/mA.h", 1 / 3.6)),
    "temperature_C": (("temperature_C", 1.0), ("Temperature/\u00b0C", 1.0)),
    "control_current_A": (("control/mA", 1e3),),
}
_EIS_NAMES = {
    "frequency_Hz": (("frequency_Hz", 1.0), ("freq/Hz", 1.0), ("Frequency (Hz)", 1.0)),
    "z_real_ohm": (("z_real_ohm", 1.0), ("Re(Z)/Ohm", 1.0), ("Z'/Ohm", 1.0), ("Zreal", 1.0)),
    "z_imag_ohm": (("z_imag_ohm", 1.0), ("-Im(Z)/Ohm", -1.0), ("Im(Z)/Ohm", 1.0)),
}
_UNKNOWN_NAMES = ("mode", "ox/red", "P/W", "|Z|/Ohm", "x", "")


def measurement(rng: random.Random, n: int) -> tuple[str, dict[str, Any]]:
    """A time series or an impedance spectrum in our columns (SI), ``n`` rows."""
    import numpy as np

    nr = _nprng(rng)
    if rng.random() < 0.35:
        f = np.logspace(6, -1, n)
        zr = 100 + 1e3 / (1 + (f / 1e3) ** 2)
        zi = -1e3 * (f / 1e3) / (1 + (f / 1e3) ** 2)
        return "eis", {"frequency_Hz": f, "z_real_ohm": zr, "z_imag_ohm": zi}
    t = np.cumsum(nr.uniform(0.5, 20.0, n))
    step = np.arange(n) * 3 // max(n, 1)
    current = np.where(step % 2 == 0, 1e-4, -1e-4) * rng.choice((1, 2, 10))
    columns = {"time_s": t, "voltage_V": current * 800 + nr.normal(0, 1e-3, n)}
    columns["current_A"] = current
    extras = ["step", "cycle", "charge_C", "temperature_C", "control_current_A"]
    for name in rng.sample(extras, rng.randint(0, len(extras))):
        columns[name] = {
            "step": step,
            "cycle": step // 2,
            "charge_C": np.cumsum(current * 10),
            "temperature_C": np.full(n, 60.0),
            "control_current_A": current,
        }[name]
    if rng.random() < 0.2:
        del columns[rng.choice(("voltage_V", "current_A"))]
    return "timeseries", columns


def _named(rng: random.Random, kind: str, columns: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """(file column name, values in its unit, integer?) for each column, in a random order."""
    names = _EIS_NAMES if kind == "eis" else _TS_NAMES
    out = []
    for ours, values in columns.items():
        name, factor = rng.choice(names[ours])
        out.append((name, values * factor, ours in ("step", "cycle")))
    for name in rng.sample(_UNKNOWN_NAMES, rng.choice((0, 0, 1, 2))):
        out.append((name, columns[next(iter(columns))], False))
    if rng.random() < 0.5:
        rng.shuffle(out)
    return out


def _fmt(rng_style: str, value: float, integer: bool) -> str:
    if integer:
        return str(int(value))
    return rng_style.format(float(value))


def delimited_text(rng: random.Random, *, sep: str | None = None) -> bytes:
    """A CSV/TSV file of a measurement, in one of the ways people write them."""
    n = rng.choice((0, 1, 2, 3, 5, 8, 13, 21))
    kind, columns = measurement(rng, max(n, 1))
    named = _named(rng, kind, columns)
    sep = sep or rng.choice((",", ";", "\t"))
    style = rng.choice(("{!r}", "{:.7E}", "{:g}", "{:.6f}"))
    quote = rng.random() < 0.15
    rows = [[name for name, _, _ in named]]
    rows += [[_fmt(style, values[k], integer) for _, values, integer in named] for k in range(n)]
    if quote:
        rows = [[f'"{v}"' for v in row] for row in rows]
    trail = sep if rng.random() < 0.2 else ""
    eol = rng.choice(("\n", "\r\n"))
    text = eol.join(sep.join(row) + trail for row in rows) + (eol if rng.random() < 0.7 else "")
    if rng.random() < 0.1:
        text = "\ufeff" + text
    return text.encode(rng.choice(("utf-8", "utf-8", "cp1252")), errors="replace")


def mpt_text(rng: random.Random, scratch: Path) -> bytes:
    """An EC-Lab text export: our writer's, or one laid out as EC-Lab writes them."""
    import pandas as pd

    from insitu.analysis.electrochem.readers import write_mpt

    n = rng.choice((1, 2, 3, 5, 8, 13))
    kind, columns = measurement(rng, n)
    if rng.random() < 0.5 and (kind == "eis" or {"voltage_V", "current_A"} <= set(columns)):
        path = scratch / "seed.mpt"
        write_mpt(pd.DataFrame(columns), path, decimal=rng.choice((".", ",")))
        return path.read_bytes()
    decimal = rng.choice((".", ","))
    named = _named(rng, kind, columns)
    header = [
        "EC-Lab ASCII FILE",
        "Nb header lines : {n}",
        "",
        "Galvanostatic Cycling with Potential Limitation",
        "",
        "Run on channel : 3 (SN 12345)",
        "Ewe ctrl range : min = -10,00 V, max = 10,00 V",
        "Acquisition started on : 03/14/2024 10:02:11.000",
    ][: rng.choice((2, 3, 8))]
    n_header = len(header) + 1
    header[1] = header[1].format(n=n_header)
    names = "\t".join(name for name, _, _ in named) + "\t"
    style = rng.choice(("{:.7E}", "{!r}", "{:g}"))
    rows = [
        "\t".join(
            _fmt(style, values[k], integer).replace(".", decimal) for _, values, integer in named
        )
        + "\t"
        for k in range(n)
    ]
    text = "\r\n".join([*header, names, *rows]) + "\r\n"
    return text.encode("cp1252", errors="replace")


def mpr_bytes(rng: random.Random) -> bytes:
    """An EC-Lab ``.mpr`` that galvani parses: magic, settings, a data module, maybe a log."""
    import numpy as np
    from galvani import BioLogic

    known = sorted(BioLogic.VMPdata_colID_dtype_map)
    flags = sorted(BioLogic.VMPdata_colID_flag_map)
    base = rng.choice(([4, 6, 8], [4, 6, 8, 24, 131], [32, 37, 38], [4, 32, 37, 38], [4, 6]))
    col_ids = (
        base + rng.sample(known, rng.choice((0, 0, 1, 3))) + rng.sample(flags, rng.randint(0, 2))
    )
    col_ids = list(dict.fromkeys(col_ids))
    if rng.random() < 0.3:
        rng.shuffle(col_ids)
    dtype, _ = BioLogic.VMPdata_dtype_from_colIDs(col_ids)
    n = rng.choice((0, 1, 2, 5, 9))
    nr = _nprng(rng)
    records = np.zeros(n, dtype=dtype)
    for name in dtype.names:
        kind = dtype[name].kind
        records[name] = nr.uniform(0, 5, n) if kind == "f" else nr.integers(0, 3, n)
    version = rng.choice((2, 2, 3))
    head = np.uint32(n).tobytes() + np.uint8(len(col_ids)).tobytes()
    head += np.array(col_ids, dtype="<u2").tobytes()
    before = 405 if version == 2 else 406
    data = head.ljust(405, b"\x00").ljust(before, b"\x01") + records.tobytes()

    def module(short: bytes, long: bytes, version: int, payload: bytes, date: bytes) -> bytes:
        hdr = np.zeros(1, dtype=BioLogic.VMPmodule_hdr_v1)
        hdr["shortname"], hdr["longname"] = short.ljust(10), long.ljust(25)
        hdr["length"], hdr["version"], hdr["date"] = len(payload), version, date
        return b"MODULE" + hdr.tobytes() + payload

    date = rng.choice((b"03/15/23", b"03.15.23", b"03-15-23"))
    out = BioLogic.MPR_MAGIC + module(b"VMP Set   ", b"VMP settings", 0, bytes(64), date)
    out += module(b"VMP data  ", b"VMP data", version, data, date)
    if rng.random() < 0.3:
        log = bytearray(600)
        log[465:473] = np.float64(45000.0).tobytes()  # 2023-03-15, the settings' date
        out += module(b"VMP LOG   ", b"VMP log", 0, bytes(log), date)
    if rng.random() < 0.2:
        loop = np.array([n, 0, max(n - 1, 0)], dtype="<u4").tobytes()
        out += module(b"VMP loop  ", b"VMP loop", 0, loop, date)
    return out


def parquet_bytes(rng: random.Random) -> bytes:
    """A Parquet table of a measurement, with the column types people store."""
    import numpy as np
    import pandas as pd

    n = rng.choice((0, 1, 2, 5, 9))
    kind, columns = measurement(rng, max(n, 1))
    frame = pd.DataFrame({name: values[:n] for name, values, _ in _named(rng, kind, columns)})
    frame = frame.loc[:, ~frame.columns.duplicated()]
    for name in list(frame.columns):
        r = rng.random()
        if r < 0.1:
            frame[name] = frame[name].astype(str)
        elif r < 0.15:
            frame[name] = frame[name].astype("float32")
        elif r < 0.18:
            frame[name] = pd.Series(
                rng.choice(("1e5", "abc", "", "nan", "1e99999")) for _ in range(n)
            )
        elif r < 0.2:
            frame[name] = pd.array([None] * n, dtype="Float64")
        elif r < 0.22:
            frame[name] = pd.to_datetime(np.arange(n), unit="s")
        elif r < 0.24:
            frame[name] = pd.Categorical(["a"] * n)
    buf = io.BytesIO()
    frame.to_parquet(buf, compression=rng.choice(("snappy", None, "gzip", "zstd")), index=False)
    return buf.getvalue()


def _repeat(build: Callable[[random.Random], bytes], entry: str, count: int):
    def corpus(rng: random.Random, scratch: Path) -> list[Files]:
        return [{entry: build(rng)} for _ in range(count)]

    return corpus


def _measurement_run(path: Path) -> str | None:
    import pandas as pd

    from insitu.analysis.electrochem.readers import EIS_COLUMNS, read_measurement

    frame = read_measurement(path)
    if not isinstance(frame, pd.DataFrame):
        return f"returned {type(frame).__name__}, not a DataFrame"
    kind = frame.attrs.get("kind")
    need = {"eis": EIS_COLUMNS, "timeseries": ("time_s",)}.get(kind)
    if need is None:
        return f"attrs['kind'] is {kind!r}"
    missing = [c for c in need if c not in frame.columns]
    if missing:
        return f"a {kind} table without {missing}"
    odd = [f"{c} ({frame[c].dtype})" for c in frame.columns if frame[c].dtype.kind not in "iuf"]
    return f"non-numeric columns {odd}" if odd else None


# --- volumes: seeds ---------------------------------------------------------------------------
_VOXEL_ATTRS: tuple[dict[str, Any], ...] = (
    {},
    {"voxel_um": 0.65},
    {"voxel_um": float("nan")},
    {"voxel_um": -1.0},
    {"voxel_um": "abc"},
    {"voxel_um": b"0.65"},
    {"voxel_um": [0.65, 0.7]},
    {"voxel_um": []},
    {"voxel_size_um": 1.3},
    {"voxel_size": 650.0, "voxel_size_units": "nm"},
    {"voxel_size": 1.0, "voxel_size_units": "furlong"},
    {"voxel_size": 1.0, "voxel_size_units": 5},
    {"pixel_size": 0.65, "units": "um"},
    {"resolution": 0.65, "units": "counts"},
    {"resolution": 0.001, "unit": "mm"},
    {"grey_min": 0.0, "grey_max": 2.0},
    {"grey_min": 3.0, "grey_max": 1.0},
    {"grey_min": "a", "grey_max": float("inf")},
    {"units": "1/cm"},
)
_DTYPES = ("u1", "u2", "i2", "u4", "i4", "f4", "f8", "f2", "i1", "u8", "i8", "c8", "?")


def _volume_array(rng: random.Random, dtype: str | None = None, shape: tuple | None = None):
    import numpy as np

    nr = _nprng(rng)
    shape = shape or (rng.choice((1, 2, 3, 4)), rng.randint(1, 9), rng.randint(1, 9))
    dtype = np.dtype(dtype or rng.choice(_DTYPES))
    values = nr.uniform(0, 200, shape)
    if dtype.kind == "f" and rng.random() < 0.1:
        values.flat[0] = rng.choice((np.nan, np.inf))
    return values.astype(dtype)


def _h5_attrs(obj: Any, attrs: dict[str, Any]) -> None:
    import numpy as np

    for key, value in attrs.items():
        if isinstance(value, list):
            value = np.asarray(value, dtype=float)
        obj.attrs[key] = value


def tiff_bytes(rng: random.Random, path: Path) -> bytes | None:
    """A TIFF volume (or not quite one) as ImageJ, tifffile or ``insitu export-volume`` write."""
    import numpy as np
    import tifffile

    from insitu.analysis.volumes import write_tiff

    kind = rng.choice(
        ("imagej", "imagej", "export", "plain", "zlib", "tiled", "rgb", "hyper", "2d", "bigbe")
    )
    if path.exists():
        path.unlink()
    try:
        if kind in ("imagej", "hyper"):
            data = _volume_array(rng, rng.choice(("u1", "u2", "f4")))
            if kind == "hyper":
                data = np.stack([data, data])
            meta: dict[str, Any] = {"axes": "TZYX" if kind == "hyper" else "ZYX"}
            meta.update(
                rng.choice(
                    (
                        {"unit": "micron", "spacing": 0.65},
                        {"unit": "\\u00B5m", "spacing": 0.65},
                        {"unit": "nm"},
                        {"unit": "pixel"},
                        {"unit": "furlong", "spacing": 2.0},
                        {"unit": "micron", "spacing": 0.7},
                        {"unit": "micron", "grey_min": 0.0, "grey_max": 3.0},
                        {"grey_min": "x", "grey_max": 1.0},
                        {},
                    )
                )
            )
            res = rng.choice(((1 / 0.65, 1 / 0.65), (1.0, 2.0), None))
            tifffile.imwrite(path, data, imagej=True, metadata=meta, resolution=res)
        elif kind == "export":
            data = _volume_array(rng, "f4", (rng.randint(2, 4), rng.randint(2, 8), 8))
            write_tiff(
                data,
                path,
                bits=rng.choice((8, 32)),
                voxel_um=rng.choice((None, 0.65)),
                overwrite=True,
            )
        elif kind == "rgb":
            data = _volume_array(rng, "u1", (2, 4, 5, 3))
            tifffile.imwrite(path, data, photometric="rgb")
        elif kind == "2d":
            tifffile.imwrite(path, _volume_array(rng)[0])
        else:
            data = _volume_array(rng)
            options: dict[str, Any] = {}
            if kind == "zlib":
                options = {"compression": "zlib", "predictor": rng.random() < 0.3}
            elif kind == "tiled":
                options = {"tile": (16, 16), "compression": rng.choice((None, "zlib"))}
            elif kind == "bigbe":
                options = {"bigtiff": True, "byteorder": ">"}
            options["rowsperstrip"] = rng.choice((None, 1, 2))
            if options.get("tile"):
                del options["rowsperstrip"]
            tifffile.imwrite(path, data, **options)
            if rng.random() < 0.15:  # a second series
                tifffile.imwrite(path, _volume_array(rng), append=True)
    except Exception:  # an option tifffile refuses for that type: not a seed
        return None
    return path.read_bytes()


def tiff_corpus(rng: random.Random, scratch: Path) -> list[Files]:
    out = []
    while len(out) < 150:
        data = tiff_bytes(rng, scratch / "seed.tif")
        if data is not None:
            out.append({"case.tif": data})
    return out


def tiff_folder_corpus(rng: random.Random, scratch: Path) -> list[Files]:
    """Folders of numbered single-page slices (some calibrated, some compressed, some odd)."""
    import numpy as np
    import tifffile

    out = []
    for _ in range(80):
        n = rng.choice((2, 3, 4, 11))
        stack = _volume_array(rng, rng.choice(("u1", "u2", "f4", "i2")), (n, 5, 6))
        files: Files = {"vol/": b""}
        calibrated = rng.random() < 0.5
        for k in range(n):
            path = scratch / "slice.tif"
            page = stack[k]
            if k == n - 1 and rng.random() < 0.1:
                page = page[:, :-1]  # one slice of another size
            if calibrated:
                meta = {"unit": rng.choice(("micron", "nm", "pixel")), "spacing": 0.65}
                tifffile.imwrite(
                    path, page, imagej=True, metadata=meta, resolution=(1 / 0.65, 1 / 0.65)
                )
            else:
                tifffile.imwrite(path, page, compression=rng.choice((None, "zlib")))
            files[f"vol/{rng.choice(('slice_', 'img', ''))}{k}.tif"] = path.read_bytes()
        if rng.random() < 0.1:
            files["vol/.hidden.tif"] = b"not a tiff"
        if rng.random() < 0.05:
            tifffile.imwrite(scratch / "multi.tif", np.stack([stack[0], stack[0]]))
            files = {"vol/": b"", "vol/0.tif": (scratch / "multi.tif").read_bytes()} | {
                k: v for k, v in files.items() if k.endswith("1.tif")
            }
        out.append(files)
    return out


def mutate_folder(rng: random.Random, files: Files) -> Files:
    """A folder case with a file mutated, deleted, duplicated, swapped or added."""
    files = dict(files)
    root = next(k for k in files if k.endswith("/") and k.count("/") == 1)
    for _ in range(rng.choice((1, 1, 1, 2))):
        names = [k for k in files if not k.endswith("/")]
        op = rng.randrange(10)
        if names and op < 6:
            name = rng.choice(names)
            if name.endswith((".json", ".zarray", ".zattrs", ".zgroup")) and rng.random() < 0.8:
                files[name] = mutate_json(rng, files[name])
            else:
                files[name] = mutate_bytes(rng, files[name])
        elif names and op == 6:
            del files[rng.choice(names)]
        elif names and op == 7:
            files[root + rng.choice(("slice_999.tif", "0.tif", "c/9", "x"))] = files[
                rng.choice(names)
            ]
        elif op == 8:
            files[root + rng.choice(("sub.tif/", "zarr.json/", "c/"))] = b""
        else:
            files[root + rng.choice(("empty.tif", ".zarray", "zarr.json", "9.tif"))] = b""
    return files


def mutate_json(rng: random.Random, data: bytes) -> bytes:
    """A JSON file with its tree mutated, or its text."""
    if rng.random() < 0.75:
        try:
            tree = json.loads(data)
        except ValueError:
            return mutate_text(rng, data)
        return json.dumps(mutate_tree(rng, tree)).encode()
    return mutate_text(rng, data)


def hdf5_volume(rng: random.Random, path: Path) -> bytes:
    """An HDF5 file holding a volume the way TomoPy, tomocupy or a user writes one, or not."""
    import h5py
    import numpy as np

    if path.exists():
        path.unlink()
    kind = rng.choice(("one", "one", "one", "several", "none", "scan", "odd", "links", "dx"))
    libver = rng.choice(("earliest", "latest"))
    with h5py.File(path, "w", libver=libver, track_order=rng.random() < 0.2) as f:
        names = ("/exchange/data", "/data", "/volume", "/recon", "/a/b/vol", "/entry/data/data")
        for k in range({"one": 1, "several": 2}.get(kind, 0)):
            data = _volume_array(rng)
            options: dict[str, Any] = {"track_times": False}
            if rng.random() < 0.4:
                options["chunks"] = tuple(max(1, s // 2) for s in data.shape)
                options["compression"] = rng.choice((None, "gzip", "lzf"))
                options["shuffle"] = rng.random() < 0.3
                options["fletcher32"] = rng.random() < 0.3
                if data.dtype.kind in "iu" and not options["fletcher32"] and rng.random() < 0.2:
                    options["scaleoffset"] = 0
            ds = f.create_dataset(
                rng.choice(names) + ("" if k == 0 else str(k)), data=data, **options
            )
            _h5_attrs(ds, rng.choice(_VOXEL_ATTRS))
        if kind == "none":
            f["image"] = _volume_array(rng)[0]
            f["hyper"] = np.zeros((2, 2, 2, 2))
        if kind == "scan":
            f["/exchange/data"] = _volume_array(rng, "u2")
            f["/exchange/data_white"] = _volume_array(rng, "u2")
        if kind == "odd":
            data = rng.choice(
                (
                    np.zeros((2, 2, 2), dtype="S4"),
                    np.zeros((2, 2, 2), dtype=[("a", "f4"), ("b", "i2")]),
                    np.zeros((0, 3, 3), dtype="f4"),
                    np.zeros((2, 2, 2), dtype=h5py.enum_dtype({"a": 0, "b": 1}, basetype="u1")),
                )
            )
            f.create_dataset("/volume", data=data)
        if kind == "links":
            f["/real"] = _volume_array(rng)
            f["/data"] = h5py.SoftLink(rng.choice(("/real", "/nowhere")))
            f["/ext"] = h5py.ExternalLink("missing.h5", "/data")
        if kind == "dx":
            f["/exchange/data"] = _volume_array(rng, "f4")
            value = rng.choice(
                (
                    np.array([0.65]),
                    np.array(0.65),
                    np.array([]),
                    np.array([b"0.65 um"]),
                    np.array([np.nan]),
                    np.array([-1.0]),
                    np.array([650.0]),
                )
            )
            res = f.create_dataset(
                "/measurement/instrument/detection_system/objective/resolution", data=value
            )
            res.attrs["units"] = rng.choice(("um", "nm", b"mm", "furlong", "", "micron"))
        _h5_attrs(f, rng.choice(_VOXEL_ATTRS))
    return path.read_bytes()


def hdf5_corpus(rng: random.Random, scratch: Path) -> list[Files]:
    return [{"case.h5": hdf5_volume(rng, scratch / "seed.h5")} for _ in range(200)]


def npy_corpus(rng: random.Random, scratch: Path) -> list[Files]:
    """``.npy`` arrays of every dtype, shape, byte order and format version."""
    import numpy as np

    out = []
    for _ in range(120):
        data = _volume_array(rng)
        r = rng.random()
        if r < 0.1:
            data = data[0]
        elif r < 0.15:
            data = data[None]
        elif r < 0.2:
            data = np.zeros((2, 3, 4), dtype=rng.choice(("U3", "S2", "M8[s]", "V4")))
        elif r < 0.25:
            data = np.zeros((2, 2, 2), dtype=[("a", "<f4"), ("b", "<i2")])
        elif r < 0.3:
            data = np.zeros((0, 4, 4), dtype="f4")
        if rng.random() < 0.2:
            data = data.astype(data.dtype.newbyteorder(">"))
        if rng.random() < 0.2:
            data = np.asfortranarray(data)
        buf = io.BytesIO()
        version = rng.choice((None, (1, 0), (2, 0), (3, 0)))
        np.lib.format.write_array(buf, data, version=version, allow_pickle=False)
        out.append({"case.npy": buf.getvalue()})
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([[[None]]], dtype=object), allow_pickle=True)
    out.append({"case.npy": buf.getvalue()})
    return out


# fmt: off
_NPY_DESCRS = (
    "<f4", ">f4", "<f8", "|u1", "<u2", ">i2", "<i8", "|b1", "<c8", "<f2", "|O", "<U3", "|S4",
    "|V8", "<M8[s]", "xyz", "", "<f16", "<i0", "|u0",
)
# fmt: on


def mutate_npy(rng: random.Random, data: bytes) -> bytes:
    """An ``.npy`` with its header's dtype, shape or order changed, or its bytes mutated."""
    if not data.startswith(b"\x93NUMPY") or len(data) < 12 or rng.random() < 0.4:
        return mutate_bytes(rng, data, hot=128)
    major = data[6]
    size = 2 if major == 1 else 4
    hlen = int.from_bytes(data[8 : 8 + size], "little")
    header, body = data[8 + size : 8 + size + hlen], data[8 + size + hlen :]
    try:
        fields = ast.literal_eval(header.decode("latin-1").strip())
    except (ValueError, SyntaxError):
        return mutate_bytes(rng, data, hot=128)
    op = rng.randrange(5)
    if op == 0:
        fields["descr"] = rng.choice(_NPY_DESCRS)
    elif op == 1:
        shape = list(fields.get("shape", ()))
        if shape and rng.random() < 0.6:
            shape[rng.randrange(len(shape))] = rng.choice((0, -1, 1, 2, 10**6, 2**31, 2**62))
        else:
            shape = shape[:-1] if shape and rng.random() < 0.5 else [*shape, 2]
        fields["shape"] = tuple(shape)
    elif op == 2:
        fields["fortran_order"] = not fields.get("fortran_order", False)
    elif op == 3:
        fields[rng.choice(("descr", "shape", "fortran_order"))] = rng.choice(INTERESTING_VALUES)
    else:
        del fields[rng.choice(sorted(fields))]
    text = repr(fields).encode("latin-1", errors="replace")
    text += b" " * ((64 - (8 + size + len(text) + 1) % 64) % 64) + b"\n"
    if rng.random() < 0.1:
        text = text[: rng.randrange(len(text))]
    return data[:8] + len(text).to_bytes(size, "little") + text + body


def zarr_corpus(rng: random.Random, scratch: Path) -> list[Files]:
    """Zarr v3 and v2 arrays and groups, as ``insitu recon`` and users write them."""
    import zarr

    out = []
    for n in range(80):
        root = scratch / f"seed{n}.zarr"
        fmt = rng.choice((3, 3, 2))
        data = _volume_array(rng, rng.choice(("u1", "u2", "f4", "f8", "i2")))
        chunks = tuple(max(1, s // rng.choice((1, 2))) for s in data.shape)
        kind = rng.choice(("array", "array", "group", "groups2", "flat"))
        attrs = dict(rng.choice(_VOXEL_ATTRS))
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        if kind == "array":
            arr = zarr.create_array(
                store=str(root), shape=data.shape, chunks=chunks, dtype=data.dtype, zarr_format=fmt
            )
            arr[...] = data
            arr.attrs.update(attrs)
        else:
            group = zarr.open_group(str(root), mode="w", zarr_format=fmt)
            count = {"group": 1, "groups2": 2, "flat": 1}[kind]
            for k in range(count):
                shape = data.shape if kind != "flat" else data.shape[1:]
                arr = group.create_array(
                    f"vol{k}", shape=shape, chunks=chunks[-len(shape) :], dtype=data.dtype
                )
                arr[...] = data if kind != "flat" else data[0]
                arr.attrs.update(attrs)
        out.append(read_tree(root, "case.zarr"))
    return out


def _volume_run(path: Path) -> str | None:
    import numpy as np

    from insitu.analysis.volumes import open_volume

    with open_volume(path) as volume:
        if len(volume.shape) != 3 or np.dtype(volume.dtype).kind not in "uifb":
            return f"a volume of shape {volume.shape} and dtype {volume.dtype}"
        if volume.nbytes <= MAX_READ_BYTES:
            data = volume[:]
            want = volume.shape
        else:  # a header that claims more than the file holds: read its corners only
            data = np.stack([volume[0, :4, :4], volume[-1, -4:, -4:]])
            want = (2, min(4, volume.shape[1]), min(4, volume.shape[2]))
        if data.shape != want or data.dtype != volume.dtype:
            return f"rows read as {data.shape} {data.dtype}, the volume says {want} {volume.dtype}"
    return None


# --- Data Exchange scans: seeds ---------------------------------------------------------------
def dx_writer_scan(rng: random.Random, path: Path) -> bytes:
    """A scan as the simulated camera writes it (:class:`DataExchangeWriter`)."""
    import math as m

    from insitu.instruments.dxchange import DataExchangeWriter

    if path.exists():
        path.unlink()
    rows, cols = rng.choice((1, 3, 8, 17, 20)), rng.choice((1, 4, 10))
    n = rng.choice((1, 2, 5, 8))
    metadata = rng.choice(
        (
            {},
            {"energy_keV": 25.0, "pixel_size_um": 0.65, "sample_detector_distance_mm": 50.0},
            {"n_projections": n + rng.choice((0, 2)), "rotation_range_deg": 180.0},
            {"exposure_s": 0.1, "sample_name": "S1", "frames_retaken": 1},
        )
    )
    nr = _nprng(rng)
    with DataExchangeWriter(
        path, shape=(rows, cols), dtype=rng.choice(("u2", "f4")), metadata=metadata
    ) as writer:
        for kind, count in (("dark", rng.randint(0, 2)), ("flat", rng.randint(0, 2))):
            for _ in range(count):
                writer.append(kind, nr.uniform(0, 1000, (rows, cols)))  # type: ignore[arg-type]
        for k in range(n):
            step = m.pi / n if rng.random() < 0.9 else m.pi / (2 * n)
            writer.append("projection", nr.uniform(0, 1000, (rows, cols)), theta_rad=k * step)
    return path.read_bytes()


def dx_hand_scan(rng: random.Random, path: Path) -> bytes:
    """A scan written by hand with h5py, the way TomoPy users do, with what they get wrong."""
    import h5py
    import numpy as np

    if path.exists():
        path.unlink()
    n, rows, cols = rng.choice((1, 3, 6)), rng.choice((1, 4)), rng.choice((2, 5))
    nr = _nprng(rng)
    with h5py.File(path, "w", libver=rng.choice(("earliest", "latest"))) as f:
        for name, count in (("data", n), ("data_white", 2), ("data_dark", 1)):
            if rng.random() < 0.05:
                continue
            shape = (count, rows, cols) if rng.random() < 0.95 else (rows, cols)
            f.create_dataset(f"/exchange/{name}", data=nr.uniform(0, 100, shape).astype("u2"))
        theta_kind = rng.randrange(8)
        if theta_kind < 5:
            theta = np.linspace(0, 180, n + (0 if theta_kind < 4 else 1))
            ds = f.create_dataset("/exchange/theta", data=theta)
            units = rng.choice(
                (None, "deg", "rad", b"degrees", "DEG ", np.array([b"rad"]), "furlong", 5)
            )
            if units is not None:
                ds.attrs["units"] = units
        elif theta_kind == 5:
            f["/exchange/theta"] = rng.choice(
                (
                    np.array([b"0", b"1"] * n)[:n],
                    np.array([[0.0]] * n),
                    np.full(n, np.nan),
                    np.zeros(n, dtype=[("a", "f4")]),
                )
            )
        meta = rng.choice(
            (
                {"/measurement/instrument/monochromator/energy": np.array([25.0])},
                {"/measurement/instrument/monochromator/energy": b"25 keV"},
                {"/measurement/instrument/monochromator/energy": np.array([])},
                {"/process/acquisition/rotation/num_angles": np.array([np.nan])},
                {"/process/acquisition/rotation/num_angles": 1e300},
                {"/process/acquisition/frames_retaken": np.inf},
                {"/measurement/instrument/detector/pixel_size_x": np.array([0.65, 0.7])},
                {"/measurement/sample/name": np.array([b"a", b"b"])},
                {},
            )
        )
        for key, value in meta.items():
            f[key] = value
    return path.read_bytes()


def dx_corpus(rng: random.Random, scratch: Path) -> list[Files]:
    out = [{"case.h5": dx_writer_scan(rng, scratch / "seed.h5")} for _ in range(100)]
    out += [{"case.h5": dx_hand_scan(rng, scratch / "seed.h5")} for _ in range(100)]
    return out


def _dx_run(path: Path) -> str | None:
    from insitu.instruments import dxchange

    info = dxchange.read_scan_info(path)
    # What the reconstruction takes from the file when the user gives none (pipeline.py).
    for name in ("energy_keV", "pixel_size_um", "distance_mm"):
        value = getattr(info, name)
        if value is not None and not isinstance(value, float):
            return f"ScanInfo.{name} is {value!r}"
    if info.theta_rad.shape != (info.n_angles,):
        return f"{info.theta_rad.shape[0]} angles for {info.n_angles} projections"
    frame = info.n_rows * info.n_cols * 8
    if (info.n_angles + info.n_flats + info.n_darks) * frame > MAX_READ_BYTES:
        return None
    if info.n_rows == 0:
        return None
    proj, flats, darks = dxchange.read_rows(path, 0, info.n_rows, dtype="float32")
    shapes = (proj.shape, flats.shape, darks.shape)
    want = tuple((k, info.n_rows, info.n_cols) for k in (info.n_angles, info.n_flats, info.n_darks))
    if shapes != want:
        return f"read_rows gave {shapes}, read_scan_info says {want}"
    dxchange.read_references(path, 0, info.n_rows)
    proj, _, _, theta = dxchange.read_data_exchange(path)
    if theta.shape != (proj.shape[0],):
        return f"read_data_exchange gave {theta.shape} angles for {proj.shape[0]} projections"
    return None


# --- experiment files: seeds ------------------------------------------------------------------
_YAML_SEEDS = (
    "material: A-LPS\n",
    """sample: S1
material: A-LPS
schedule:
  current_densities_mA_cm2: [0.04, 0.08, 0.1, 0.2]
  voltage_limit_V: 10
scan: {n_projections: 180}
devices:
  potentiostat: sim
  tomography: sim
""",
    """sample: LiI-AN pellet 3
material: LiI-AN
operator: someone
geometry: {area_cm2: 0.0707, thickness_cm: 0.05}
schedule:
  current_densities_mA_cm2: [0.1, 0.25, 0.5]
  half_cycle_s: 1800
  cycles_per_step: 2
  interval_s: 10
  voltage_limit_V: 5
  eis: {f_start_Hz: 1.0e6, f_stop_Hz: 0.1, points_per_decade: 10, amplitude_V: 0.01}
limits: {max_current_density_mA_cm2: 1.0, max_voltage_V: 8}
scan: {n_projections: 90, exposure_s: 0.1, n_darks: 5, n_flats: 5, mode: fly}
adaptive: {after_crack_onset_every: 1, crack_onset_um3: 500, stop_before_charge_mC: 20}
analysis: {enabled: true, scheduler: process, workers: 2, psd: false, method: otsu}
devices:
  potentiostat: sim
  tomography: none
  timeout_s: 5
  simulation: {protocol: keithley2450, speedup: 20000, seed: 3, size: small}
output: experiments
""",
    """material: A-LPS
catalog:
  uri: http://127.0.0.1:8000
  api_key_file: key.txt
devices: {potentiostat: TCPIP::10.0.0.5::5025::SOCKET, tomography: epics, epics_prefix: "2bma:"}
""",
    """material: Li6PS5Cl
devices: {potentiostat: /dev/ttyACM0, tomography: none}
catalog: {data: ./insitu-data}
""",
)


def yaml_corpus(rng: random.Random, scratch: Path) -> list[Files]:
    # load_config reads api_key_file relative to the working folder, the worker's own.
    key = Path("key.txt")
    key.write_text("secret\n")
    key.chmod(0o600)
    return [{"case.yaml": text.encode()} for text in _YAML_SEEDS]


def mutate_yaml(rng: random.Random, files: Files) -> Files:
    import yaml

    data = files["case.yaml"]
    if rng.random() < 0.6:
        tree = mutate_tree(rng, yaml.safe_load(data))
        text = yaml.safe_dump(
            tree,
            default_flow_style=rng.choice((None, True, False)),
            sort_keys=False,
            allow_unicode=rng.random() < 0.5,
        ).encode()
        data = mutate_text(rng, text) if rng.random() < 0.2 else text
    else:
        data = mutate_text(rng, data)
    return {"case.yaml": data}


def _yaml_run(path: Path) -> str | None:
    from insitu.protocols.experiment_config import ExperimentConfig, load_config

    config = load_config(path)
    if not isinstance(config, ExperimentConfig):
        return f"returned {type(config).__name__}"
    config.to_dict()  # what the journal and the runs record
    return None


# --- the readers -------------------------------------------------------------------------------
def _targets() -> dict[str, Target]:
    """Every reader under test (imports the project: call in the worker)."""
    from insitu.analysis.errors import AnalysisInputError
    from insitu.instruments.dxchange import DataExchangeError
    from insitu.protocols.errors import UserError
    from insitu.protocols.experiment_config import ExperimentConfigError

    def measurement_target(name: str, entry: str, corpus, mutate) -> Target:
        return Target(name, entry, corpus, mutate, _measurement_run, (AnalysisInputError,))

    def volume_target(name: str, entry: str, corpus, mutate) -> Target:
        return Target(name, entry, corpus, mutate, _volume_run, (AnalysisInputError,))

    csv = _repeat(delimited_text, "case.csv", 150)
    tsv = _repeat(lambda rng: delimited_text(rng, sep="\t"), "case.tsv", 100)

    def mpt(rng: random.Random, scratch: Path) -> list[Files]:
        return [{"case.mpt": mpt_text(rng, scratch)} for _ in range(150)]

    targets = [
        measurement_target("csv", "case.csv", csv, _single("case.csv", mutate_text)),
        measurement_target("tsv", "case.tsv", tsv, _single("case.tsv", mutate_text)),
        measurement_target("mpt", "case.mpt", mpt, _single("case.mpt", mutate_text)),
        measurement_target(
            "mpr",
            "case.mpr",
            _repeat(mpr_bytes, "case.mpr", 120),
            _single("case.mpr", mutate_bytes),
        ),
        measurement_target(
            "parquet",
            "case.parquet",
            _repeat(parquet_bytes, "case.parquet", 120),
            _single("case.parquet", mutate_bytes),
        ),
        volume_target("tiff", "case.tif", tiff_corpus, _single("case.tif", mutate_bytes)),
        volume_target("tiff-folder", "vol", tiff_folder_corpus, mutate_folder),
        volume_target("hdf5", "case.h5", hdf5_corpus, _single("case.h5", mutate_bytes)),
        volume_target("npy", "case.npy", npy_corpus, _single("case.npy", mutate_npy)),
        volume_target("zarr", "case.zarr", zarr_corpus, mutate_folder),
        Target(
            "dxchange",
            "case.h5",
            dx_corpus,
            _single("case.h5", mutate_bytes),
            _dx_run,
            (DataExchangeError,),
        ),
        # load_config documents ExperimentConfigError; the api_key_file check raises the
        # protocols' other UserErrors, which the command line reports the same way.
        Target(
            "experiment-yaml",
            "case.yaml",
            yaml_corpus,
            mutate_yaml,
            _yaml_run,
            (ExperimentConfigError, UserError),
        ),
    ]
    return {t.name: t for t in targets}


# fmt: off
READERS = (
    "csv", "tsv", "mpt", "mpr", "parquet", "tiff", "tiff-folder", "hdf5", "npy", "zarr",
    "dxchange", "experiment-yaml",
)
# fmt: on


PROJECT = Path(__file__).resolve().parents[1]


def _is_ours(filename: str) -> bool:
    """A frame of the project's code (not a library's, not this benchmark's)."""
    path = Path(filename)
    return (
        path.is_relative_to(PROJECT)
        and not path.is_relative_to(PROJECT / ".venv")
        and not path.is_relative_to(PROJECT / "benchmarks")
    )


def _signature(exc: BaseException) -> str:
    """What failed and where: the exception, the innermost frame and the project's last frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if _is_ours(f.filename)]

    def short(frame: traceback.FrameSummary) -> str:
        parts = Path(frame.filename).parts
        return f"{'/'.join(parts[-2:])}:{frame.lineno} {frame.name}"

    where = short(frames[-1]) if frames else "?"
    via = f" via {short(ours[-1])}" if ours and ours[-1] is not frames[-1] else ""
    return f"{type(exc).__name__} at {where}{via}"


def run_case(target: Target, path: Path) -> tuple[str, str, str]:
    """``(outcome, key, detail)``: accepted, refused (key: the error type) or failure."""
    try:
        problem = target.run(path)
    except target.allowed as exc:
        return "refused", type(exc).__name__, ""
    except Exception as exc:
        text = "".join(traceback.format_exception(exc, limit=-12))
        return "failure", _signature(exc), text
    if problem is not None:
        return "failure", f"wrong result: {problem[:120]}", problem
    return "accepted", "", ""


# --- the worker --------------------------------------------------------------------------------
def _limit_memory(gib: float) -> None:
    """Keep a file that claims terabytes from taking the machine: a MemoryError instead."""
    try:
        import resource

        limit = int(gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass


def _quiet() -> None:
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    os.environ.pop("TILED_API_KEY", None)
    try:
        import h5py

        h5py._errors.silence_errors()
    except (ImportError, AttributeError):
        pass


def worker(
    name: str,
    seed: int,
    start: int,
    stop: int,
    skip: set[int],
    workdir: str,
    faildir: str,
    memory_gib: float,
    progress: Any,
    messages: Any,
) -> None:
    """Run cases ``[start, stop)`` of reader ``name``; report counts every :data:`FLUSH_S`."""
    _limit_memory(memory_gib)
    _quiet()
    work = Path(workdir)
    os.chdir(work)
    target = _targets()[name]
    scratch = work / "scratch"
    scratch.mkdir(exist_ok=True)
    corpus = target.corpus(random.Random(f"{seed}/{name}/corpus"), scratch)
    case_dir = work / "case"
    counts: Counter = Counter()
    failures: Counter = Counter()
    samples: list[tuple[int, str, str]] = []
    kept: Counter = Counter()
    last = time.monotonic()
    for i in range(start, stop):
        progress.value = i
        if i in skip:
            continue
        try:
            files = make_case(target, corpus, seed, i)
        except Exception:  # the benchmark's own bug, not the reader's: stop and say so
            messages.put(("error", i, traceback.format_exc(), None, None))
            return
        write_case(case_dir, files)
        outcome, key, detail = run_case(target, case_dir / target.entry)
        counts[outcome if outcome != "refused" else f"refused:{key}"] += 1
        if outcome == "failure":
            failures[key] += 1
            kept[key] += 1
            if kept[key] <= KEEP_PER_FAILURE:
                saved = Path(faildir) / name / str(i)
                shutil.copytree(case_dir, saved, dirs_exist_ok=True)
                samples.append((i, key, detail))
        now = time.monotonic()
        if now - last > FLUSH_S:
            messages.put(("progress", i + 1, counts, failures, samples))
            counts, failures, samples = Counter(), Counter(), []
            last = now
    messages.put(("done", stop, counts, failures, samples))


# --- the parent ---------------------------------------------------------------------------------
@dataclass
class Result:
    """What one reader's fuzzing found."""

    name: str
    cases: int = 0
    counts: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    samples: list[tuple[int, str, str]] = field(default_factory=list)
    wall_s: float = 0.0
    stopped_early: bool = False

    def merge(self, counts: Counter, failures: Counter, samples: list) -> None:
        self.counts.update(counts)
        self.failures.update(failures)
        for sample in samples:
            if sum(1 for s in self.samples if s[1] == sample[1]) < KEEP_PER_FAILURE:
                self.samples.append(sample)


def _save_case(workdir: Path, faildir: Path, name: str, index: int) -> None:
    case = workdir / "case"
    if case.exists():
        shutil.copytree(case, faildir / name / str(index), dirs_exist_ok=True)


def _drain(messages: Any, result: Result, timeout: float) -> tuple[int | None, bool]:
    """Merge what a worker sent; ``(the next case it reported, whether it finished)``."""
    upto, done = None, False
    try:
        while True:
            kind, upto, counts, failures, samples = messages.get(timeout=timeout)
            if kind == "error":
                raise RuntimeError(f"making case {upto} of {result.name} failed:\n{counts}")
            result.merge(counts, failures, samples)
            done = done or kind == "done"
            timeout = 0.01
    except queue_module.Empty:
        pass
    return upto, done


@dataclass
class _Watched:
    """How a worker ended: the next case to run, and what went wrong (if anything)."""

    flushed: int
    case: int
    problem: str | None = None
    stopped: bool = False


def _watch(
    proc: Any, progress: Any, messages: Any, result: Result, start: int, args: Any, begin: float
) -> _Watched:
    """Follow one worker until it finishes, dies, hangs or runs out of time."""
    flushed, seen, since = start, -1, time.monotonic()
    while True:
        upto, done = _drain(messages, result, 0.2)
        flushed = flushed if upto is None else upto
        if done:
            return _Watched(flushed, seen)
        now = time.monotonic()
        if progress.value != seen:
            seen, since = progress.value, now
        if args.max_seconds and time.perf_counter() - begin > args.max_seconds:
            proc.kill()
            return _Watched(flushed, seen, stopped=True)
        if not proc.is_alive():
            upto, done = _drain(messages, result, 0.5)  # its last counts may still be in the pipe
            flushed = flushed if upto is None else upto
            if done:
                return _Watched(flushed, seen)
            return _Watched(flushed, seen, f"crash: the process died (exit code {proc.exitcode})")
        limit = args.hang_s if seen >= 0 else STARTUP_S
        if now - since > limit:
            proc.kill()
            return _Watched(flushed, seen, f"hang: one case ran over {limit:.0f} s")


def _record(
    watched: _Watched,
    name: str,
    workdir: Path,
    faildir: Path,
    result: Result,
    skip: set[int],
    retried: set[int],
    log: Callable,
) -> None:
    """Count a case that crashed or hung its worker (once confirmed) and skip it from now on."""
    if watched.problem is None:
        return
    if watched.case < 0:
        raise RuntimeError(f"the {name} worker did not start: {watched.problem}")
    if watched.problem.startswith("hang") and watched.case not in retried:
        # On a loaded machine a slow case can pass for a hang: it runs once more, in a fresh
        # worker, before it counts as one.
        retried.add(watched.case)
        return
    _save_case(workdir, faildir, name, watched.case)
    key = watched.problem
    result.merge(Counter(failure=1), Counter({key: 1}), [(watched.case, key, key)])
    log(f"{name}: case {watched.case}: {key}; input in {faildir / name / str(watched.case)}")
    skip.add(watched.case)


def fuzz_reader(name: str, args: argparse.Namespace, faildir: Path, log: Callable) -> Result:
    """Fuzz one reader in worker processes, restarting past a case that kills or hangs one."""
    ctx = mp.get_context("spawn")
    result = Result(name)
    start, skip, retried = 0, set(), set()
    begin = time.perf_counter()
    while start < args.cases:
        workdir = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-", dir=args.tmp))
        progress = ctx.RawValue("q", -1)
        messages = ctx.Queue()
        proc = ctx.Process(
            target=worker,
            args=(name, args.seed, start, args.cases, skip, str(workdir), str(faildir)),
            kwargs={"memory_gib": args.memory_gib, "progress": progress, "messages": messages},
            daemon=True,
        )
        proc.start()
        try:
            watched = _watch(proc, progress, messages, result, start, args, begin)
            proc.join(5)
            _record(watched, name, workdir, faildir, result, skip, retried, log)
        finally:
            if proc.is_alive():
                proc.kill()
            shutil.rmtree(workdir, ignore_errors=True)
        start = watched.flushed
        if watched.stopped:
            result.stopped_early = True
            break
    result.cases = sum(result.counts.values())
    result.wall_s = time.perf_counter() - begin
    return result


def _refused_text(result: Result) -> str:
    refused = {k.split(":", 1)[1]: v for k, v in result.counts.items() if k.startswith("refused:")}
    return ", ".join(f"{k} {v}" for k, v in sorted(refused.items(), key=lambda kv: -kv[1]))


def print_table(results: list[Result]) -> None:
    head = f"{'reader':16s} {'cases':>8s} {'accepted':>9s} {'refused':>8s} {'failures':>9s} "
    head += f"{'cases/s':>8s}  refused by error type"
    print(head)
    print("-" * len(head))
    for r in results:
        refused = sum(v for k, v in r.counts.items() if k.startswith("refused:"))
        rate = r.cases / r.wall_s if r.wall_s else 0.0
        note = " (stopped at --max-seconds)" if r.stopped_early else ""
        print(
            f"{r.name:16s} {r.cases:8d} {r.counts['accepted']:9d} {refused:8d} "
            f"{r.counts['failure']:9d} {rate:8.0f}  {_refused_text(r)}{note}"
        )
    total = sum(r.cases for r in results)
    failed = sum(r.counts["failure"] for r in results)
    print(f"total: {total} cases, {failed} failures")


def print_failures(results: list[Result], faildir: Path) -> None:
    for r in results:
        for key, count in r.failures.most_common():
            print(f"\n[{r.name}] {count} x {key}")
            for index, sample_key, detail in r.samples:
                if sample_key == key:
                    print(f"  case {index}: input {faildir / r.name / str(index)}")
                    print("    " + detail.strip().replace("\n", "\n    ")[-1500:])
                    break


def replay(spec: str, args: argparse.Namespace) -> int:
    """Rebuild one case, run it here and print its outcome (with the traceback)."""
    name, _, index = spec.partition(":")
    _quiet()
    warnings.resetwarnings()
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-replay-{name}-", dir=args.tmp))
    os.chdir(work)
    target = _targets()[name]
    (work / "scratch").mkdir()
    corpus = target.corpus(random.Random(f"{args.seed}/{name}/corpus"), work / "scratch")
    write_case(work / "case", make_case(target, corpus, args.seed, int(index)))
    print(f"input: {work / 'case' / target.entry}")
    outcome, key, detail = run_case(target, work / "case" / target.entry)
    print(f"{outcome} {key}\n{detail}")
    return 1 if outcome == "failure" else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=None, help="cases per reader (100 000)")
    parser.add_argument("--quick", action="store_true", help="2 000 cases per reader")
    parser.add_argument("--readers", default=",".join(READERS), help="comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="readers fuzzed at once")
    parser.add_argument("--hang-s", type=float, default=15.0, help="a case longer is a hang")
    parser.add_argument("--max-seconds", type=float, default=0.0, help="per reader; 0: none")
    parser.add_argument("--memory-gib", type=float, default=6.0, help="address space per worker")
    parser.add_argument("--tmp", default="/dev/shm" if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--replay", metavar="READER:N", help="rerun one case with its traceback")
    args = parser.parse_args()
    args.cases = args.cases or (2000 if args.quick else 100_000)
    if args.replay:
        return replay(args.replay, args)
    names = [n.strip() for n in args.readers.split(",") if n.strip()]
    unknown = [n for n in names if n not in READERS]
    if unknown:
        parser.error(f"unknown reader(s) {unknown}; choose from {', '.join(READERS)}")
    faildir = Path(tempfile.mkdtemp(prefix="insitu-fuzz-readers-"))
    lock = threading.Lock()

    def log(text: str) -> None:
        with lock:
            print(text, file=sys.stderr, flush=True)

    print(f"{args.cases} cases per reader, seed {args.seed}; failing inputs go to {faildir}")
    results: dict[str, Result] = {}

    def one(name: str) -> None:
        try:
            result = fuzz_reader(name, args, faildir, log)
        except RuntimeError as exc:  # the benchmark's own failure: reported, counted, not fatal
            log(f"{name}: not fuzzed: {exc}")
            result = Result(name, failures=Counter({f"benchmark error: {exc}"[:200]: 1}))
            result.counts["failure"] = 1
        results[name] = result
        log(
            f"{name}: {result.cases} cases in {result.wall_s:.0f} s, "
            f"{result.counts['failure']} failures"
        )

    threads: list[threading.Thread] = []
    for name in names:
        while sum(t.is_alive() for t in threads) >= max(1, args.jobs):
            time.sleep(0.2)
        thread = threading.Thread(target=one, args=(name,))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    ordered = [results[n] for n in names if n in results]
    print_failures(ordered, faildir)
    print()
    print_table(ordered)
    return 1 if any(r.counts["failure"] for r in ordered) else 0


if __name__ == "__main__":
    sys.exit(main())
