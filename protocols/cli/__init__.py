"""The ``insitu`` command line: one module per command group; ``main`` is the entry point."""

from .app import main

__all__ = ["main"]
