"""libfuse's callbacks (through mfusepy) turned into RemoteFS calls on the client's loop.

libfuse calls these from its own worker threads, several at once; each call
hands a coroutine to the event loop thread that owns the 9P connection and
waits for it. A lost connection makes every call EIO and ends the mount, as
sshfs does, rather than leaving a mount that hangs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import fcntl
import logging
import os
import sys
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import mfusepy  # type: ignore[import-untyped]

from ..errors import ProtocolError
from .remote import LockRequest, RemoteFS, mode_of_dirent

__all__ = ["NinepFUSE", "NinepOperations"]

log = logging.getLogger(__name__)
T = TypeVar("T")
INTERRUPT_POLL = 0.2  # seconds between checks whether libfuse interrupted a waiting request
RENAME_NOREPLACE = 1  # renameat2(2)
RENAME_EXCHANGE = 2


class NinepOperations(mfusepy.Operations):  # type: ignore[misc]
    """The mounted tree: each libfuse callback is one RemoteFS coroutine."""

    use_ns = True  # times as integer nanoseconds, as 9P carries them
    # libfuse may then pass no path for calls on an open handle: those use the
    # fid, which survives an unlink or rename of the name (hard_remove).
    flag_nopath = True
    flag_nullpath_ok = True

    def __init__(self, remote: RemoteFS, loop: asyncio.AbstractEventLoop) -> None:
        self.remote = remote
        self.loop = loop
        self.lost = False

    def _run(self, coro: Coroutine[Any, Any, T], interruptible: bool = False) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            if not interruptible:
                return future.result()
            while True:  # a waiting lock: give up (and Tflush) when the caller is interrupted
                try:
                    return future.result(INTERRUPT_POLL)
                except concurrent.futures.TimeoutError:
                    if mfusepy._libfuse.fuse_interrupted():
                        future.cancel()
                        raise OSError(errno.EINTR, os.strerror(errno.EINTR)) from None
        except ProtocolError as exc:
            if not self.lost:
                self.lost = True
                log.error("%s; unmounting", exc)
                mfusepy.fuse_exit()
            raise OSError(errno.EIO, str(exc)) from None

    @staticmethod
    def _gid() -> int:
        return int(mfusepy.fuse_get_context()[1])  # new files take the caller's group

    # --- attributes -----------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, int]:
        s = self._run(self.remote.getattr(path, fh))
        return {"st_mode": s.st_mode, "st_ino": s.st_ino, "st_nlink": s.st_nlink,
                "st_uid": s.st_uid, "st_gid": s.st_gid, "st_rdev": s.st_rdev,
                "st_size": s.st_size, "st_blksize": s.st_blksize, "st_blocks": s.st_blocks,
                "st_atime": s.st_atime_ns, "st_mtime": s.st_mtime_ns, "st_ctime": s.st_ctime_ns}

    def chmod(self, path: str | None, mode: int, fh: int | None = None) -> int:
        self._run(self.remote.chmod(path, fh, mode))
        return 0

    def chown(self, path: str | None, uid: int, gid: int, fh: int | None = None) -> int:
        self._run(self.remote.chown(path, fh, uid, gid))
        return 0

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        self._run(self.remote.truncate(path, fh, length))
        return 0

    def utimens(self, path: str | None, times: tuple[int, int] | None = None,
                fh: int | None = None) -> int:
        self._run(self.remote.utimens(path, fh, times))
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        s = self._run(self.remote.statfs(path))
        return {"f_bsize": s.f_bsize, "f_frsize": s.f_bsize, "f_blocks": s.f_blocks,
                "f_bfree": s.f_bfree, "f_bavail": s.f_bavail, "f_files": s.f_files,
                "f_ffree": s.f_ffree, "f_favail": s.f_ffree, "f_namemax": s.f_namemax}

    # --- directories ----------------------------------------------------

    def opendir(self, path: str) -> int:
        return self._run(self.remote.opendir(path))

    def readdir_with_offset(self, path: str | None, offset: int,
                            fh: int) -> Iterator[tuple[str, dict[str, int], int]]:
        # Treaddir batch by batch; libfuse stops iterating when the kernel's buffer
        # is full and asks again from the last offset it kept.
        while True:
            batch = self._run(self.remote.readdir(fh, offset))
            if not batch:
                return
            for dirent in batch:
                yield dirent.name, {"st_mode": mode_of_dirent(dirent),
                                    "st_ino": dirent.qid.path}, dirent.offset
            offset = batch[-1].offset

    def releasedir(self, path: str | None, fh: int) -> int:
        self._run(self.remote.release(fh))
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self._run(self.remote.mkdir(path, mode, self._gid()))
        return 0

    def rmdir(self, path: str) -> int:
        self._run(self.remote.rmdir(path))
        return 0

    def unlink(self, path: str) -> int:
        self._run(self.remote.unlink(path))
        return 0

    def rename(self, old: str, new: str, flags: int = 0) -> int:
        if flags & ~RENAME_NOREPLACE:
            raise OSError(errno.EINVAL, "9P has no RENAME_EXCHANGE")
        self._run(self.remote.rename(old, new, bool(flags & RENAME_NOREPLACE)))
        return 0

    # --- links and special files ----------------------------------------

    def symlink(self, target: str, source: str) -> int:
        # mfusepy's names: ``target`` is the new link, ``source`` what it points to.
        self._run(self.remote.symlink(source, target, self._gid()))
        return 0

    def readlink(self, path: str) -> str:
        return self._run(self.remote.readlink(path))

    def link(self, target: str, source: str) -> int:
        self._run(self.remote.link(source, target))
        return 0

    def mknod(self, path: str, mode: int, dev: int) -> int:
        self._run(self.remote.mknod(path, mode, dev, self._gid()))
        return 0

    # --- files ----------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        return self._run(self.remote.open(path, flags))

    def create(self, path: str, mode: int, flags: int) -> int:
        return self._run(self.remote.create(path, mode, flags, self._gid()))

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return self._run(self.remote.read(fh, size, offset))

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        return self._run(self.remote.write(fh, data, offset))

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        self._run(self.remote.fsync(fh, bool(datasync)))
        return 0

    def flush(self, path: str | None, fh: int) -> int:
        return 0  # writes are not buffered here; libfuse then drops the caller's locks

    def release(self, path: str | None, fh: int) -> int:
        self._run(self.remote.release(fh))
        return 0

    # --- extended attributes --------------------------------------------

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        return self._run(self.remote.getxattr(path, name))

    def setxattr(self, path: str, name: str, value: bytes, options: int,
                 position: int = 0) -> int:
        self._run(self.remote.setxattr(path, name, value, options))
        return 0

    def listxattr(self, path: str) -> list[str]:
        return self._run(self.remote.listxattr(path))

    def removexattr(self, path: str, name: str) -> int:
        self._run(self.remote.removexattr(path, name))
        return 0

    # --- POSIX locks ----------------------------------------------------

    def lock(self, path: str | None, fh: int, cmd: int, lock: Any, owner: int = 0) -> int:
        flock = lock.contents
        request = LockRequest(cmd, flock.l_type, flock.l_start, flock.l_len, flock.l_pid, owner)
        if cmd == fcntl.F_GETLK:
            answer = self._run(self.remote.getlock(fh, request))
            flock.l_type = answer.type
            if answer.type != fcntl.F_UNLCK:
                flock.l_whence = os.SEEK_SET
                flock.l_start, flock.l_len, flock.l_pid = answer.start, answer.length, answer.pid
            return 0
        self._run(self.remote.setlock(fh, request), interruptible=cmd == fcntl.F_SETLKW)
        return 0

    if not sys.platform.startswith("linux"):
        # mfusepy knows struct flock's layout on Linux only: elsewhere the kernel
        # keeps the locks on this host, as it does for any FUSE file system without locks.
        lock = None  # type: ignore[assignment]


class NinepFUSE(mfusepy.FUSE):  # type: ignore[misc]
    """mfusepy's FUSE, passing on what its libfuse 3 wrappers drop.

    Its wrappers give chmod/chown/truncate/utimens no file handle (so fchmod,
    ftruncate... of an unlinked file would fail), rename no flags (so
    RENAME_NOREPLACE would silently replace) and lock no lock owner.
    """

    @staticmethod
    def _handle(fip: Any) -> int | None:
        return int(fip.contents.fh) if fip else None

    @staticmethod
    def _path(path: bytes | None) -> str | None:
        return None if path is None else os.fsdecode(path)

    def chmod_fuse_3(self, path: bytes | None, mode: int, fip: Any) -> int:
        return int(self.operations.chmod(self._path(path), mode, self._handle(fip)))

    def chown_fuse_3(self, path: bytes | None, uid: int, gid: int, fip: Any) -> int:
        # uid_t -1 ("leave unchanged") arrives as 2**32 - 1
        uid = -1 if uid == 0xFFFFFFFF else uid
        gid = -1 if gid == 0xFFFFFFFF else gid
        return int(self.operations.chown(self._path(path), uid, gid, self._handle(fip)))

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        return int(self.operations.truncate(self._path(path), length, self._handle(fip)))

    def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
        times = None
        if buf:
            atime, mtime = buf.contents.actime, buf.contents.modtime  # struct timespec[2]
            times = (atime.tv_sec * 10**9 + atime.tv_nsec, mtime.tv_sec * 10**9 + mtime.tv_nsec)
        return int(self.operations.utimens(self._path(path), times, self._handle(fip)))

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        return int(self.operations.rename(os.fsdecode(old), os.fsdecode(new), flags))

    def lock(self, path: bytes | None, fip: Any, cmd: int, lock: Any) -> int:
        info = fip.contents
        return int(self.operations.lock(self._path(path), info.fh, cmd, lock, info.lock_owner))
