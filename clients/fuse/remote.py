"""The FUSE mount's 9P side: open handles as fids, and each file operation as 9P requests.

Everything here runs on the client's event loop; ``operations.py`` calls it from
libfuse's threads. Paths are the absolute ones libfuse gives ("/a/b"); an open
file or directory is a fid held under a handle number until release, so it keeps
working after its name is unlinked or renamed (fids hold objects, not paths).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import stat
from dataclasses import dataclass

from ..fid import Fid
from ..results import StatfsResult, StatResult
from ..tree import Tree
from ..wire import (
    LOCK_BLOCKED,
    LOCK_FLAG_BLOCK,
    LOCK_GRACE,
    LOCK_RDLCK,
    LOCK_SUCCESS,
    LOCK_UNLCK,
    LOCK_WRLCK,
    O_APPEND,
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_RDONLY,
    O_RDWR,
    O_WRONLY,
    SETATTR_ATIME,
    SETATTR_ATIME_SET,
    SETATTR_GID,
    SETATTR_MODE,
    SETATTR_MTIME,
    SETATTR_MTIME_SET,
    SETATTR_SIZE,
    SETATTR_UID,
    Dirent,
    split_path,
)

__all__ = ["UTIME_NOW", "UTIME_OMIT", "LockRequest", "RemoteFS", "p9_open_flags"]

UTIME_NOW = (1 << 30) - 1  # utimensat(2): libfuse passes these in tv_nsec with tv_sec 0
UTIME_OMIT = (1 << 30) - 2
ACL_XATTR_PREFIX = "system.posix_acl_"
LOCK_POLL_START = 0.05  # seconds between Tlock retries of a server that answers BLOCKED
LOCK_POLL_MAX = 1.0

_ACCESS = {os.O_RDONLY: O_RDONLY, os.O_WRONLY: O_WRONLY, os.O_RDWR: O_RDWR}
_TO_P9_LOCK = {fcntl.F_RDLCK: LOCK_RDLCK, fcntl.F_WRLCK: LOCK_WRLCK, fcntl.F_UNLCK: LOCK_UNLCK}
_FROM_P9_LOCK = {v: k for k, v in _TO_P9_LOCK.items()}


def p9_open_flags(flags: int) -> int:
    """Host open(2) flags as 9P2000.L Tlopen flags (they differ from Linux's on macOS).

    O_TRUNC is left out: it is a Tsetattr(size=0) after the open, as Linux sends it;
    O_CREAT/O_EXCL belong to Tlcreate.
    """
    p9 = _ACCESS.get(flags & os.O_ACCMODE, O_RDWR)
    return p9 | (O_APPEND if flags & os.O_APPEND else 0)


@dataclass(frozen=True, slots=True)
class LockRequest:
    """One fcntl(2) lock call as libfuse hands it over (struct flock, l_whence SEEK_SET)."""

    cmd: int  # F_GETLK, F_SETLK or F_SETLKW
    type: int  # F_RDLCK, F_WRLCK or F_UNLCK
    start: int
    length: int  # 0: to the end of the file, in fcntl(2) and in Tlock alike
    pid: int  # the caller's process id; 0 on unlocks (and on the one libfuse sends at close)
    owner: int  # the kernel's lock owner (one per open-file table, i.e. per process)


@dataclass(frozen=True, slots=True)
class LockAnswer:
    """What F_GETLK reports: the conflicting lock, or type F_UNLCK."""

    type: int
    start: int = 0
    length: int = 0
    pid: int = 0


class RemoteFS:
    """The operations of one mount, over one attach (``tree``)."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self._handles: dict[int, Fid] = {}
        self._next_handle = 1
        # (lock owner, qid.path) -> the pid its Tlocks carried: libfuse's unlock at
        # close() has no pid, and the server knows an owner by (client_id, proc_id).
        self._lock_pids: dict[tuple[int, int], int] = {}

    # --- handles --------------------------------------------------------

    def _keep(self, fid: Fid) -> int:
        handle = self._next_handle
        self._next_handle += 1
        self._handles[handle] = fid
        return handle

    def _fid(self, handle: int) -> Fid:
        fid = self._handles.get(handle)
        if fid is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return fid

    async def release(self, handle: int) -> None:
        """Clunk the fid of a file or directory closed for the last time."""
        fid = self._handles.pop(handle, None)
        if fid is not None:
            await fid.clunk()

    async def close_all(self) -> None:
        """Clunk every fid still open (the mount is going away)."""
        for handle in list(self._handles):
            await self.release(handle)

    # --- attributes -----------------------------------------------------

    async def getattr(self, path: str | None, handle: int | None) -> StatResult:
        """Tgetattr of an open handle (fstat), else of the path (lstat)."""
        if handle is not None:
            return StatResult.from_rgetattr(await self._fid(handle).getattr())
        return await self.tree.stat(_need(path))

    async def setattr(self, path: str | None, handle: int | None, valid: int, **values: int) -> None:
        """Tsetattr on the open handle when there is one (fchmod, ftruncate...), else the path."""
        if handle is not None:
            await self._fid(handle).setattr(valid, **values)
            return
        fid = await self.tree.walk(_need(path))
        try:
            await fid.setattr(valid, **values)
        finally:
            fid.release()

    async def chmod(self, path: str | None, handle: int | None, mode: int) -> None:
        await self.setattr(path, handle, SETATTR_MODE, mode=mode & 0o7777)

    async def chown(self, path: str | None, handle: int | None, uid: int, gid: int) -> None:
        valid = (SETATTR_UID if uid != -1 else 0) | (SETATTR_GID if gid != -1 else 0)
        if valid:
            await self.setattr(path, handle, valid, uid=max(uid, 0), gid=max(gid, 0))

    async def truncate(self, path: str | None, handle: int | None, size: int) -> None:
        await self.setattr(path, handle, SETATTR_SIZE, size=size)

    async def utimens(self, path: str | None, handle: int | None,
                      times: tuple[int, int] | None) -> None:
        """utimensat(2): None is both now; UTIME_NOW / UTIME_OMIT per time."""
        atime, mtime = times if times is not None else (UTIME_NOW, UTIME_NOW)
        valid = 0
        if atime != UTIME_OMIT:
            valid |= SETATTR_ATIME | (0 if atime == UTIME_NOW else SETATTR_ATIME_SET)
        if mtime != UTIME_OMIT:
            valid |= SETATTR_MTIME | (0 if mtime == UTIME_NOW else SETATTR_MTIME_SET)
        if valid:
            await self.setattr(path, handle, valid,
                               atime_ns=0 if atime == UTIME_NOW else atime,
                               mtime_ns=0 if mtime == UTIME_NOW else mtime)

    async def statfs(self, path: str) -> StatfsResult:
        return await self.tree.statfs(path)

    # --- directories ----------------------------------------------------

    async def opendir(self, path: str) -> int:
        fid = await self.tree.walk(path)
        try:
            await fid.lopen(O_RDONLY | O_DIRECTORY)
        except BaseException:
            fid.release()
            raise
        return self._keep(fid)

    async def readdir(self, handle: int, cookie: int) -> list[Dirent]:
        """One Treaddir batch from ``cookie``: 9P's cookies are FUSE's readdir offsets."""
        return await self._fid(handle).readdir(cookie)

    async def mkdir(self, path: str, mode: int, gid: int) -> None:
        parent, name = await self._parent(path)
        try:
            await parent.mkdir(name, mode & 0o7777, gid)
        finally:
            parent.release()

    async def rmdir(self, path: str) -> None:
        await self.tree.rmdir(path)

    async def unlink(self, path: str) -> None:
        await self.tree.remove(path)

    async def rename(self, old: str, new: str, noreplace: bool) -> None:
        # 9P has no RENAME_NOREPLACE: check, then rename (racy against other
        # clients, as the Linux 9p client without the flag would be).
        if noreplace and await self.tree.exists(new):
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), new)
        await self.tree.rename(old, new)

    async def _parent(self, path: str) -> tuple[Fid, str]:
        names = split_path(path)
        if not names:
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
        return await self.tree.root.walk(names[:-1]), names[-1]

    # --- links and special files ----------------------------------------

    async def symlink(self, target: str, path: str, gid: int) -> None:
        parent, name = await self._parent(path)
        try:
            await parent.symlink(name, target, gid)
        finally:
            parent.release()

    async def readlink(self, path: str) -> str:
        return await self.tree.readlink(path)

    async def link(self, existing: str, path: str) -> None:
        await self.tree.link(existing, path)

    async def mknod(self, path: str, mode: int, device: int, gid: int) -> None:
        parent, name = await self._parent(path)
        try:
            await parent.mknod(name, mode, os.major(device), os.minor(device), gid)
        finally:
            parent.release()

    # --- files ----------------------------------------------------------

    async def open(self, path: str, flags: int) -> int:
        fid = await self.tree.walk(path)
        try:
            await fid.lopen(p9_open_flags(flags))
            if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY:
                await fid.setattr(SETATTR_SIZE, size=0)
        except BaseException:
            fid.release()
            raise
        return self._keep(fid)

    async def create(self, path: str, mode: int, flags: int, gid: int) -> int:
        parent, name = await self._parent(path)
        p9flags = p9_open_flags(flags) | O_CREAT | (O_EXCL if flags & os.O_EXCL else 0)
        try:
            await parent.lcreate(name, p9flags, mode & 0o7777, gid)
        except FileExistsError:
            parent.release()
            if flags & os.O_EXCL:
                raise
            return await self.open(path, flags)  # made by someone else since the lookup
        except BaseException:
            parent.release()
            raise
        return self._keep(parent)  # Tlcreate turned the directory fid into the new file

    async def read(self, handle: int, size: int, offset: int) -> bytes:
        fid = self._fid(handle)
        pieces: list[bytes] = []
        got = 0
        while got < size:
            data = await fid.read(offset + got, size - got)
            if not data:
                break
            pieces.append(data)
            got += len(data)
        return b"".join(pieces)

    async def write(self, handle: int, data: bytes, offset: int) -> int:
        fid = self._fid(handle)
        view = memoryview(data)
        done = 0
        while done < len(view):
            written = await fid.write(offset + done, view[done:done + fid.io_size])
            if written <= 0:
                raise OSError(errno.EIO, "the server accepted no bytes of a write")
            done += written
        return done

    async def fsync(self, handle: int, datasync: bool) -> None:
        await self._fid(handle).fsync(datasync)

    # --- extended attributes --------------------------------------------

    # POSIX ACLs are xattrs that the kernel's FUSE code hands over as they are
    # (without FUSE_POSIX_ACL), and a 9P server stores them without turning them
    # into mode bits: cp -a would then set an ACL instead of the mode. So the mount
    # has no ACLs, like a local file system mounted noacl, and tools fall back to chmod.

    async def getxattr(self, path: str, name: str) -> bytes:
        _refuse_acl(name)
        return await self.tree.getxattr(path, name)

    async def setxattr(self, path: str, name: str, value: bytes, flags: int) -> None:
        _refuse_acl(name)
        await self.tree.setxattr(path, name, value, flags)

    async def listxattr(self, path: str) -> list[str]:
        return [name for name in await self.tree.listxattr(path)
                if not name.startswith(ACL_XATTR_PREFIX)]

    async def removexattr(self, path: str, name: str) -> None:
        _refuse_acl(name)
        await self.tree.removexattr(path, name)

    # --- POSIX locks ----------------------------------------------------

    async def getlock(self, handle: int, request: LockRequest) -> LockAnswer:
        """F_GETLK as Tgetlock: the first conflicting lock, its pid as the server reports it."""
        fid = self._fid(handle)
        pid = self._lock_pid(fid, request)
        reply = await fid.getlock(_TO_P9_LOCK[request.type], request.start, request.length,
                                  pid, self.tree.client_id)
        if reply.type == LOCK_UNLCK:
            return LockAnswer(fcntl.F_UNLCK)
        return LockAnswer(_FROM_P9_LOCK.get(reply.type, fcntl.F_WRLCK), reply.start,
                          reply.length, reply.proc_id)

    async def setlock(self, handle: int, request: LockRequest) -> None:
        """F_SETLK / F_SETLKW as Tlock; a conflict is EAGAIN, or waits with F_SETLKW.

        The server blocks a Tlock carrying LOCK_FLAG_BLOCK; one that answers
        BLOCKED anyway is polled, as the Linux client does. Cancelling (the caller
        was interrupted) flushes the Tlock.
        """
        fid = self._fid(handle)
        key = (request.owner, fid.qid.path)
        if request.type == fcntl.F_UNLCK and key not in self._lock_pids:
            return  # e.g. libfuse's unlock at every close(): this owner holds no lock here
        pid = self._lock_pid(fid, request)
        block = request.cmd == fcntl.F_SETLKW and request.type != fcntl.F_UNLCK
        poll = LOCK_POLL_START
        while True:
            status = await fid.lock(_TO_P9_LOCK[request.type], LOCK_FLAG_BLOCK if block else 0,
                                    request.start, request.length, pid, self.tree.client_id)
            if status == LOCK_SUCCESS:
                break
            if status not in (LOCK_BLOCKED, LOCK_GRACE):
                raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
            if not block:
                raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            await asyncio.sleep(poll)
            poll = min(poll * 2, LOCK_POLL_MAX)
        if request.type == fcntl.F_UNLCK and request.start == 0 and request.length == 0:
            self._lock_pids.pop(key, None)  # none of this owner's locks on the file is left
        else:
            self._lock_pids[key] = pid

    def _lock_pid(self, fid: Fid, request: LockRequest) -> int:
        known = self._lock_pids.get((request.owner, fid.qid.path))
        if known is not None:
            return known
        # No pid (never from fcntl itself): fold the 64-bit owner into Tlock's 32 bits.
        return request.pid or (request.owner ^ (request.owner >> 32)) & 0x7FFFFFFF


def _refuse_acl(name: str) -> None:
    if name.startswith(ACL_XATTR_PREFIX):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))


def _need(path: str | None) -> str:
    if path is None:  # libfuse gives no path only with an open handle
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    return path


def mode_of_dirent(dirent: Dirent) -> int:
    """The S_IF* file type of a readdir entry (DT_* is the type bits shifted by 12)."""
    return stat.S_IFMT(dirent.type << 12)
