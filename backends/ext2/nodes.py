"""The Node and Handle layer of the ext2 backend: the backend contract over FileSystem.

Each operation is one synchronous call into FileSystem, run by the image's
Worker (worker.py): inline or in the image's thread, never interleaved. Only
what reads memory alone (attributes, statfs, a listing's end) skips it.
"""

from __future__ import annotations

import asyncio
import errno
import stat
import struct
import time
import weakref

from ninep.vfs.node import Attr, DirEntry, Handle, Node, OpenFlags, SetAttr, StatFs, apply_setattr
from ninep.vfs.operands import PATH_MAX
from ninep.wire.constants import (
    XATTR_CREATE,
    XATTR_REPLACE,
    XATTR_SIZE_MAX,
)

from . import attrs
from .dirops import Ext2DirOps
from .fs import FREE_STEP, FileSystem
from .inode import Inode, check_id, decode_rdev, encode_rdev
from .xattr import fits_a_block, split_name

__all__ = ["EXT2_SUPER_MAGIC", "Ext2Handle", "Ext2Node", "NodeTable"]

EXT2_SUPER_MAGIC = 0xEF53
#: Writes of a host image up to this size run inline while the image's thread is idle.
INLINE_WRITE = 64 << 10


def _erofs() -> OSError:
    return OSError(errno.EROFS, "read-only file system")


class NodeTable:
    """One Node per live inode, so open counts are shared by every path to a file."""

    def __init__(self, fs: FileSystem, hide_lost_found: bool) -> None:
        self.fs = fs
        self.hide_lost_found = hide_lost_found
        self.live: weakref.WeakValueDictionary[int, Ext2Node] = weakref.WeakValueDictionary()

    def node(self, ino: int) -> Ext2Node:
        inode = self.fs.inode(ino)
        node = self.live.get(ino)
        if node is None or node.inode is not inode:
            node = self.live[ino] = Ext2Node(self, inode)
        return node


class Ext2Node(Node):
    """A file, directory, symlink or special file of an ext2 image."""

    def __init__(self, table: NodeTable, inode: Inode) -> None:
        self.table, self.fs, self.inode = table, table.fs, inode
        self.opens = 0

    # --- attributes -----------------------------------------------------------

    def peek_attr(self) -> Attr:
        return self._attr()

    async def getattr(self) -> Attr:
        return self._attr()

    def _attr(self) -> Attr:
        i = self.inode
        rdev = decode_rdev(i.block) if stat.S_ISCHR(i.mode) or stat.S_ISBLK(i.mode) else 0
        a, m, c = i.atime_ns, i.mtime_ns, i.ctime_ns
        if i.extra_isize < 16:  # whole seconds on disk: report what a remount will show
            a, m, c = a - a % 10**9, m - m % 10**9, c - c % 10**9
        return Attr(i.ino, i.mode, i.uid, i.gid, i.links, i.size, a, m, c, rdev, i.blocks,
                    self.fs.block_size, i.crtime_ns, i.generation)

    def _writable(self) -> None:
        if self.fs.read_only:
            raise _erofs()
        if self.inode.dead:  # a fid kept past the last close of an unlinked file
            raise OSError(errno.ENOENT, "file was deleted")

    async def setattr(self, changes: SetAttr) -> None:
        self._writable()
        i = self.inode
        for owner in (changes.uid, changes.gid):
            if owner is not None:
                check_id(owner)
        if changes.size is not None:
            if i.is_dir:
                raise OSError(errno.EISDIR, "is a directory")
            if not stat.S_ISREG(i.mode):
                raise OSError(errno.EINVAL, "not a regular file")
            if changes.size < 0:
                raise OSError(errno.EINVAL, "negative size")
            await self._shrink_in_steps(changes.size)
        await self.fs.worker.call(self._apply_setattr, changes)

    def _apply_setattr(self, changes: SetAttr) -> None:
        self._writable()  # again where it runs: a queued unlink and close may have freed it
        i = self.inode
        now = time.time_ns()
        changed = changes.ctime
        if changes.size is not None:
            self.fs.truncate(i, changes.size)
            changed = True
        apply_setattr(i, changes, now, changed)
        i.clamp_times()
        self.fs.dirty(i)

    async def _shrink_in_steps(self, size: int) -> None:
        """Cut a big file down in bounded steps, yielding to other connections between them."""
        while await self.fs.worker.call(self._shrink_step, size):
            await asyncio.sleep(0)

    def _shrink_step(self, size: int) -> bool:
        """One step toward ``size``, measured where it runs (an operation queued before
        it may have changed the file); False once the rest is small."""
        i, fs = self.inode, self.fs
        step = FREE_STEP * fs.block_size
        if i.size - size > step and i.blocks // (fs.block_size // 512) > FREE_STEP:
            fs.truncate(i, i.size - step)
            return True
        return False

    def _touch_atime(self) -> None:
        """relatime: only when atime is older than mtime or ctime."""
        i = self.inode
        if not self.fs.read_only and (i.atime_ns <= i.mtime_ns or i.atime_ns <= i.ctime_ns):
            i.atime_ns = time.time_ns()
            self.fs.dirty(i)

    async def statfs(self) -> StatFs:
        sb, alloc = self.fs.sb, self.fs.alloc
        free = sb.get("free_blocks_count") + len(alloc.pending_blocks)  # quarantined: free
        uuid = sb.raw[104:120]
        fsid = struct.unpack("<Q", bytes(a ^ b for a, b in zip(uuid[:8], uuid[8:], strict=True)))[0]
        return StatFs(self.fs.block_size, sb.get("blocks_count"), free,
                      max(free - sb.get("r_blocks_count"), 0), sb.get("inodes_count"),
                      sb.get("free_inodes_count") + len(alloc.pending_inodes), fsid=fsid, namelen=255,
                      fstype=EXT2_SUPER_MAGIC)

    # --- files ----------------------------------------------------------------

    async def open(self, flags: OpenFlags) -> Handle:
        mode = self.inode.mode
        if self.inode.dead:
            raise OSError(errno.ENOENT, "file was deleted")
        if stat.S_ISLNK(mode):
            raise OSError(errno.ELOOP, "is a symbolic link")
        if stat.S_ISDIR(mode):
            if not flags.read_only_access or flags.truncates:
                raise OSError(errno.EISDIR, "is a directory")
            return Ext2Handle(self, True, False, False)
        if not stat.S_ISREG(mode):
            raise OSError(errno.ENXIO, "special files cannot be opened on an ext2 image")
        if flags.directory:
            raise OSError(errno.ENOTDIR, "not a directory")
        if flags.modifies:
            self._writable()
        if flags.truncates:
            await self.fs.worker.call(self.fs.truncate, self.inode, 0)
        return Ext2Handle(self, flags.reads, flags.writes, flags.appends)

    async def readlink(self) -> str:
        i = self.inode
        if not stat.S_ISLNK(i.mode):
            raise OSError(errno.EINVAL, "not a symlink")
        if i.size >= PATH_MAX:  # a damaged image: no target of this length was ever stored
            raise OSError(errno.ENAMETOOLONG, f"symlink of {i.size} bytes")
        if i.is_fast_symlink(self.fs.block_size):
            raw = struct.pack("<15I", *i.block)[:i.size]
        else:
            raw = bytes(await self.fs.worker.call(self.fs.read, i, 0, i.size))
        return raw.decode("utf-8", "surrogateescape")

    def release_if_unused(self) -> None:
        if self.inode.links == 0 and self.opens == 0 and not self.inode.is_dir \
                and not self.inode.dead:
            self.fs.release_soon(self.inode)

    # --- xattrs ---------------------------------------------------------------

    async def xattr_get(self, name: str) -> bytes:
        found = await self.fs.worker.call(attrs.load, self.fs, self.inode)
        try:
            return found[name]
        except KeyError:
            raise OSError(errno.ENODATA, "no such attribute", name) from None

    async def xattr_list(self) -> list[str]:
        return list(await self.fs.worker.call(attrs.load, self.fs, self.inode))

    async def xattr_set(self, name: str, value: bytes, flags: int) -> None:
        self._writable()
        await self.fs.worker.call(self._xattr_set, name, value, flags)

    def _xattr_set(self, name: str, value: bytes, flags: int) -> None:
        self._writable()
        if flags & ~(XATTR_CREATE | XATTR_REPLACE):
            raise OSError(errno.EINVAL, "bad xattr flags")
        _, suffix = split_name(name)  # the name's errnos first: setxattr copies it first
        if len(value) > XATTR_SIZE_MAX:
            raise OSError(errno.E2BIG, "xattr value too large", name)
        if not fits_a_block(suffix, len(value), self.fs.block_size):
            raise OSError(errno.ERANGE, "xattr too large for a block", name)
        current = attrs.load(self.fs, self.inode)
        if name not in current and flags & XATTR_REPLACE:
            raise OSError(errno.ENODATA, "no such attribute", name)
        if name in current and flags & XATTR_CREATE:
            raise OSError(errno.EEXIST, "attribute exists", name)
        current[name] = bytes(value)
        attrs.store(self.fs, self.inode, current)
        self.inode.ctime_ns = time.time_ns()

    async def xattr_remove(self, name: str) -> None:
        self._writable()
        await self.fs.worker.call(self._xattr_remove, name)

    def _xattr_remove(self, name: str) -> None:
        self._writable()
        current = attrs.load(self.fs, self.inode)
        if current.pop(name, None) is None:
            raise OSError(errno.ENODATA, "no such attribute", name)
        attrs.store(self.fs, self.inode, current)
        self.inode.ctime_ns = time.time_ns()

    # --- directories ------------------------------------------------------------

    def _dir(self) -> Ext2DirOps:
        return Ext2DirOps(self)  # ENOTDIR for anything but a directory

    async def walk(self, name: str) -> Node:
        return await self.fs.worker.call(lambda: self._dir().walk(name))

    async def readdir(self, cookie: int, count: int) -> list[DirEntry]:
        if cookie < 0:  # a position in the directory: below 0 would index i_block from its end
            raise OSError(errno.EINVAL, "negative directory cookie")
        return await self.fs.worker.call(lambda: self._dir().readdir(cookie, count))

    async def listing_end(self) -> int:
        """The directory's size: a cookie is an entry's byte position plus one, so no
        entry now is above it, and a new one either fills a gap below it or goes
        into a block appended past it (entries never move: a removal only merges
        its record into the one before)."""
        if not self.inode.is_dir:
            raise OSError(errno.ENOTDIR, "not a directory")
        return self.inode.size

    async def create(self, name: str, flags: OpenFlags, mode: int, uid: int,
                     gid: int) -> tuple[Node, Handle]:
        node = await self.fs.worker.call(
            lambda: self._dir().make(name, stat.S_IFREG | (mode & 0o7777), uid, gid))
        return node, Ext2Handle(node, flags.reads, flags.writes, flags.appends)

    async def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Node:
        return await self.fs.worker.call(lambda: self._dir().mkdir(name, mode, uid, gid))

    async def symlink(self, name: str, target: str, uid: int, gid: int) -> Node:
        return await self.fs.worker.call(lambda: self._dir().symlink(name, target, uid, gid))

    async def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> Node:
        kind = stat.S_IFMT(mode)
        if kind in (0, stat.S_IFREG):  # Linux mknod makes an empty regular file
            kind = stat.S_IFREG
        elif kind == stat.S_IFDIR:
            raise OSError(errno.EPERM, "mknod cannot make a directory", name)
        elif kind not in (stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK):
            raise OSError(errno.EINVAL, "unknown file type", name)
        # Checked before anything changes: a number the inode cannot hold would
        # otherwise only fail when the checkpoint packs it. Linux ignores the
        # device number of anything but a device.
        device = encode_rdev(rdev) if kind in (stat.S_IFCHR, stat.S_IFBLK) else None
        return await self.fs.worker.call(self._mknod, name, kind | (mode & 0o7777), uid, gid,
                                         device)

    def _mknod(self, name: str, mode: int, uid: int, gid: int,
               device: tuple[int, int] | None) -> Ext2Node:
        node = self._dir().make(name, mode, uid, gid)
        if device is not None:
            node.inode.block[0], node.inode.block[1] = device
        return node

    async def link(self, name: str, target: Node) -> None:
        await self.fs.worker.call(lambda: self._dir().link(name, target))

    async def unlink(self, name: str, is_dir: bool) -> None:
        await self.fs.worker.call(lambda: self._dir().unlink(name, is_dir))

    async def rename(self, oldname: str, newdir: Node, newname: str) -> None:
        await self.fs.worker.call(lambda: self._dir().rename(oldname, newdir, newname))


class Ext2Handle(Handle):
    """An open file or directory of an ext2 image; the access mode is fixed at open."""

    def __init__(self, node: Ext2Node, readable: bool, writable: bool, append: bool) -> None:
        self.node, self.readable, self.writable, self.append = node, readable, writable, append
        self.closed = False
        node.opens += 1

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        if self.closed or not self.readable:
            raise OSError(errno.EBADF, "not open for reading")
        inode = self.node.inode
        if inode.is_dir:
            raise OSError(errno.EISDIR, "is a directory")
        if offset < 0 or size < 0:
            raise OSError(errno.EINVAL, "negative offset or size")
        worker = self.node.fs.worker
        if worker.inline and worker.idle:
            try:  # cached data inline, as passthrough reads it; the rest in the thread
                return self._read(offset, size, True)
            except BlockingIOError:
                pass
        return await worker.offload(self._read, offset, size, False)

    def _read(self, offset: int, size: int, nowait: bool) -> bytes | memoryview:
        self.node._touch_atime()
        return self.node.fs.read(self.node.inode, offset, size, nowait)

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        if self.closed or not self.writable:
            raise OSError(errno.EBADF, "not open for writing")
        if offset < 0:
            raise OSError(errno.EINVAL, "negative offset")
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        worker = self.node.fs.worker
        if len(view) <= INLINE_WRITE and worker.inline and worker.idle:
            # a small copy into the page cache: cheaper than the thread hop (bench/README)
            return self._write(offset, view)
        return await worker.offload(self._write, offset, view)

    def _write(self, offset: int, view: memoryview) -> int:
        inode = self.node.inode
        if self.append:  # O_APPEND: at the end as it is when the write runs
            offset = inode.size
        return self.node.fs.write(inode, offset, view)

    async def fsync(self, datasync: bool) -> None:
        if not self.node.fs.read_only:
            await self.node.fs.worker.offload(self.node.fs.checkpoint, True)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.node.opens -= 1
            await self.node.fs.worker.call(self.node.release_if_unused)

