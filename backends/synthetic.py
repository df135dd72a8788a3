"""Small synthetic files: ``null``, ``zero``, ``inline`` text, and a directory holding them."""

from __future__ import annotations

import errno
import itertools
import stat
import time

from vfs.node import (
    DT_DIR,
    DT_REG,
    Attr,
    Backend,
    DirEntry,
    Handle,
    LeafNode,
    Node,
    ReadOnlyNode,
    StatFs,
)

from .registry import Options

__all__ = [
    "InlineBackend",
    "InlineFile",
    "NullBackend",
    "NullFile",
    "StaticDir",
    "SyntheticBackend",
    "ZeroBackend",
    "ZeroFile",
    "open_inline",
    "open_null",
    "open_zero",
]

_O_ACCMODE, _O_WRONLY, _O_RDWR = 3, 1, 2
_ZEROS = memoryview(bytes(1 << 20))  # immutable: replies may share it without a copy
_inos = itertools.count(2)


class _SyntheticFile(LeafNode):
    """A regular file whose content is computed; subclasses supply the handle."""

    mode = stat.S_IFREG | 0o444

    def __init__(self) -> None:
        self.ino = next(_inos)
        self.born = time.time_ns()

    def size(self) -> int:
        return 0

    def peek_attr(self) -> Attr:
        return Attr(ino=self.ino, mode=self.mode, uid=0, gid=0, nlink=1, size=self.size(),
                    atime_ns=self.born, mtime_ns=self.born, ctime_ns=self.born)

    async def getattr(self) -> Attr:
        return self.peek_attr()

    async def setattr(self, changes: object) -> None:
        # Linux truncates with Tsetattr(size) before writing to /dev/null-like files.
        return None

    async def open(self, flags: int) -> Handle:
        if flags & _O_ACCMODE in (_O_WRONLY, _O_RDWR) and not self.mode & 0o222:
            raise OSError(errno.EACCES, "read-only synthetic file")
        return self.handle()

    def handle(self) -> Handle:
        raise NotImplementedError


class _NullHandle(Handle):
    async def read(self, offset: int, size: int) -> bytes | memoryview:
        return b""

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        return len(data)


class _ZeroHandle(_NullHandle):
    async def read(self, offset: int, size: int) -> bytes | memoryview:
        return _ZEROS[:size] if size <= len(_ZEROS) else bytes(size)


class NullFile(_SyntheticFile):
    """Reads return end of file; writes are accepted and discarded (/dev/null)."""

    mode = stat.S_IFREG | 0o666

    def handle(self) -> Handle:
        return _NullHandle()


class ZeroFile(_SyntheticFile):
    """Reads return zeros without end; writes are discarded (/dev/zero)."""

    mode = stat.S_IFREG | 0o666

    def handle(self) -> Handle:
        return _ZeroHandle()


class _BytesHandle(Handle):
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, offset: int, size: int) -> bytes:
        return self.data[offset:offset + size]


class InlineFile(_SyntheticFile):
    """A read-only file with fixed text from the configuration."""

    def __init__(self, text: str | bytes, mode: int = 0o444) -> None:
        super().__init__()
        self.data = text.encode() if isinstance(text, str) else text
        self.mode = stat.S_IFREG | (mode & 0o7777)

    def size(self) -> int:
        return len(self.data)

    def handle(self) -> Handle:
        return _BytesHandle(self.data)


class StaticDir(ReadOnlyNode):
    """A fixed directory of synthetic files (the ``ctl`` namespace of diodload)."""

    def __init__(self, children: dict[str, Node]) -> None:
        self.ino = 1
        self.children = dict(children)
        self.born = time.time_ns()

    def peek_attr(self) -> Attr:
        return Attr(ino=self.ino, mode=stat.S_IFDIR | 0o555, uid=0, gid=0, nlink=2, size=0,
                    atime_ns=self.born, mtime_ns=self.born, ctime_ns=self.born)

    async def getattr(self) -> Attr:
        return self.peek_attr()

    async def walk(self, name: str) -> Node:
        if name == "..":
            return self
        try:
            return self.children[name]
        except KeyError:
            raise OSError(errno.ENOENT, "no such file or directory") from None

    async def open(self, flags: int) -> Handle:
        if flags & _O_ACCMODE:
            raise OSError(errno.EISDIR, "is a directory")
        return Handle()

    async def readdir(self, cookie: int, count: int) -> list[DirEntry]:
        names = list(self.children)[cookie:cookie + count]
        out = []
        for index, name in enumerate(names, start=cookie + 1):
            node = self.children[name]
            dtype = DT_DIR if isinstance(node, StaticDir) else DT_REG
            out.append(DirEntry(name, getattr(node, "ino", 0), dtype, index))
        return out

    async def statfs(self) -> StatFs:
        return StatFs(bsize=4096, blocks=0, bfree=0, bavail=0, files=len(self.children), ffree=0)


class SyntheticBackend(Backend):
    """A backend whose root is a StaticDir."""

    kind = "synthetic"

    def __init__(self, children: dict[str, Node]) -> None:
        self.root = StaticDir(children)


class _SingleFileBackend(Backend):
    """A backend whose root is one synthetic file (mounted at a file's path)."""

    def __init__(self, node: Node) -> None:
        self.root = node


class NullBackend(_SingleFileBackend):
    kind = "null"

    def __init__(self) -> None:
        super().__init__(NullFile())


class ZeroBackend(_SingleFileBackend):
    kind = "zero"

    def __init__(self) -> None:
        super().__init__(ZeroFile())


class InlineBackend(_SingleFileBackend):
    kind = "inline"

    def __init__(self, text: str, mode: int = 0o444) -> None:
        super().__init__(InlineFile(text, mode))


async def open_null(source: str, options: Options, read_only: bool) -> NullBackend:
    return NullBackend()


async def open_zero(source: str, options: Options, read_only: bool) -> ZeroBackend:
    return ZeroBackend()


async def open_inline(source: str, options: Options, read_only: bool) -> InlineBackend:
    """One read-only file whose content is ``source`` (a newline is added if missing)."""
    text = source if source.endswith("\n") or not source else source + "\n"
    return InlineBackend(text)
