"""``insitu instrument info``: talk to an instrument.

What it runs is :func:`insitu.protocols.workflows.instrument.instrument_info`.
"""

from __future__ import annotations

import argparse

from .common import emit

__all__ = ["cmd_instrument_info", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``instrument info`` to the ``insitu`` parser."""
    inst = subparsers.add_parser("instrument", help="talk to an instrument")
    inst_sub = inst.add_subparsers(dest="inst_command", required=True, metavar="INSTCOMMAND")
    info = inst_sub.add_parser("info", help="connect and print the instrument's identity")
    info.add_argument("resource", metavar="RESOURCE")
    info.add_argument("--timeout", type=float, default=5.0)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_instrument_info)


def cmd_instrument_info(args: argparse.Namespace) -> int:
    """Connect to an instrument and print its identity and what it can run."""
    from ..workflows.instrument import instrument_info

    info = instrument_info(args.resource, timeout_s=args.timeout)
    human = [
        f"{info['manufacturer']} {info['model']} "
        f"(serial {info['serial']}, firmware {info['firmware']})",
        f"resource: {args.resource}",
        f"can run: {', '.join(info['capabilities'])}",
    ]
    return emit(args, info, human)
