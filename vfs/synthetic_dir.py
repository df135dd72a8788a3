"""The read-only directories the server makes: those holding mount points, and fixed ones of synthetic files."""

from __future__ import annotations

import errno
import stat
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .node import (
    Attr,
    Backend,
    DirEntry,
    Handle,
    Node,
    OpenFlags,
    ReadOnlyNode,
    StatFs,
    dtype_of_mode,
)

if TYPE_CHECKING:
    from .namespace import Mount

__all__ = ["SyntheticBackend", "SyntheticDir"]


class SyntheticDir(ReadOnlyNode):
    """A directory that exists only in the server: one a namespace makes to hold mount
    points (``/`` of ``/a`` and ``/b``), or a fixed set of synthetic files (the
    ``ctl`` directory diodload uses, the metrics files)."""

    def __init__(self, ino: int = 1, parent: SyntheticDir | None = None,
                 children: Mapping[str, Node] | None = None) -> None:
        self.ino = ino
        self.parent = parent or self
        self.children: dict[str, Node | Mount] = dict(children or {})
        self.born = time.time_ns()

    def peek_attr(self) -> Attr:
        # a directory's links: its own two, and one for each directory below it (a
        # mount point counts as one, whatever its root)
        subdirs = sum(1 for child in self.children.values()
                      if isinstance(child, SyntheticDir) or not isinstance(child, Node))
        return Attr(ino=self.ino, mode=stat.S_IFDIR | 0o555, uid=0, gid=0, nlink=2 + subdirs,
                    size=0, atime_ns=self.born, mtime_ns=self.born, ctime_ns=self.born)

    async def getattr(self) -> Attr:
        return self.peek_attr()

    async def type_and_ino(self) -> tuple[int, int]:
        return stat.S_IFDIR, self.ino

    async def walk(self, name: str) -> Node:
        if name == "..":
            return self.parent
        child = self.children.get(name)
        if isinstance(child, Node):
            return child
        raise OSError(errno.ENOENT, "no such file or directory")  # mounts: see Namespace.walk

    async def open(self, flags: OpenFlags) -> Handle:
        if not flags.read_only_access:
            raise OSError(errno.EISDIR, "is a directory")
        return Handle()

    async def listing_end(self) -> int | None:
        return None  # children are added only while the namespace or backend is built

    async def readdir(self, cookie: int, count: int) -> list[DirEntry]:
        names = list(self.children)
        out = []
        for index in range(cookie, min(len(names), cookie + count)):
            child = self.children[names[index]]
            if isinstance(child, Node):
                attr = await child.getattr()
                ino, dtype = attr.ino, dtype_of_mode(attr.mode)
            else:  # a mount: its root may be a single file (null, inline, symlink); its
                # type without a getattr, so a dead import leaves this directory listable
                ino = 0x10000 + index
                dtype = dtype_of_mode((await child.backend.root.type_and_ino())[0])
            out.append(DirEntry(names[index], ino, dtype, index + 1))
        return out

    async def statfs(self) -> StatFs:
        files = sum(1 for child in self.children.values()
                    if isinstance(child, Node) and not isinstance(child, SyntheticDir))
        return StatFs(bsize=4096, blocks=0, bfree=0, bavail=0, files=files, ffree=0)


class SyntheticBackend(Backend):
    """A backend whose root is a SyntheticDir: the namespace's directories of mount
    points, or a fixed directory of ``children`` (ninep.backends.synthetic's files)."""

    kind = "synthetic"

    def __init__(self, children: Mapping[str, Node] | None = None) -> None:
        self.root = SyntheticDir(1, children=children)
