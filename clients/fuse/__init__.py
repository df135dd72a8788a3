"""A FUSE mount of a 9P2000.L server (``ninep fuse``), on mfusepy over the system libfuse."""

from .command import FuseOptions, add_fuse_command, mount

__all__ = ["FuseOptions", "add_fuse_command", "mount"]
