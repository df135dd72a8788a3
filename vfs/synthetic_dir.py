"""The directories a namespace makes to hold mount points (``/`` of ``/a`` and ``/b``)."""

from __future__ import annotations

import errno
import stat
import time
from typing import TYPE_CHECKING

from ninep.wire.constants import O_ACCMODE

from .node import DT_DIR, Attr, Backend, DirEntry, Handle, Node, ReadOnlyNode, StatFs, dtype_of_mode

if TYPE_CHECKING:
    from .namespace import Mount

__all__ = ["SyntheticBackend", "SyntheticDir"]


class SyntheticDir(ReadOnlyNode):
    """A directory that exists only to hold mount points (``/`` of ``/a`` and ``/b``)."""

    def __init__(self, ino: int, parent: SyntheticDir | None = None) -> None:
        self.ino = ino
        self.parent = parent or self
        self.children: dict[str, SyntheticDir | Mount] = {}
        self.born = time.time_ns()

    async def getattr(self) -> Attr:
        return Attr(ino=self.ino, mode=stat.S_IFDIR | 0o555, uid=0, gid=0,
                    nlink=2 + len(self.children),
                    size=0, atime_ns=self.born, mtime_ns=self.born, ctime_ns=self.born)

    async def type_and_ino(self) -> tuple[int, int]:
        return stat.S_IFDIR, self.ino

    async def walk(self, name: str) -> Node:
        if name == "..":
            return self.parent
        child = self.children.get(name)
        if isinstance(child, SyntheticDir):
            return child
        raise OSError(errno.ENOENT, "no such file or directory")  # mounts: see Namespace.walk

    async def open(self, flags: int) -> Handle:
        if flags & O_ACCMODE != 0:
            raise OSError(errno.EISDIR, "is a directory")
        return Handle()

    async def listing_end(self) -> int | None:
        return None  # mount points are added only while the namespace is built

    async def readdir(self, cookie: int, count: int) -> list[DirEntry]:
        names = list(self.children)
        out = []
        for index in range(cookie, min(len(names), cookie + count)):
            child = self.children[names[index]]
            if isinstance(child, SyntheticDir):
                ino, dtype = child.ino, DT_DIR
            else:  # a mount: its root may be a single file (null, inline, symlink); its
                # type without a getattr, so a dead import leaves this directory listable
                ino = 0x10000 + index
                dtype = dtype_of_mode((await child.backend.root.type_and_ino())[0])
            out.append(DirEntry(names[index], ino, dtype, index + 1))
        return out

    async def statfs(self) -> StatFs:
        return StatFs(bsize=4096, blocks=0, bfree=0, bavail=0, files=0, ffree=0)


class SyntheticBackend(Backend):
    kind = "synthetic"

    def __init__(self) -> None:
        self.root = SyntheticDir(1)
