"""Small synthetic files: ``null``, ``zero``, ``inline`` text, ``random``, ``clock``, a
``symlink``; a directory of them is vfs's SyntheticBackend (re-exported here)."""

from __future__ import annotations

import errno
import itertools
import os
import stat
import time

from ninep.vfs.node import (
    Attr,
    Backend,
    Handle,
    LeafNode,
    Node,
    OpenFlags,
)
from ninep.vfs.synthetic_dir import SyntheticBackend

from .registry import BackendConfigError, Options

__all__ = [
    "ClockFile",
    "InlineBackend",
    "InlineFile",
    "NullBackend",
    "NullFile",
    "RandomFile",
    "SymlinkNode",
    "SyntheticBackend",
    "ZeroBackend",
    "ZeroFile",
    "open_clock",
    "open_inline",
    "open_null",
    "open_random",
    "open_symlink",
    "open_zero",
]

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

    async def open(self, flags: OpenFlags) -> Handle:
        if flags.writes and not self.mode & 0o222:
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


class _RandomHandle(_NullHandle):
    async def read(self, offset: int, size: int) -> bytes:
        return os.urandom(size)


class RandomFile(_SyntheticFile):
    """Reads return fresh random bytes without end (/dev/urandom); writes are refused."""

    def handle(self) -> Handle:
        return _RandomHandle()


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


class ClockFile(_SyntheticFile):
    """The server's time: ``SECONDS.NANOSECONDS ISO-8601Z``, read at each open.

    Every reading has the same length, so the size Linux caches stays right.
    """

    WIDTH = len(b"1763840000.000000000 2025-11-22T19:33:20.000000000Z\n")

    def size(self) -> int:
        return self.WIDTH

    def handle(self) -> Handle:
        return _BytesHandle(self.now())

    @staticmethod
    def now() -> bytes:
        ns = time.time_ns()
        sec, frac = divmod(ns, 1_000_000_000)
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{sec}.{frac:09d} {iso}.{frac:09d}Z\n".encode()


class SymlinkNode(LeafNode):
    """A symbolic link with a fixed target from the configuration."""

    def __init__(self, target: str) -> None:
        self.ino = next(_inos)
        self.target = target
        self.born = time.time_ns()

    def peek_attr(self) -> Attr:
        return Attr(ino=self.ino, mode=stat.S_IFLNK | 0o777, uid=0, gid=0, nlink=1,
                    size=len(self.target.encode()), atime_ns=self.born, mtime_ns=self.born,
                    ctime_ns=self.born)

    async def getattr(self) -> Attr:
        return self.peek_attr()

    async def readlink(self) -> str:
        return self.target

    async def open(self, flags: OpenFlags) -> Handle:
        raise OSError(errno.ELOOP, "a symbolic link cannot be opened")


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


class RandomBackend(_SingleFileBackend):
    kind = "random"

    def __init__(self) -> None:
        super().__init__(RandomFile())


class ClockBackend(_SingleFileBackend):
    kind = "clock"

    def __init__(self) -> None:
        super().__init__(ClockFile())


class SymlinkBackend(_SingleFileBackend):
    kind = "symlink"

    def __init__(self, target: str) -> None:
        super().__init__(SymlinkNode(target))


async def open_random(source: str, options: Options, read_only: bool) -> RandomBackend:
    return RandomBackend()


async def open_clock(source: str, options: Options, read_only: bool) -> ClockBackend:
    return ClockBackend()


async def open_symlink(source: str, options: Options, read_only: bool) -> SymlinkBackend:
    """A symbolic link to ``source`` (resolved by the client, like any symlink)."""
    if "\0" in source or len(source.encode()) > 4095:
        raise BackendConfigError(f"symlink target {source!r}: no NUL, at most 4095 bytes")
    return SymlinkBackend(source)


async def open_null(source: str, options: Options, read_only: bool) -> NullBackend:
    return NullBackend()


async def open_zero(source: str, options: Options, read_only: bool) -> ZeroBackend:
    return ZeroBackend()


async def open_inline(source: str, options: Options, read_only: bool) -> InlineBackend:
    """One read-only file whose content is ``source`` (a newline is added if missing)."""
    text = source if source.endswith("\n") or not source else source + "\n"
    return InlineBackend(text)
