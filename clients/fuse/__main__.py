"""``python -m clients.fuse SERVER MOUNTPOINT``: the ``ninep fuse`` verb on its own."""

import sys

from .command import main

sys.exit(main(["fuse", *sys.argv[1:]]))
