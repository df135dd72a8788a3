"""Nodes and handles of the 9p backend: each contract operation as the matching 9P request."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import weakref
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from ninep.clients import AT_REMOVEDIR, XATTR_REPLACE, Fid
from ninep.clients.fid import GetattrFields
from ninep.clients.wire import (
    QTDIR,
    QTSYMLINK,
    SETATTR_ATIME,
    SETATTR_ATIME_SET,
    SETATTR_CTIME,
    SETATTR_GID,
    SETATTR_MODE,
    SETATTR_MTIME,
    SETATTR_MTIME_SET,
    SETATTR_SIZE,
    SETATTR_UID,
)
from ninep.vfs.node import UTIME_NOW, Attr, DirEntry, Handle, Node, OpenFlags, SetAttr, StatFs
from ninep.wire.messages import Qid

from .handle import RemoteHandle
from .link import Link, remote_errors

__all__ = ["RemoteHandle", "RemoteNode"]

T = TypeVar("T")

_NS = 1_000_000_000
# Cookies below this pass through as the back server gave them; larger ones (ext4's
# 63-bit hash positions behind diod) are numbered by the mount above it, because the
# contract keeps cookies below 2**62 (vfs/ adds its own for "." and "..").
_COOKIE_PASS = 1 << 61
_LISTING_END = (1 << 62) - 1
_XATTR_CHUNK = 65536


def _qid_mode(qid: Qid) -> int:
    if qid.type & QTDIR:
        return stat.S_IFDIR
    if qid.type & QTSYMLINK:
        return stat.S_IFLNK
    return stat.S_IFREG


def _release(*fids: Fid) -> None:
    """A node's fids when the node is dropped: clunked in the background."""
    for fid in fids:
        try:
            fid.release()
        except RuntimeError:  # no event loop left (interpreter exit): the connection goes too
            pass


class Cookies:
    """The mount's numbering of back-server cookies too large to pass through."""

    def __init__(self) -> None:
        self._out: dict[int, int] = {}
        self._in: dict[int, int] = {}

    def outward(self, cookie: int) -> int:
        if cookie < _COOKIE_PASS:
            return cookie
        ours = self._out.get(cookie)
        if ours is None:
            ours = self._out[cookie] = _COOKIE_PASS + len(self._out)
            self._in[ours] = cookie
        return ours

    def inward(self, cookie: int) -> int:
        if cookie < _COOKIE_PASS:
            return cookie
        theirs = self._in.get(cookie)
        if theirs is None:
            raise OSError(errno.EINVAL, f"readdir cookie {cookie} was never handed out")
        return theirs


class RemoteNode(Node):
    """A file of the back server, held by one walked (not opened) fid.

    The fid is clunked when the node is dropped. After a reconnect the node walks
    its path again from the new root and must find the same qid.path; if not, it
    answers EIO from then on (docs/backends.md: what survives a reconnect).
    """

    def __init__(self, backend: RemoteBackendLike, fid: Fid, generation: int,
                 path: tuple[str, ...], mode: int | None = None) -> None:
        self.backend = backend
        self.conn: Link = backend.link
        self.path = path
        self.qid_path = fid.qid.path
        self.mode = _qid_mode(fid.qid) if mode is None else stat.S_IFMT(mode)
        self._fid: Fid | None = fid
        self._generation = generation
        self._dead = False
        self._owns_fid = True
        self._finalizer = weakref.finalize(self, _release, fid)
        self._listing: Fid | None = None
        self._listing_fresh = False
        self._listing_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<RemoteNode /{'/'.join(self.path)} fid={self._fid}>"

    # --- the fid, re-established after a reconnect ----------------------

    async def fid(self) -> Fid:
        _, root, generation = self.conn.current()
        fid = self._fid
        if fid is not None and self._generation == generation:
            return fid
        if self._dead:
            raise OSError(errno.EIO, "stale: the back server restarted and this file could "
                          "not be found again")
        with remote_errors(self.conn):
            try:
                fid = await root.walk(self.path)
            except ConnectionError:
                raise  # lost again: EIO now, another try after the next reconnect
            except OSError:
                fid = None
        if fid is None or fid.qid.path != self.qid_path:
            if fid is not None:
                fid.release()
            self._dead = True
            raise OSError(errno.EIO, "stale: the back server restarted and this file could "
                          "not be found again")
        if self._generation != generation or self._fid is None:
            self._replace(fid, generation)
        else:  # another request re-established it meanwhile
            fid.release()
        return self._fid or fid

    def keep_fid(self) -> None:
        """The fid is not this node's to clunk (the root's belongs to the link)."""
        self._owns_fid = False
        self._arm()

    def _arm(self) -> None:
        """Clunk, when the node is dropped, the fids it holds now."""
        self._finalizer.detach()
        fids = [fid for fid in (self._fid if self._owns_fid else None, self._listing)
                if fid is not None]
        self._finalizer = weakref.finalize(self, _release, *fids)

    def _replace(self, fid: Fid, generation: int) -> None:
        self._fid, self._generation = fid, generation
        self._owns_fid, self._listing = True, None
        self._arm()

    async def call(self, op: Callable[[Fid], Awaitable[T]]) -> T:
        """``op(fid)`` with this node's fid; a lost connection is EIO."""
        fid = await self.fid()
        with remote_errors(self.conn):
            return await op(fid)

    def child(self, fid: Fid, generation: int, name: str, mode: int | None = None) -> RemoteNode:
        path = self.path[:-1] if name == ".." else (self.path if name == "." else
                                                    (*self.path, name))
        return RemoteNode(self.backend, fid, generation, path, mode)

    async def _new_child(self, name: str, mode: int | None = None) -> RemoteNode:
        """Walk to ``name`` just made here: the node of the new file."""
        dirfid = await self.fid()
        generation = self.conn.generation
        with remote_errors(self.conn):
            fid = await dirfid.walk((name,))
        return self.child(fid, generation, name, mode)

    async def _give_owner(self, node: RemoteNode, uid: int, mode: int | None) -> None:
        """Attached as root, make the caller the owner of what it made (9P's creates
        carry a gid but no uid); the mode again, which a chown may strip set-id from."""
        if not self.backend.acts_as_root or uid == 0:
            return
        valid = SETATTR_UID | (SETATTR_MODE if mode is not None else 0)
        await node.call(lambda f: f.setattr(valid, uid=uid, mode=(mode or 0) & 0o7777))

    # --- metadata -------------------------------------------------------

    async def getattr(self) -> Attr:
        if self._fid is None or self._generation != self.conn.generation or not self.conn.up:
            await self.fid()  # the hot path skips this coroutine
        answer: asyncio.Future[Attr] = asyncio.get_running_loop().create_future()

        def done(attr: Attr | OSError) -> None:
            if answer.done():  # the caller was cancelled: the reply changes nothing
                return
            if isinstance(attr, OSError):
                answer.set_exception(attr)
            else:
                answer.set_result(attr)

        if self.getattr_soon(done):
            return await answer
        fid = await self.fid()  # the client would wait (a full window): its awaiting path
        with remote_errors(self.conn):
            return self._attr(GetattrFields.of(await fid.getattr()))

    def getattr_soon(self, done: Callable[[Attr | OSError], None]) -> bool:
        """One Tgetattr answered by a callback (Fid.getattr_soon): the transport's
        Tgetattr path with no Task, and getattr()'s. False while the fid is not of the
        live connection (getattr() walks again), or where the client would wait."""
        conn, fid = self.conn, self._fid
        if fid is None or self._generation != conn.generation or not conn.up:
            return False

        def reply(fields: GetattrFields | OSError) -> None:
            if isinstance(fields, OSError):
                done(conn.failed(fields))
                return
            try:
                attr = self._attr(fields)
            except OSError as exc:  # raised here, it would leave the request unanswered
                done(exc)
                return
            done(attr)

        return fid.getattr_soon(reply)

    def _attr(self, r: GetattrFields) -> Attr:
        # A timespec's nanoseconds are below 10**9: more would carry into seconds that
        # our own Rgetattr could then not hold (int64), and no client could be answered
        if r.atime_nsec >= _NS or r.mtime_nsec >= _NS or r.ctime_nsec >= _NS or \
                r.btime_nsec >= _NS:
            raise OSError(errno.EIO, f"9p backend {self.conn.spec.url}: bad Rgetattr: "
                          "nanoseconds of 10**9 or more")
        self.mode = stat.S_IFMT(r.mode)
        return Attr(self.conn.ino(r.qid_path), r.mode, r.uid, r.gid, r.nlink, r.size,
                    r.atime_sec * _NS + r.atime_nsec, r.mtime_sec * _NS + r.mtime_nsec,
                    r.ctime_sec * _NS + r.ctime_nsec, r.rdev, r.blocks, r.blksize,
                    r.btime_sec * _NS + r.btime_nsec, r.gen, r.data_version)

    async def type_and_ino(self) -> tuple[int, int]:
        # the walk's qid said dir, symlink or other; a getattr since then said more
        return self.mode, self.conn.ino(self.qid_path)

    async def setattr(self, changes: SetAttr) -> None:
        self.conn.changed()
        valid, atime, mtime = 0, 0, 0
        if changes.mode is not None:
            valid |= SETATTR_MODE
        if changes.uid is not None:
            valid |= SETATTR_UID
        if changes.gid is not None:
            valid |= SETATTR_GID
        if changes.size is not None:
            valid |= SETATTR_SIZE
        if changes.atime_ns is not None:
            valid |= SETATTR_ATIME
            if changes.atime_ns != UTIME_NOW:
                valid |= SETATTR_ATIME_SET
                atime = changes.atime_ns
        if changes.mtime_ns is not None:
            valid |= SETATTR_MTIME
            if changes.mtime_ns != UTIME_NOW:
                valid |= SETATTR_MTIME_SET
                mtime = changes.mtime_ns
        if changes.ctime:
            valid |= SETATTR_CTIME
        await self.call(lambda f: f.setattr(
            valid, mode=changes.mode or 0, uid=changes.uid or 0, gid=changes.gid or 0,
            size=changes.size or 0, atime_ns=atime, mtime_ns=mtime))

    async def readlink(self) -> str:
        return await self.call(lambda f: f.readlink())

    async def statfs(self) -> StatFs:
        r = await self.call(lambda f: f.statfs())
        return StatFs(bsize=r.bsize, blocks=r.blocks, bfree=r.bfree, bavail=r.bavail,
                      files=r.files, ffree=r.ffree, fsid=r.fsid, namelen=r.namelen,
                      fstype=r.fstype)

    # --- names ----------------------------------------------------------

    async def walk(self, name: str) -> Node:
        fid = await self.fid()
        generation = self.conn.generation
        # walk(5): the root's ".." is the root; diod walks to the host's parent instead
        names = () if name == ".." and not self.path else (name,)
        with remote_errors(self.conn):
            child = await fid.walk(names)
        return self.child(child, generation, name)

    async def open(self, flags: OpenFlags) -> Handle:
        fid = await self.fid()
        generation = self.conn.generation
        with remote_errors(self.conn):
            opened = await fid.clone()
            try:
                await opened.lopen(flags.for_open())
            except BaseException:
                opened.release()
                raise
        return RemoteHandle(self, opened, generation, flags, self.conn.spec.readahead)

    async def create(self, name: str, flags: OpenFlags, mode: int, uid: int,
                     gid: int) -> tuple[Node, Handle]:
        self.conn.changed()
        dirfid = await self.fid()
        generation = self.conn.generation
        with remote_errors(self.conn):
            opened = await dirfid.clone()
            try:
                # O_EXCL: a create never opens an existing file (diod's Tlcreate would)
                await opened.lcreate(name, flags.for_exclusive_create(), mode, gid)
            except BaseException:
                opened.release()
                raise
        handle = RemoteHandle(self, opened, generation, flags, self.conn.spec.readahead)
        try:
            node = await self._new_child(name, stat.S_IFREG)
            await self._give_owner(node, uid, mode)
        except BaseException:
            await handle.close()
            raise
        handle.node = node
        return node, handle

    async def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Node:
        self.conn.changed()
        await self.call(lambda f: f.mkdir(name, mode, gid))
        node = await self._new_child(name, stat.S_IFDIR)
        await self._give_owner(node, uid, mode)
        return node

    async def symlink(self, name: str, target: str, uid: int, gid: int) -> Node:
        self.conn.changed()
        await self.call(lambda f: f.symlink(name, target, gid))
        node = await self._new_child(name, stat.S_IFLNK)
        await self._give_owner(node, uid, None)
        return node

    async def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> Node:
        self.conn.changed()
        major, minor = os.major(rdev), os.minor(rdev)
        await self.call(lambda f: f.mknod(name, mode, major, minor, gid))
        node = await self._new_child(name, mode)
        await self._give_owner(node, uid, mode)
        return node

    def _same_server(self, other: Node) -> RemoteNode:
        if not isinstance(other, RemoteNode) or other.conn is not self.conn:
            raise OSError(errno.EXDEV, "not on the same 9p import")
        return other

    async def link(self, name: str, target: Node) -> None:
        self.conn.changed()
        source = self._same_server(target)
        target_fid = await source.fid()
        await self.call(lambda f: f.link(target_fid, name))

    async def rename(self, oldname: str, newdir: Node, newname: str) -> None:
        self.conn.changed()
        dest = self._same_server(newdir)
        dest_fid = await dest.fid()
        try:
            await self.call(lambda f: f.renameat(oldname, dest_fid, newname))
        except OSError as exc:
            if exc.errno != errno.EOPNOTSUPP:
                raise
            # diod has no Trenameat: Trename of a fid walked to the name, as v9fs falls back
            moving = await self.call(lambda f: f.walk((oldname,)))
            try:
                with remote_errors(self.conn):
                    await moving.rename(dest_fid, newname)
            finally:
                moving.release()

    async def unlink(self, name: str, is_dir: bool) -> None:
        self.conn.changed()
        try:
            await self.call(lambda f: f.unlinkat(name, AT_REMOVEDIR if is_dir else 0))
        except OSError as exc:
            if exc.errno != errno.EOPNOTSUPP:
                raise
            await self._remove(name, is_dir)

    async def _remove(self, name: str, is_dir: bool) -> None:
        """diod has no Tunlinkat: Tremove of a fid walked to the name (v9fs's fallback),
        after the type check Tunlinkat's flag makes."""
        victim = await self.call(lambda f: f.walk((name,)))
        try:
            with remote_errors(self.conn):
                is_directory = bool(victim.qid.type & QTDIR)
                if is_dir and not is_directory:
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
                if is_directory and not is_dir:
                    raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        except BaseException:
            victim.release()
            raise
        with remote_errors(self.conn):
            await victim.remove()

    # --- listing --------------------------------------------------------

    async def _open_listing(self) -> Fid:
        fid = await self.fid()
        with remote_errors(self.conn):
            listing = await fid.clone()
            try:
                await listing.lopen(0)
            except BaseException:
                listing.release()
                raise
        old, self._listing = self._listing, listing
        if old is not None:
            old.release()
        self._arm()
        return listing

    async def listing_end(self) -> int:
        """A fresh listing fid (the back server bounds its listing when it is opened, as
        this server's vfs/ does), and no bound of our own."""
        if not stat.S_ISDIR(self.mode):
            raise OSError(errno.ENOTDIR, "not a directory")
        async with self._listing_lock:
            await self._open_listing()
            self._listing_fresh = True
        return _LISTING_END

    async def readdir(self, cookie: int, count: int) -> list[DirEntry]:
        if not stat.S_ISDIR(self.mode):
            raise OSError(errno.ENOTDIR, "not a directory")
        cookies = self.backend.cookies
        theirs = cookies.inward(cookie)
        async with self._listing_lock:
            listing = self._listing
            if listing is None or (cookie == 0 and not self._listing_fresh) or \
                    self._generation != self.conn.generation:
                await self.fid()
                listing = await self._open_listing()
            self._listing_fresh = False
            size = min(max(count * 64, 4096), self.conn.current()[0].msize - 24)
            with remote_errors(self.conn):
                dirents = await listing.readdir(theirs, size)
        ino = self.conn.ino
        # vfs/ adds "." and ".."; a server's own (ours, diod's) are left out
        return [DirEntry(d.name, ino(d.qid.path), d.type, cookies.outward(d.offset))
                for d in dirents if d.name not in (".", "..")][:count]

    # --- extended attributes ---------------------------------------------

    async def _xattr_read(self, name: str) -> bytes:
        fid = await self.fid()
        with remote_errors(self.conn):
            xfid, size = await fid.xattrwalk(name)
            try:
                out = bytearray()
                while len(out) < size:
                    piece = await xfid.read(len(out), min(size - len(out), _XATTR_CHUNK))
                    if not piece:
                        break
                    out += piece
            finally:
                xfid.release()
        return bytes(out)

    async def xattr_get(self, name: str) -> bytes:
        return await self._xattr_read(name)

    async def xattr_list(self) -> list[str]:
        data = await self._xattr_read("")
        return [n.decode("utf-8", "surrogateescape") for n in data.split(b"\0") if n]

    async def _xattr_write(self, name: str, value: bytes, flags: int) -> None:
        self.conn.changed()
        fid = await self.fid()
        with remote_errors(self.conn):
            xfid = await fid.clone()
            try:
                await xfid.xattrcreate(name, len(value), flags)
                step = xfid.io_size
                for offset in range(0, len(value), step):
                    await xfid.write(offset, value[offset:offset + step])
            except BaseException:
                xfid.release()
                raise
            await xfid.clunk()  # Linux sets the attribute at this clunk: its errors count

    async def xattr_set(self, name: str, value: bytes, flags: int) -> None:
        await self._xattr_write(name, value, flags)

    async def xattr_remove(self, name: str) -> None:
        await self._xattr_write(name, b"", XATTR_REPLACE)  # how v9fs sends removexattr


class RemoteBackendLike(Protocol):
    """What nodes need of their backend (the package's RemoteBackend)."""

    link: Link
    cookies: Cookies
    acts_as_root: bool
