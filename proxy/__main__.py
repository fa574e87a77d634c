"""`python -m proxy`: see :mod:`proxy.cli.demo`."""

from __future__ import annotations

import sys

from proxy.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
