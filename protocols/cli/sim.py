"""``insitu sim serve|materials``: the simulators on their own.

What they run is :mod:`insitu.protocols.workflows.sim`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ..errors import InvalidInputError
from .common import EMULATORS, add_emulator_option, print_json

__all__ = ["cmd_sim_materials", "cmd_sim_serve", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sim serve`` and ``sim materials`` to the ``insitu`` parser."""
    sim = subparsers.add_parser("sim", help="simulators: emulator servers and material presets")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, metavar="SIMCOMMAND")
    serve = sim_sub.add_parser(
        "serve",
        help="serve a virtual cell through an instrument emulator on 127.0.0.1",
        description="Start an emulator and print the resource string a client should use.",
    )
    # Required, but checked in the handler: argparse would not count the old --protocol.
    add_emulator_option(
        serve,
        default=None,
        help=f"the instrument to emulate ({' or '.join(EMULATORS)}; required)",
        old_name="--protocol",
    )
    serve.add_argument("--material", required=True, help="A-LPS, LPS:0.5LiI, LiI-AT or LiI-AN")
    serve.add_argument("--speedup", type=float, default=1.0, help="simulated s per real s (1)")
    serve.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    serve.add_argument(
        "--transport",
        choices=("tcp", "pty"),
        default="tcp",
        help="methodscript only: socket:// URL (tcp) or pseudo-terminal path (pty)",
    )
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--temperature-C", type=float, default=None, help="cell temperature (60)")
    serve.add_argument("--json", action="store_true")
    serve.set_defaults(func=cmd_sim_serve)
    materials = sim_sub.add_parser("materials", help="list the material presets")
    materials.add_argument("--json", action="store_true")
    materials.set_defaults(func=cmd_sim_materials)


def cmd_sim_serve(args: argparse.Namespace) -> int:
    """Serve a virtual cell through an emulator until interrupted."""
    from ..workflows.sim import serve_cell

    if args.emulator is None:
        raise InvalidInputError(f"give the instrument to emulate: --emulator {'|'.join(EMULATORS)}")
    # Install the SIGTERM handler before the resource is printed: a client may read it and
    # ask us to stop at once, and the emulator must still shut down cleanly.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serve_cell(
        args.material,
        emulator=args.emulator,
        speedup=args.speedup,
        seed=args.seed,
        temperature_C=args.temperature_C,
        port=args.port,
        transport=args.transport,
    ) as bench:
        if args.json:
            print_json({"resource": bench.resource, "material": args.material})
        else:
            print(bench.resource, flush=True)
            print(
                f"serving a virtual {args.material} cell as {args.emulator} at speed-up "
                f"{args.speedup:g}; Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


def cmd_sim_materials(args: argparse.Namespace) -> int:
    """List the material presets and their published numbers."""
    from ..workflows.sim import material_presets

    presets = material_presets()
    if args.json:
        print_json(presets)
        return 0
    for m in presets:
        print(
            f"{m['name']:<11} σ(25 °C) {m['sigma_rt_S_cm']:.2e} S/cm  "
            f"Eₐ {m['activation_energy_eV']:.3f} eV  CCD {m['ccd_mA_cm2']:g} mA/cm²"
            f"  — {m['description']}"
        )
    return 0
