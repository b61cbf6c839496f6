"""Benchmark: the instrument reply parsers fuzzed with hypothesis's big profile.

Runs every property of ``tests/instruments/test_fuzz_replies.py`` under the ``insitu-bench``
profile (12 500 examples each: over 100 000 generated replies in all) and prints, per parser,
the cases run, then the total and the failures (a failure is a parser that raised something
other than its documented ``InstrumentError`` subclass, or returned a wrong value; hypothesis
shrinks it and the falsifying example is printed). Exit status 1 when anything failed.

Usage: ``.venv/bin/python benchmarks/bench_fuzz_parsers.py [--examples N]``
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time
import traceback
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests" / "instruments" / "test_fuzz_replies.py"


def _load_properties():
    spec = importlib.util.spec_from_file_location("test_fuzz_replies", TESTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=None, help="examples per property")
    args = parser.parse_args()
    # The test module picks its profile when it is imported.
    os.environ["INSITU_FUZZ_PROFILE"] = "insitu-bench"
    if args.examples:
        os.environ["INSITU_FUZZ_EXAMPLES"] = str(args.examples)
    fuzz = _load_properties()
    # Drivers warn about odd identities (a generated *IDN? reply is rarely a 336): not news here.
    logging.getLogger("insitu").setLevel(logging.ERROR)
    failures: list[str] = []
    start = time.perf_counter()
    for prop in fuzz.PROPERTIES:
        try:
            prop()
        except Exception:
            failures.append(prop.__name__)
            traceback.print_exc()
    wall = time.perf_counter() - start
    for name, count in sorted(fuzz.CASES.items()):
        print(f"{name:36s} {count:8d} cases")
    total = sum(fuzz.CASES.values())
    print(f"cases run: {total}  properties: {len(fuzz.PROPERTIES)}  failures: {len(failures)}")
    if failures:
        print("failed: " + ", ".join(failures))
    print(f"wall: {wall:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
