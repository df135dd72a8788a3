"""Open files: a host descriptor read and written off the event loop when it might block."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from vfs.buffers import take
from vfs.node import Handle

from .hostcalls import NOWAIT

if TYPE_CHECKING:
    from .backend import PassthroughBackend
    from .node import PassthroughNode

__all__ = ["DirHandle", "FileHandle"]

T = TypeVar("T")


class DirHandle(Handle):
    """An opened directory: listings go through the node, so it holds no descriptor."""

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        raise OSError(errno.EISDIR, "is a directory")


class FileHandle(Handle):
    """A host descriptor opened for a client; never closed by the descriptor budget.

    Cached data is read inline with RWF_NOWAIT; whatever would wait (cold data,
    FIFOs, writes, fsync) runs in the backend's thread pool. A descriptor in use
    by a thread is closed only when the last such use ends.
    """

    def __init__(self, fs: PassthroughBackend, node: PassthroughNode, fd: int, accmode: int,
                 seekable: bool) -> None:
        self.fs = fs
        self.node = node
        node.pins += 1  # an open file's node keeps its descriptor (getattr after unlink)
        self.fd = fd
        self.readable = accmode in (os.O_RDONLY, os.O_RDWR)
        self.writable = accmode in (os.O_WRONLY, os.O_RDWR)
        self.seekable = seekable
        self._busy = 0
        self._closing = False
        fs.fds.opened_other()

    def _check(self, allowed: bool, what: str) -> None:
        if self._closing:
            raise OSError(errno.EBADF, "handle is closed")
        if not allowed:
            raise OSError(errno.EBADF, f"not open for {what}")

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        self._check(self.readable, "reading")
        if offset < 0 or size < 0:
            raise OSError(errno.EINVAL, "negative offset or size")
        buf = take(size)  # given back by the transport once the reply left in full
        got = self._read_cached(buf, offset) if self.seekable else -1
        if got < 0:
            got = await self._in_thread(self._read_blocking, buf, 0, offset)
        elif got < size and not self._at_eof(offset + got):
            got += await self._in_thread(self._read_blocking, buf, got, offset)
        return buf[:got] if got < size else buf

    def _read_cached(self, buf: memoryview, offset: int) -> int:
        """What the page cache holds at ``offset`` (0 only at end of file), or -1."""
        if not buf:
            return 0
        if not self.fs.nowait_reads:
            return -1
        try:
            return os.preadv(self.fd, [buf], offset, NOWAIT)
        except BlockingIOError:
            return -1  # not cached: read in a thread
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                self.fs.nowait_reads = False  # a filesystem without RWF_NOWAIT
                return -1
            raise

    def _at_eof(self, end: int) -> bool:
        return end >= os.fstat(self.fd).st_size

    def _read_blocking(self, buf: memoryview, start: int, offset: int) -> int:
        view = buf[start:]
        if not self.seekable:
            return os.readv(self.fd, [view])
        done = 0
        while done < len(view):
            got = os.preadv(self.fd, [view[done:]], offset + start + done)
            if got == 0:
                break
            done += got
        return done

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        self._check(self.writable, "writing")
        if offset < 0:
            raise OSError(errno.EINVAL, "negative offset")
        if not data:
            return 0
        # buffered writes have no RWF_NOWAIT on ext4 (EOPNOTSUPP): always a thread.
        # On an O_APPEND descriptor Linux pwrite appends, whatever the offset.
        if self.seekable:
            return await self._in_thread(os.pwritev, self.fd, [data], offset)
        return await self._in_thread(os.writev, self.fd, [data])

    async def fsync(self, datasync: bool) -> None:
        self._check(True, "fsync")
        await self._in_thread(os.fdatasync if datasync else os.fsync, self.fd)

    async def _in_thread(self, func: Callable[..., T], *args: object) -> T:
        self._busy += 1
        try:
            if self.seekable:
                return await self.fs.in_thread(func, *args)
            return await self.fs.in_pipe_thread(func, *args)
        finally:
            self._busy -= 1
            if self._closing and not self._busy:
                self._release()

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if not self._busy:
            self._release()

    def _release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.fs.fds.closed_other()
            self.node.pins -= 1
