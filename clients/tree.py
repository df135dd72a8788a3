"""The path-based file API over one attach: open, listdir, stat, mkdir, xattrs, locks."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal, overload

from .errors import with_path
from .files import DEFAULT_WINDOW, RemoteFile, TextFile
from .results import DirEntry, LockInfo, StatfsResult, StatResult
from .wire import (
    AT_REMOVEDIR,
    DT_DIR,
    DT_UNKNOWN,
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_RDONLY,
    QTDIR,
    SETATTR_ATIME,
    SETATTR_ATIME_SET,
    SETATTR_GID,
    SETATTR_MODE,
    SETATTR_MTIME,
    SETATTR_MTIME_SET,
    SETATTR_SIZE,
    SETATTR_UID,
    OpenMode,
    parse_mode,
    split_path,
)

if TYPE_CHECKING:
    from .client import Client
    from .fid import Fid

__all__ = ["Tree"]


class Tree:
    """Everything below one attach root, addressed by "/"-separated paths.

    Paths are relative to the attach root ("/a/b" and "a/b" are the same).
    9P walks never follow symbolic links, so ``stat`` reports the link itself.
    Errors are ``OSError(errno, strerror, path)`` with the path as given.
    """

    def __init__(self, root: Fid, *, aname: str = "", gid: int | None = None,
                 proc_id: int | None = None, window: int = DEFAULT_WINDOW) -> None:
        self.root = root
        self.aname = aname
        self.gid = os.getegid() if gid is None else gid
        self.proc_id = os.getpid() if proc_id is None else proc_id
        self.client_id = socket.gethostname()
        self.window = window

    @property
    def client(self) -> Client:
        """The connection this tree was attached on."""
        return self.root.client

    async def close(self) -> None:
        """Clunk the root fid (the connection stays open)."""
        await self.root.clunk()

    async def __aenter__(self) -> Tree:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- walking --------------------------------------------------------

    async def walk(self, path: str) -> Fid:
        """A new fid for ``path`` (the caller clunks it)."""
        with with_path(path):
            return await self.root.walk(split_path(path))

    @asynccontextmanager
    async def _walked(self, path: str) -> AsyncIterator[Fid]:
        with with_path(path):
            fid = await self.root.walk(split_path(path))
            try:
                yield fid
            finally:
                fid.release()

    @asynccontextmanager
    async def _parent(self, path: str) -> AsyncIterator[tuple[Fid, str]]:
        names = split_path(path)
        with with_path(path):
            if not names or names[-1] == "..":
                raise OSError(errno.EINVAL, f"{path!r} does not name an entry of a directory")
            fid = await self.root.walk(names[:-1])
            try:
                yield fid, names[-1]
            finally:
                fid.release()

    async def subtree(self, path: str) -> Tree:
        """A Tree rooted at directory ``path`` (same owner ids); close() it when done."""
        fid = await self.walk(path)
        return Tree(fid, aname=self.aname, gid=self.gid, proc_id=self.proc_id,
                    window=self.window)

    async def exists(self, path: str) -> bool:
        """True if ``path`` can be walked to."""
        try:
            (await self.walk(path)).release()
        except FileNotFoundError:
            return False
        return True

    # --- files ----------------------------------------------------------

    @overload
    async def open(self, path: str, mode: Literal["rb", "wb", "ab", "xb", "r+b", "w+b", "a+b",
                                                  "x+b", "rb+", "wb+", "ab+", "xb+"],
                   perm: int = ..., *, encoding: str = ..., errors: str = ...) -> RemoteFile: ...

    @overload
    async def open(self, path: str, mode: Literal["r", "w", "a", "x", "r+", "w+", "a+", "x+",
                                                  "rt", "wt", "at", "xt"] = ...,
                   perm: int = ..., *, encoding: str = ..., errors: str = ...) -> TextFile: ...

    @overload
    async def open(self, path: str, mode: str, perm: int = ..., *, encoding: str = ...,
                   errors: str = ...) -> RemoteFile | TextFile: ...

    async def open(self, path: str, mode: str = "r", perm: int = 0o666, *,
                   encoding: str = "utf-8", errors: str = "strict") -> RemoteFile | TextFile:
        """Open like the builtin open(): "r", "rb", "w", "a", "r+", "x", ... .

        "w" on an existing file opens it and truncates with Tsetattr(size=0), as
        Linux does; a missing file is made with Tlcreate(perm).
        """
        how = parse_mode(mode)
        with with_path(path):
            fid = await self._open_fid(path, how, perm)
        raw = RemoteFile(fid, path, how, lock_owner=(self.proc_id, self.client_id),
                         window=self.window)
        return raw if how.binary else TextFile(raw, encoding, errors)

    async def _open_fid(self, path: str, how: OpenMode, perm: int) -> Fid:
        if how.exclusive:
            return await self._create(path, how, perm)
        for _ in range(3):  # a create racing our walk: walk again
            try:
                fid = await self.root.walk(split_path(path))
            except FileNotFoundError:
                if not how.create:
                    raise
            else:
                return await self._open_existing(fid, how)
            try:
                return await self._create(path, how, perm)
            except FileExistsError:
                continue
        raise OSError(errno.EAGAIN, "file keeps appearing and disappearing")

    async def _open_existing(self, fid: Fid, how: OpenMode) -> Fid:
        try:
            await fid.lopen(how.flags & ~(O_CREAT | O_EXCL))
            if how.truncate:  # Linux never sends O_TRUNC: it sends Tsetattr(size)
                await fid.setattr(SETATTR_SIZE, size=0)
        except BaseException:
            fid.release()
            raise
        return fid

    async def _create(self, path: str, how: OpenMode, perm: int) -> Fid:
        names = split_path(path)
        if not names:
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        fid = await self.root.walk(names[:-1])
        try:
            await fid.lcreate(names[-1], how.flags, perm & 0o7777, self.gid)
        except BaseException:
            fid.release()
            raise
        return fid

    async def read_bytes(self, path: str) -> bytes:
        """The whole content of a file."""
        async with await self.open(path, "rb") as f:
            return await f.read()

    async def write_bytes(self, path: str, data: bytes | bytearray | memoryview) -> int:
        """Create or replace a file's content."""
        async with await self.open(path, "wb") as f:
            return await f.write(data)

    async def lock(self, file: RemoteFile, lock_type: int, start: int = 0, length: int = 0,
                   block: bool = False, *, proc_id: int | None = None) -> None:
        """Tlock on an open file (see RemoteFile.lock)."""
        await file.lock(lock_type, start, length, block=block, proc_id=proc_id)

    async def getlock(self, file: RemoteFile, lock_type: int, start: int = 0, length: int = 0,
                      *, proc_id: int | None = None) -> LockInfo:
        """Tgetlock on an open file (see RemoteFile.getlock)."""
        return await file.getlock(lock_type, start, length, proc_id=proc_id)

    # --- directories ----------------------------------------------------

    async def scandir(self, path: str = "") -> list[DirEntry]:
        """Entries of a directory ("." and ".." left out), following readdir cookies."""
        return [entry async for entry in self.iterdir(path)]

    async def iterdir(self, path: str = "") -> AsyncIterator[DirEntry]:
        """Yield the entries of a directory batch by batch, as Treaddir returns them."""
        async with self._walked(path) as fid:
            await fid.lopen(O_RDONLY | O_DIRECTORY)
            offset = 0
            ends: set[int] = set()  # the cookies batches ended on: one per batch
            while True:
                batch = await fid.readdir(offset)
                if not batch:
                    return
                for dirent in batch:
                    if dirent.name not in (".", ".."):
                        yield DirEntry.from_dirent(dirent, path)
                offset = batch[-1].offset
                if offset in ends:  # a server whose cookies go round would list for ever
                    raise OSError(errno.EIO, f"bad Rreaddir: the listing returned to "
                                  f"cookie {offset}")
                ends.add(offset)

    async def listdir(self, path: str = "") -> list[str]:
        """Names in a directory, without "." and ".."."""
        return [entry.name for entry in await self.scandir(path)]

    async def mkdir(self, path: str, mode: int = 0o777) -> None:
        """Tmkdir."""
        async with self._parent(path) as (parent, name):
            await parent.mkdir(name, mode & 0o7777, self.gid)

    async def makedirs(self, path: str, mode: int = 0o777, exist_ok: bool = False) -> None:
        """Make a directory and any missing parents."""
        names = split_path(path)
        for depth in range(1, len(names) + 1):
            partial_path = "/".join(names[:depth])
            try:
                await self.mkdir(partial_path, mode)
            except FileExistsError:
                if depth == len(names) and not exist_ok:
                    raise
                if not (await self.stat(partial_path)).is_dir():
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), partial_path) from None

    async def remove(self, path: str) -> None:
        """Remove a file (Tunlinkat; Tremove if the server lacks it)."""
        await self._unlink(path, 0)

    unlink = remove

    async def rmdir(self, path: str) -> None:
        """Remove an empty directory (Tunlinkat with AT_REMOVEDIR)."""
        await self._unlink(path, AT_REMOVEDIR)

    async def _unlink(self, path: str, flags: int) -> None:
        try:
            async with self._parent(path) as (parent, name):
                await parent.unlinkat(name, flags)
        except OSError as exc:
            if exc.errno != errno.EOPNOTSUPP:
                raise
            with with_path(path):  # the Linux client's fallback: Twalk + Tremove
                fid = await self.root.walk(split_path(path))
                is_dir = bool(fid.qid.type & QTDIR)
                if is_dir != bool(flags & AT_REMOVEDIR):  # what Linux's VFS checks first
                    fid.release()
                    code = errno.EISDIR if is_dir else errno.ENOTDIR
                    raise OSError(code, os.strerror(code)) from None
                await fid.remove()

    async def rmtree(self, path: str) -> None:
        """Remove a directory and everything below it (a file is just removed)."""
        if not (await self.stat(path)).is_dir():
            await self.remove(path)
            return
        for entry in await self.scandir(path):
            kind = entry.type
            if kind == DT_UNKNOWN:
                kind = DT_DIR if (await self.stat(entry.path)).is_dir() else 0
            if kind == DT_DIR:
                await self.rmtree(entry.path)
            else:
                await self.remove(entry.path)
        await self.rmdir(path)

    async def rename(self, old: str, new: str) -> None:
        """Trenameat (Trename if the server lacks it); replaces ``new`` if it exists."""
        try:
            with with_path(old, new):
                async with self._parent(old) as (olddir, oldname), \
                        self._parent(new) as (newdir, newname):
                    with with_path(old, new):
                        await olddir.renameat(oldname, newdir, newname)
        except OSError as exc:
            if exc.errno != errno.EOPNOTSUPP:
                raise
            with with_path(old, new):
                async with self._walked(old) as fid, self._parent(new) as (newdir, newname):
                    with with_path(old, new):
                        await fid.rename(newdir, newname)

    # --- links and special files ----------------------------------------

    async def symlink(self, target: str, path: str) -> None:
        """Make ``path`` a symbolic link to ``target`` (stored as given)."""
        async with self._parent(path) as (parent, name):
            await parent.symlink(name, target, self.gid)

    async def readlink(self, path: str) -> str:
        """The target of a symbolic link."""
        async with self._walked(path) as fid:
            return await fid.readlink()

    async def link(self, src: str, dst: str) -> None:
        """Make ``dst`` a hard link to ``src`` (Tlink)."""
        async with self._walked(src) as fid, self._parent(dst) as (parent, name):
            with with_path(src, dst):
                await parent.link(fid, name)

    async def mknod(self, path: str, mode: int = 0o600, device: int = 0) -> None:
        """Tmknod: a FIFO, socket or device node (mode includes the S_IF* type)."""
        async with self._parent(path) as (parent, name):
            await parent.mknod(name, mode, os.major(device), os.minor(device), self.gid)

    # --- attributes -----------------------------------------------------

    async def stat(self, path: str) -> StatResult:
        """Tgetattr with every field requested; a symbolic link is not followed."""
        async with self._walked(path) as fid:
            return StatResult.from_rgetattr(await fid.getattr())

    async def statfs(self, path: str = "") -> StatfsResult:
        """Tstatfs of the file system holding ``path``."""
        async with self._walked(path) as fid:
            return StatfsResult.from_rstatfs(await fid.statfs())

    async def chmod(self, path: str, mode: int) -> None:
        """Set permission bits (Tsetattr MODE)."""
        async with self._walked(path) as fid:
            await fid.setattr(SETATTR_MODE, mode=mode & 0o7777)

    async def chown(self, path: str, uid: int, gid: int) -> None:
        """Set owner and group; -1 leaves one unchanged (Tsetattr UID/GID)."""
        valid = (SETATTR_UID if uid != -1 else 0) | (SETATTR_GID if gid != -1 else 0)
        async with self._walked(path) as fid:
            await fid.setattr(valid, uid=max(uid, 0), gid=max(gid, 0))

    async def truncate(self, path: str, size: int) -> None:
        """Set the size of a file (Tsetattr SIZE)."""
        async with self._walked(path) as fid:
            await fid.setattr(SETATTR_SIZE, size=size)

    async def utime(self, path: str, times: tuple[float, float] | None = None, *,
                    ns: tuple[int, int] | None = None) -> None:
        """Set atime and mtime like os.utime; neither given means the server's now."""
        valid = SETATTR_ATIME | SETATTR_MTIME
        atime_ns = mtime_ns = 0
        if times is not None and ns is not None:
            raise ValueError("utime: give times or ns, not both")
        if times is not None:
            ns = (round(times[0] * 1e9), round(times[1] * 1e9))
        if ns is not None:
            valid |= SETATTR_ATIME_SET | SETATTR_MTIME_SET
            atime_ns, mtime_ns = ns
        async with self._walked(path) as fid:
            await fid.setattr(valid, atime_ns=atime_ns, mtime_ns=mtime_ns)

    # --- extended attributes --------------------------------------------

    async def getxattr(self, path: str, name: str) -> bytes:
        """The value of extended attribute ``name`` (ENODATA if absent)."""
        async with self._walked(path) as fid:
            return await self._read_xattr(fid, name)

    async def listxattr(self, path: str) -> list[str]:
        """Names of the extended attributes of ``path``."""
        async with self._walked(path) as fid:
            data = await self._read_xattr(fid, "")
        return [os.fsdecode(name) for name in data.split(b"\0") if name]

    @staticmethod
    async def _read_xattr(fid: Fid, name: str) -> bytes:
        xfid, size = await fid.xattrwalk(name)
        try:
            pieces: list[bytes] = []
            got = 0
            while got < size:
                data = await xfid.read(got, size - got)
                if not data:
                    break
                pieces.append(data)
                got += len(data)
            return b"".join(pieces)
        finally:
            xfid.release()

    async def setxattr(self, path: str, name: str, value: bytes, flags: int = 0) -> None:
        """Set extended attribute ``name`` (flags XATTR_CREATE / XATTR_REPLACE).

        9P2000.L cannot store an empty value: size 0 means remove.
        """
        await self._write_xattr(path, name, value, flags)

    async def removexattr(self, path: str, name: str) -> None:
        """Remove extended attribute ``name`` (a Txattrcreate of size 0)."""
        await self._write_xattr(path, name, b"", 0)

    async def _write_xattr(self, path: str, name: str, value: bytes, flags: int) -> None:
        # The value is set (or removed) when the fid is clunked; Rclunk reports errors.
        with with_path(path):
            fid = await self.root.walk(split_path(path))
            try:
                await fid.xattrcreate(name, len(value), flags)
                view = memoryview(value)
                offset = 0
                while offset < len(view):
                    written = await fid.write(offset, view[offset:offset + fid.io_size])
                    if written <= 0:
                        raise OSError(errno.EIO, "server accepted no bytes of an xattr")
                    offset += written
            except BaseException:
                fid.release()
                raise
            await fid.clunk()
