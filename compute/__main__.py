"""``python -m compute profile|footprint FILE ...``: the entry point only.

The command line reads files, so it lives at the edge, in :mod:`cli.compute_cli`; no module of
:mod:`compute` imports it (nor this entry point).
"""

import sys

from cli.compute_cli import main

if __name__ == "__main__":
    sys.exit(main())
