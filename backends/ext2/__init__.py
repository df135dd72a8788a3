"""The ext2 backend: serve an ext2 image file read-write, in pure Python, e2fsck-clean."""

from __future__ import annotations

from backends.registry import BackendConfigError, Options, option_bool
from vfs.node import Backend

from .fs import ROOT_INO, Ext2Error, FileSystem
from .nodes import Ext2Handle, Ext2Node, NodeTable

__all__ = ["Ext2Backend", "Ext2Handle", "Ext2Node", "open_backend"]


class Ext2Backend(Backend):
    """One opened ext2 image; ``close`` writes everything back and marks it clean."""

    kind = "ext2"
    keeps_ownership = True

    def __init__(self, path: str, read_only: bool = False, force: bool = False,
                 hide_lost_found: bool = True) -> None:
        self.fs = FileSystem(path, read_only, force)
        self.nodes = NodeTable(self.fs, hide_lost_found)
        self.root: Ext2Node = self.nodes.node(ROOT_INO)

    def checkpoint(self, durable: bool = True) -> None:
        """Write dirty metadata now (and fsync the image when ``durable``)."""
        self.fs.checkpoint(durable)

    async def close(self) -> None:
        self.fs.close()


async def open_backend(source: str, options: Options, read_only: bool) -> Ext2Backend:
    """The registry's factory: options ``ro``, ``force`` (open a not-clean image read-write),
    ``lost_found`` (list the root's lost+found; hidden by default)."""
    read_only = option_bool(options, "ro", False) or read_only
    force = option_bool(options, "force", False)
    show = option_bool(options, "lost_found", False)
    try:
        return Ext2Backend(source, read_only, force, not show)
    except Ext2Error as exc:
        raise BackendConfigError(str(exc)) from None
