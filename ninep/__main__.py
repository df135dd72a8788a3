"""``python -m ninep``: the same as the ``ninep`` command."""

import sys

from ninep.cli import main

sys.exit(main())
