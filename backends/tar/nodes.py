"""The nodes of a mounted archive: directories, regular (maybe sparse) files, symlinks, specials.

Everything is built once by the index and never changes; every change is
refused with EROFS (ReadOnlyNode). File data is read in place from the
archive (or its decompressed copy) with ``os.pread``; from an archive in
another mount, in a thread.
"""

from __future__ import annotations

import asyncio
import errno
import os

from ninep.vfs.node import (
    Attr,
    DirEntry,
    Handle,
    Node,
    OpenFlags,
    ReadOnlyNode,
    StatFs,
    dtype_of_mode,
)

from .source import ArchiveSource
from .sparse import SparseMap

__all__ = ["TarDir", "TarDirHandle", "TarFile", "TarFileHandle", "TarNode", "TarSpecial",
           "TarSymlink", "TarVolume"]



class TarVolume:
    """What all nodes of one mount share: the archive and the statfs figures."""

    def __init__(self, source: ArchiveSource, statfs: StatFs) -> None:
        self.source, self.statfs = source, statfs


class TarNode(ReadOnlyNode):
    """Attributes and xattrs from the archive; refusals from ReadOnlyNode."""

    def __init__(self, volume: TarVolume, attr: Attr,
                 xattrs: dict[str, bytes] | None = None) -> None:
        self.volume, self.attr, self.xattrs = volume, attr, xattrs

    def peek_attr(self) -> Attr:
        return self.attr

    async def getattr(self) -> Attr:
        a = self.attr
        return Attr(a.ino, a.mode, a.uid, a.gid, a.nlink, a.size, a.atime_ns, a.mtime_ns,
                    a.ctime_ns, a.rdev, a.blocks, a.blksize)

    async def statfs(self) -> StatFs:
        return self.volume.statfs

    async def xattr_get(self, name: str) -> bytes:
        value = self.xattrs.get(name) if self.xattrs else None
        if value is None:
            raise OSError(errno.ENODATA, "no such attribute", name)
        return value

    async def xattr_list(self) -> list[str]:
        return list(self.xattrs) if self.xattrs else []

    async def open(self, flags: OpenFlags) -> Handle:
        raise OSError(errno.ENXIO, "special files cannot be opened through a tar mount")


class TarFile(TarNode):
    """A regular file: ``attr.size`` bytes at ``data_offset``, or a sparse map over them."""

    def __init__(self, volume: TarVolume, attr: Attr, xattrs: dict[str, bytes] | None,
                 data_offset: int, sparse: SparseMap | None) -> None:
        super().__init__(volume, attr, xattrs)
        self.data_offset, self.sparse = data_offset, sparse

    async def open(self, flags: OpenFlags) -> Handle:
        if flags.directory:
            raise OSError(errno.ENOTDIR, "not a directory")
        if not flags.read_only_access or flags.truncates:
            raise OSError(errno.EROFS, "read-only file system")
        self.volume.source.check()
        return TarFileHandle(self)

    def read_bytes(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0:
            raise OSError(errno.EINVAL, "negative offset or size")
        source = self.volume.source
        source.check_in_place()
        size = min(size, self.attr.size - offset)
        if size <= 0:
            return b""
        if self.sparse is None:
            data = source.read(self.data_offset + offset, size)
            if len(data) != size:
                raise OSError(errno.EIO, "the archive is shorter than when it was mounted")
            return data
        parts = []
        for _, length, stored in self.sparse.pieces(offset, size):
            if stored < 0:
                parts.append(bytes(length))
                continue
            piece = source.read(self.data_offset + stored, length)
            if len(piece) != length:
                raise OSError(errno.EIO, "the archive is shorter than when it was mounted")
            parts.append(piece)
        return b"".join(parts)


class TarFileHandle(Handle):
    """A file opened for reading."""

    def __init__(self, node: TarFile) -> None:
        self.node = node

    async def read(self, offset: int, size: int) -> bytes:
        if self.node.volume.source.inline:
            return self.node.read_bytes(offset, size)
        return await asyncio.to_thread(self.node.read_bytes, offset, size)

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        raise OSError(errno.EBADF, "not open for writing")


class TarDirHandle(Handle):
    """A directory opened for listing; reads answer EISDIR."""

    async def read(self, offset: int, size: int) -> bytes:
        raise OSError(errno.EISDIR, "is a directory")


class TarSymlink(TarNode):
    """A symbolic link; its target is served as stored."""

    def __init__(self, volume: TarVolume, attr: Attr, xattrs: dict[str, bytes] | None,
                 target: str) -> None:
        super().__init__(volume, attr, xattrs)
        self.target = target

    async def open(self, flags: OpenFlags) -> Handle:
        raise OSError(errno.ELOOP, "is a symbolic link")

    async def readlink(self) -> str:
        return self.target


class TarSpecial(TarNode):
    """A FIFO or a character or block device: metadata only."""


class TarDir(TarNode):
    """A directory: a dict for walks, and a sorted list for listings (cookie = index + 1)."""

    def __init__(self, volume: TarVolume, attr: Attr, xattrs: dict[str, bytes] | None,
                 parent: TarDir | None) -> None:
        super().__init__(volume, attr, xattrs)
        self.parent: TarDir = self if parent is None else parent
        self.children: dict[str, TarNode] = {}
        self.listing: list[tuple[str, TarNode]] = []

    def seal(self) -> None:
        """Freeze the listing and the link count once the index is complete."""
        self.listing = sorted(self.children.items())
        self.attr.nlink = 2 + sum(1 for node in self.children.values()
                                  if isinstance(node, TarDir))

    async def walk(self, name: str) -> Node:
        if name == "..":
            return self.parent
        if name == ".":
            return self
        node = self.children.get(name)
        if node is None:
            raise OSError(errno.ENOENT, "no such file or directory", name)
        return node

    async def listing_end(self) -> None:
        return None  # an archive never changes

    async def readdir(self, cookie: int, count: int) -> list[DirEntry]:
        # Nothing ever changes, so the index in the sorted list is a stable cookie.
        listing = self.listing
        stop = min(cookie + max(count, 0), len(listing))
        return [DirEntry(name, node.attr.ino, dtype_of_mode(node.attr.mode), i + 1)
                for i, (name, node) in enumerate(listing[cookie:stop], cookie)]

    async def open(self, flags: OpenFlags) -> Handle:
        if not flags.read_only_access or flags.truncates:
            raise OSError(errno.EISDIR, "is a directory")
        return TarDirHandle()


def device(major: int, minor: int) -> int:
    return os.makedev(major, minor) if major >= 0 and minor >= 0 else 0
