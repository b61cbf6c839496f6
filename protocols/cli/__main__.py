"""``python -m insitu.protocols.cli``: the ``insitu`` command without the console script."""

import sys

from .app import main

if __name__ == "__main__":  # not when merely imported (tests import every module)
    sys.exit(main())
