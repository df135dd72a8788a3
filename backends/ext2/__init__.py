"""The ext2 backend: serve an ext2 image file read-write, in pure Python, e2fsck-clean.

``--mount /img=ext2:/srv/disk.img[,ro][,force=true][,lost_found=true]``

- Writes ext2 (revision 0 and 1; block sizes 1-4 KiB; 128/256-byte inodes;
  filetype, sparse_super, large_file, resize_inode, dir_index, ext_attr,
  flex_bg, and ext3's journal while it needs no recovery). Serves ext4 images
  (extents, 64bit, checksums unverified) read-only; other features are refused,
  by name.
- A read-write open locks the image (flock), refuses an image attached to a
  loop device (the kernel takes no flock), marks it not clean and bumps the
  mount count; ``close`` (or interpreter exit) writes back and marks it clean
  (not after a failed write-back: a checkpoint is all or nothing, see fs.py).
  A not-clean image opens read-write only with ``force=true``.
- The image may be a file of another mount of the namespace (``ext2:@/srv/root.img``,
  backends/image_file.py): it is then read and written through that mount's Handle.
  Operations that may wait (file data, write-back, fsync, and all of them on an
  image in a mount) run in the image's thread (worker.py), never on the event loop.
- The root's lost+found is left out of listings (``lost_found=true`` lists it).
- Module map: layout (superblock, descriptors), inode, image (I/O and metadata
  cache), image_lock (checks before serving: superblock, loop devices), alloc
  (bitmaps), bmap and extents (block maps), dirs and dirops (directories), xattr
  and attrs (extended attributes), fs (checkpoints, file data), worker (where
  operations run), nodes (the Node/Handle contract); the bytes come through
  backends/image_file.py.
"""

from __future__ import annotations

import asyncio

from ninep.backends.registry import BackendConfigError, Options, option_bool
from ninep.vfs.node import Backend

from ..image_file import ImageFile, ImageOpener, host_opener
from .fs import ROOT_INO, Ext2Error, FileSystem
from .nodes import Ext2Handle, Ext2Node, NodeTable

__all__ = ["Ext2Backend", "Ext2Handle", "Ext2Node", "open_backend"]


class Ext2Backend(Backend):
    """One opened ext2 image; ``close`` writes everything back and marks it clean."""

    kind = "ext2"
    keeps_ownership = True

    def __init__(self, path: str | ImageFile, read_only: bool = False, force: bool = False,
                 hide_lost_found: bool = True) -> None:
        self.fs = FileSystem(path, read_only, force)
        self.read_only = self.fs.read_only  # vfs/ answers EROFS before any permission check
        self.nodes = NodeTable(self.fs, hide_lost_found)
        self.root: Ext2Node = self.nodes.node(ROOT_INO)
        self._closing: asyncio.Future[None] | None = None

    def checkpoint(self, durable: bool = True) -> None:
        """Write dirty metadata now (and fsync the image when ``durable``)."""
        self.fs.checkpoint(durable)

    async def close(self) -> None:
        """The last write-back and the clean mark, in the image's thread; a second caller
        (a connection's close and the server's stop) waits for the same one."""
        if self._closing is None:
            if self.fs.closed:
                return
            self._closing = asyncio.ensure_future(self.fs.worker.offload(self.fs.close))
        await asyncio.shield(self._closing)


async def open_backend(source: str, options: Options, read_only: bool,
                       opener: ImageOpener | None = None) -> Ext2Backend:
    """The registry's factory: options ``ro``, ``force`` (open a not-clean image read-write),
    ``lost_found`` (list the root's lost+found; hidden by default). ``opener``: how
    to open ``source`` when it is not a host path (an ``@`` file of the namespace)."""
    read_only = option_bool(options, "ro") or read_only  # defaults: the registry's KINDS
    force = option_bool(options, "force")
    show = option_bool(options, "lost_found")
    try:
        file = await (opener or host_opener(source))(not read_only)
    except OSError as exc:
        raise BackendConfigError(f"{source}: cannot open the image: {exc.strerror}") from None
    try:  # reading the superblock and group descriptors: off the event loop
        return await asyncio.to_thread(Ext2Backend, file, read_only, force, not show)
    except Ext2Error as exc:
        raise BackendConfigError(str(exc)) from None
