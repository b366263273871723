"""`python -m edgeinfer.loadgen` is `edgeinfer bench`, without the other subcommands' imports."""

import sys

from edgeinfer.loadgen.cli import main

if __name__ == "__main__":
    sys.exit(main())
