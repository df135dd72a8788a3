"""The bytes under an image backend (tar, ext2): a host file, or a file of another mount.

Both kinds of file offer the same small interface (:class:`ImageFile`):
``pread``, ``pwrite``, ``size``, ``fsync``, ``lock`` (the writer's lock) and
``close``, all synchronous. A host file's calls are system calls, cheap enough
inline on the event loop when the page cache holds the bytes (``pread(...,
nowait=True)`` says when it does not). A file of another mount is reached
through that mount's Node and Handle (the backend contract), whose calls are
coroutines on the event loop: its methods are called from a thread (an
image's worker, or the thread that opens it) and wait there for the loop,
never from the loop itself.

A source starting with ``@`` names such a file by its path in the namespace
(``ext2:@/srv/images/root.img``); backends/image_sources.py holds the rules
that check it at load.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import stat
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

from ninep.vfs.buffers import give
from ninep.vfs.image_claims import CLAIMS, Claim
from ninep.vfs.node import Backend, Handle, Node, OpenFlags

__all__ = ["FileStamp", "HandleImageFile", "HostImageFile", "ImageFile", "ImageOpener",
           "host_opener", "namespace_opener"]

T = TypeVar("T")
NOWAIT = getattr(os, "RWF_NOWAIT", 0)
_CHUNK = 1 << 20  # bytes per Handle call: bounds one reply of the container's backend


class FileStamp(NamedTuple):
    """What identifies the file and its state when it was opened."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class ImageFile(Protocol):
    """The bytes of one image; every method may raise OSError with a Linux errno."""

    name: str  # for messages: the host path, or "@/path" in the namespace
    writable: bool
    host: bool  # a host file: its calls may run on the event loop (pread with nowait)
    stamp: FileStamp

    def pread(self, offset: int, size: int, nowait: bool = False) -> bytes:
        """Up to ``size`` bytes at ``offset``, short only at the end of the file.
        ``nowait``: BlockingIOError rather than wait for the disk."""

    def preadinto(self, buf: memoryview, offset: int, nowait: bool = False) -> int:
        """``pread`` into ``buf`` (no copy for a host file); the count read."""

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """All of ``data`` at ``offset``; EIO on a short write."""

    def size(self) -> int: ...

    def fsync(self) -> None: ...

    def lock(self, exclusive: bool) -> None:
        """Take the file for one server: EBUSY if another holds it (or any reader, when
        ``exclusive``). Released by ``close``."""

    def close(self) -> None: ...


ImageOpener = Callable[[bool], Awaitable[ImageFile]]


class HostImageFile:
    """A host file, by descriptor; its lock is flock(2)."""

    host = True

    def __init__(self, path: str, writable: bool) -> None:
        self.name, self.writable = path, writable
        self.fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
        try:
            st = os.fstat(self.fd)
            if not stat.S_ISREG(st.st_mode) and not stat.S_ISBLK(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
        except BaseException:
            os.close(self.fd)
            raise
        self.stamp = FileStamp.of(st)
        self.nowait = bool(NOWAIT)

    def pread(self, offset: int, size: int, nowait: bool = False) -> bytes:
        if not nowait:
            return os.pread(self.fd, size, offset)
        buf = bytearray(size)  # handed on as it is: nobody else holds it, it never changes
        got = self.preadinto(memoryview(buf), offset, True)
        return buf if got == size else buf[:got]  # type: ignore[return-value]

    def preadinto(self, buf: memoryview, offset: int, nowait: bool = False) -> int:
        if not nowait:
            return os.preadv(self.fd, [buf], offset)
        if not self.nowait:
            raise BlockingIOError(errno.EAGAIN, "RWF_NOWAIT is not supported here")
        try:
            got = os.preadv(self.fd, [buf], offset, NOWAIT)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                self.nowait = False  # a file system without RWF_NOWAIT reads: threads only
                raise BlockingIOError(errno.EAGAIN, "RWF_NOWAIT is not supported") from None
            raise
        if got < len(buf) and offset + got < os.fstat(self.fd).st_size:
            raise BlockingIOError(errno.EAGAIN, "partly cached")
        return got

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if os.pwrite(self.fd, data, offset) != len(data):
            raise OSError(errno.EIO, f"short write to the image at {offset}")

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def fsync(self) -> None:
        os.fsync(self.fd)

    def lock(self, exclusive: bool) -> None:
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OSError(errno.EBUSY, "the image is in use by another process "
                                       "(locked)") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class HandleImageFile:
    """A file of another mount, through an open Handle; its lock is the claim (vfs/
    image_claims.py) that keeps clients of the namespace from changing it."""

    host = False

    def __init__(self, name: str, backend: Backend, node: Node, handle: Handle, claim: Claim,
                 writable: bool, stamp: FileStamp) -> None:
        self.name, self.backend, self.node, self.handle = name, backend, node, handle
        self.claim: Claim | None = claim
        self.writable, self.stamp = writable, stamp
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.get_ident() == self.loop_thread:
            coro.close()
            raise RuntimeError(f"{self.name}: the I/O of an image in a mount was called "
                               "on the event loop, where it would wait for itself")
        if self.loop.is_closed():
            coro.close()
            raise OSError(errno.EIO, f"{self.name}: the server's event loop is gone")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def pread(self, offset: int, size: int, nowait: bool = False) -> bytes:
        if nowait:
            raise BlockingIOError(errno.EAGAIN, "a file of a mount is read in a thread")
        return self._call(self._read(offset, size))

    def preadinto(self, buf: memoryview, offset: int, nowait: bool = False) -> int:
        data = self.pread(offset, len(buf), nowait)
        buf[:len(data)] = data
        return len(data)

    async def _read(self, offset: int, size: int) -> bytes:
        parts, got = [], 0
        while got < size:
            data = await self.handle.read(offset + got, min(size - got, _CHUNK))
            if not data:
                break
            parts.append(bytes(data))
            give(data)  # a pooled read buffer (passthrough's) goes back once copied
            got += len(data)
        return b"".join(parts)

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self._call(self._write(offset, bytes(data)))

    async def _write(self, offset: int, data: bytes) -> None:
        done = 0
        while done < len(data):
            wrote = await self.handle.write(offset + done, data[done:done + _CHUNK])
            if wrote <= 0:
                raise OSError(errno.EIO, f"short write to the image at {offset + done}")
            done += wrote

    def size(self) -> int:
        return self._call(self.node.getattr()).size

    def fsync(self) -> None:
        self._call(self.handle.fsync(False))

    def lock(self, exclusive: bool) -> None:
        """The claim, taken at open; and where the Handle holds a host descriptor (a
        passthrough file), its flock too: two mounts of one host directory (or two
        per-connection instances of one) are two backends, whose claims cannot see
        each other, and a host program or another server may use the file as well."""
        if exclusive and (self.claim is None or not self.claim.exclusive):
            raise OSError(errno.EBUSY, "the image was claimed for reading only")
        fd = getattr(self.handle, "fd", None)
        if isinstance(fd, int) and fd >= 0:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OSError(errno.EBUSY, "the image is in use (locked on the host)") from None

    def close(self) -> None:
        claim, self.claim = self.claim, None
        if claim is None:
            return
        try:
            self._call(self.handle.close())
        finally:
            CLAIMS.release(self.backend, claim)


def host_opener(path: str) -> ImageOpener:
    """Open the host file ``path`` (for writing when asked)."""
    async def open_host(writable: bool) -> ImageFile:
        return HostImageFile(path, writable)
    return open_host


Mounted = Sequence[tuple[str, Backend, bool]]  # (path, backend, read_only) opened so far


def namespace_opener(source: str, within: Mounted, holder: str) -> ImageOpener:
    """Open ``source`` ("@/path") in the deepest of ``within`` (mounts opened before the
    image's) that holds it, walking from that mount's root without following symlinks.

    ``holder`` names the image in messages ("ext2 mount /rootfs"). Errnos: ENOENT
    (no such mount or file), EINVAL (not a regular file), EROFS (writing wanted in a
    read-only mount), EBUSY (claimed by another image); the registry turns each into
    a BackendConfigError naming the mount.
    """
    path = source.removeprefix("@")

    async def open_in_mounts(writable: bool) -> ImageFile:
        mount_path, backend, read_only = _container(path, within)
        node = backend.root
        rest = [p for p in path[len(mount_path):].split("/") if p]
        for part in rest:
            node = await node.walk(part)
        attr = await node.getattr()
        if not stat.S_ISREG(attr.mode):
            raise OSError(errno.EINVAL, f"{source} is not a regular file "
                                        "(symlinks are not followed)")
        if writable and (read_only or backend.read_only):
            raise OSError(errno.EROFS, f"{source} is in the read-only mount {mount_path}, "
                                       "and a read-write image needs a writable container "
                                       "(serve the image read-only: ,ro)")
        claim = CLAIMS.claim(backend, attr.ino, writable, f"{holder} ({source})")
        try:
            handle = await node.open(OpenFlags.READ_WRITE if writable else OpenFlags.READ)
        except BaseException:
            CLAIMS.release(backend, claim)
            raise
        stamp = FileStamp(0, attr.ino, attr.size, attr.mtime_ns)
        return HandleImageFile(source, backend, node, handle, claim, writable, stamp)
    return open_in_mounts


def _container(path: str, within: Mounted) -> tuple[str, Backend, bool]:
    best: tuple[str, Backend, bool] | None = None
    for mount_path, backend, read_only in within:
        inside = path == mount_path or path.startswith(mount_path.rstrip("/") + "/")
        if inside and (best is None or len(mount_path) > len(best[0])):
            best = (mount_path, backend, read_only)
    if best is None:
        raise OSError(errno.ENOENT, f"no mount opened before this one holds @{path}")
    return best
