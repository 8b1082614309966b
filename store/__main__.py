"""``python -m store load FILE --redis-url URL ...``: the entry point only.

The command line reads files, so it lives at the edge, in :mod:`cli.store_cli`; no module of
:mod:`store` imports it (nor this entry point).
"""

import sys

from cli.store_cli import main

if __name__ == "__main__":
    sys.exit(main())
