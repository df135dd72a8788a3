"""Overlay nodes: one per visible file, holding its upper and/or lower layer node.

A node is shared by every fid that reaches the same name (each directory keeps
a weak cache of its children), so a copy-up made through one fid is seen by
all the others, and a file is never copied up twice.
"""

from __future__ import annotations

import asyncio
import errno
import stat
import weakref
from typing import TYPE_CHECKING

from ninep.vfs.node import Attr, DirEntry, Handle, Node, OpenFlags, SetAttr, StatFs

from .listing import CookieCodec, listing_end, read_merged
from .markers import (
    WORK_DIR,
    is_private_xattr,
    is_whiteout,
    make_whiteout,
    set_opaque,
    walk_or_none,
)

if TYPE_CHECKING:
    from .backend import OverlayBackend

__all__ = ["OverlayDir", "OverlayDirHandle", "OverlayHandle", "OverlayNode"]



class OverlayNode(Node):
    """A file, symlink or special file: in the upper layer, or still only in the lower one."""

    def __init__(self, fs: OverlayBackend, parent: OverlayDir | None, name: str,
                 upper: Node | None, lower: Node | None, ino: int) -> None:
        self.fs, self.parent, self.name = fs, parent, name
        self.upper, self.lower, self.ino = upper, lower, ino
        self.removed = False  # its name was unlinked or renamed over
        self.copying: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        where = "upper" if self.upper is not None else "lower"
        return f"<{type(self).__name__} {self.name!r} {where} ino={self.ino:#x}>"

    @property
    def layer(self) -> Node:
        """The node that holds this file's current data and attributes."""
        layer = self.upper if self.upper is not None else self.lower
        assert layer is not None
        return layer

    def peek_attr(self) -> Attr | None:
        attr = self.layer.peek_attr()
        return None if attr is None else self._adjust(attr)

    async def getattr(self) -> Attr:
        return self._adjust(await self.layer.getattr())

    def _adjust(self, a: Attr) -> Attr:
        return Attr(self.ino, a.mode, a.uid, a.gid, a.nlink, a.size, a.atime_ns, a.mtime_ns,
                    a.ctime_ns, a.rdev, a.blocks, a.blksize, a.btime_ns, a.gen, a.data_version)

    async def copy_up(self, with_data: bool = True) -> Node:
        if self.upper is None:
            await self.fs.copy_up(self, with_data)
        assert self.upper is not None
        return self.upper

    async def setattr(self, changes: SetAttr) -> None:
        # Truncating to zero copies no data (overlayfs does the same for O_TRUNC).
        upper = await self.copy_up(with_data=changes.size != 0)
        await upper.setattr(changes)

    async def open(self, flags: OpenFlags) -> Handle:
        attr = self.layer.peek_attr() or await self.layer.getattr()
        regular = stat.S_ISREG(attr.mode)
        if regular and flags.modifies:  # overlayfs copies special files up only on setattr
            await self.copy_up(with_data=not flags.truncates)
        if self.upper is not None:
            return OverlayHandle(self, await self.upper.open(flags), on_lower=False)
        assert self.lower is not None
        return OverlayHandle(self, await self.lower.open(flags), on_lower=regular)

    async def readlink(self) -> str:
        return await self.layer.readlink()

    async def statfs(self) -> StatFs:
        return await self.fs.upper.root.statfs()  # overlayfs reports the upper file system

    async def xattr_get(self, name: str) -> bytes:
        if is_private_xattr(name):
            raise OSError(errno.ENODATA, "no such attribute", name)
        return await self.layer.xattr_get(name)

    async def xattr_list(self) -> list[str]:
        return [n for n in await self.layer.xattr_list() if not is_private_xattr(n)]

    async def xattr_set(self, name: str, value: bytes, flags: int) -> None:
        if is_private_xattr(name):
            raise OSError(errno.EPERM, "attribute reserved for the overlay", name)
        upper = await self.copy_up()
        await upper.xattr_set(name, value, flags)

    async def xattr_remove(self, name: str) -> None:
        if is_private_xattr(name):
            raise OSError(errno.EPERM, "attribute reserved for the overlay", name)
        if self.upper is None:
            await self.layer.xattr_get(name)  # ENODATA before any copy-up
        upper = await self.copy_up()
        await upper.xattr_remove(name)


class OverlayDir(OverlayNode):
    """A directory: upper only, lower only (not yet copied up), or merged from both.

    ``lower`` is None for an opaque directory: the lower one of that name is hidden.
    """

    def __init__(self, fs: OverlayBackend, parent: OverlayDir | None, name: str,
                 upper: Node | None, lower: Node | None, ino: int) -> None:
        super().__init__(fs, parent, name, upper, lower, ino)
        self.children: weakref.WeakValueDictionary[str, OverlayNode] = (
            weakref.WeakValueDictionary())
        self.cookies = CookieCodec()
        self.version = 0  # moves while the entries change (OverlayBackend.changing)
        self._lower_nlink: int | None = None

    def peek_attr(self) -> Attr | None:
        if self.upper is not None and self.lower is not None and self._lower_nlink is None:
            return None
        return super().peek_attr()

    async def getattr(self) -> Attr:
        if self.upper is not None and self.lower is not None and self._lower_nlink is None:
            self._lower_nlink = (await self.lower.getattr()).nlink
        return await super().getattr()

    def _adjust(self, a: Attr) -> Attr:
        attr = super()._adjust(a)
        if self.upper is not None:
            if self.parent is None and self.fs.work_dir_exists():
                attr.nlink -= 1  # the hidden work directory
            if self.lower is not None and (self._lower_nlink or 0) > 2:
                attr.nlink = 1  # overlayfs: a merged directory with subdirectories, not counted
        return attr

    async def open(self, flags: OpenFlags) -> Handle:
        if not flags.read_only_access or flags.truncates:
            raise OSError(errno.EISDIR, "is a directory")
        return OverlayDirHandle()

    async def walk(self, name: str) -> Node:
        if name == "..":
            return self.parent or self
        if name == ".":
            return self
        return await self.lookup(name)

    async def lookup(self, name: str) -> OverlayNode:
        """The visible child ``name``; ENOENT when absent or whited out."""
        if (self.parent is None and name == WORK_DIR) or self.removed:
            raise OSError(errno.ENOENT, "no such file or directory", name)
        while True:
            node = self.children.get(name)
            if node is not None:
                return node
            version = self.version
            upper = await walk_or_none(self.upper, name) if self.upper is not None else None
            if upper is not None and await is_whiteout(upper):
                raise OSError(errno.ENOENT, "no such file or directory", name)
            lower = await walk_or_none(self.lower, name) if self.lower is not None else None
            if upper is None and lower is None:
                raise OSError(errno.ENOENT, "no such file or directory", name)
            node = await self.fs.make_node(self, name, upper, lower)
            if self.version == version:  # else the layers changed while we read them
                return self.children.setdefault(name, node)  # or another lookup won

    async def lookup_or_none(self, name: str) -> OverlayNode | None:
        try:
            return await self.lookup(name)
        except FileNotFoundError:
            return None

    async def readdir(self, cookie: int, count: int) -> list[DirEntry]:
        if self.removed:  # as on Linux: a removed directory lists nothing, whatever lay below
            return []
        return await read_merged(self, cookie, count)

    async def listing_end(self) -> int | None:
        return await listing_end(self)

    async def is_empty(self) -> bool:
        """Empty as the client sees it (whiteouts do not count)."""
        return not await read_merged(self, 0, 1)

    # --- making entries ---------------------------------------------------

    async def _make_room(self, name: str) -> Node | None:
        """Under the lock: EEXIST when ``name`` is visible; remove a whiteout under it.

        Returns the lower node of that name, which a new directory must hide.
        """
        assert self.upper is not None
        if self.parent is None and name == WORK_DIR:
            raise OSError(errno.EPERM, "name reserved for the overlay", name)
        if await self.lookup_or_none(name) is not None:
            raise OSError(errno.EEXIST, "file exists", name)
        if await walk_or_none(self.upper, name) is not None:  # a whiteout
            await self.upper.unlink(name, False)
        return await walk_or_none(self.lower, name) if self.lower is not None else None

    async def _writable_for(self, name: str) -> Node:
        """This directory's upper copy, made only once ``name`` is known to be free
        (Linux answers EEXIST before overlayfs is asked, so nothing is copied up)."""
        if await self.lookup_or_none(name) is not None:
            raise OSError(errno.EEXIST, "file exists", name)
        return await self.copy_up()

    async def _adopt(self, name: str, upper: Node) -> OverlayNode:
        node = await self.fs.new_upper_node(self, name, upper)
        self.children[name] = node
        return node

    async def create(self, name: str, flags: OpenFlags, mode: int, uid: int,
                     gid: int) -> tuple[Node, Handle]:
        where = await self._writable_for(name)
        async with self.fs.changing(self):
            await self._make_room(name)
            upper, handle = await where.create(name, flags, mode, uid, gid)
            node = await self._adopt(name, upper)
        return node, OverlayHandle(node, handle, on_lower=False)

    async def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Node:
        where = await self._writable_for(name)
        async with self.fs.changing(self):
            hidden = await self._make_room(name)
            upper = await where.mkdir(name, mode, uid, gid)
            if hidden is not None and stat.S_ISDIR((await hidden.getattr()).mode):
                try:  # overlayfs: a directory made over a whiteout is opaque
                    await set_opaque(upper)
                except OSError:
                    await where.unlink(name, True)
                    raise
            return await self._adopt(name, upper)

    async def symlink(self, name: str, target: str, uid: int, gid: int) -> Node:
        where = await self._writable_for(name)
        async with self.fs.changing(self):
            await self._make_room(name)
            return await self._adopt(name, await where.symlink(name, target, uid, gid))

    async def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> Node:
        if stat.S_ISCHR(mode) and rdev == 0:
            raise OSError(errno.EPERM, "a 0/0 character device is an overlay whiteout", name)
        where = await self._writable_for(name)
        async with self.fs.changing(self):
            await self._make_room(name)
            return await self._adopt(name, await where.mknod(name, mode, rdev, uid, gid))

    async def link(self, name: str, target: Node) -> None:
        if not isinstance(target, OverlayNode) or target.fs is not self.fs:
            raise OSError(errno.EXDEV, "link across file systems", name)
        if isinstance(target, OverlayDir):
            raise OSError(errno.EPERM, "hard link to a directory", name)
        if await self.lookup_or_none(name) is not None:
            raise OSError(errno.EEXIST, "file exists", name)
        source = await target.copy_up()  # overlayfs links the upper copy
        where = await self.copy_up()
        async with self.fs.changing(self):
            await self._make_room(name)
            await where.link(name, source)
            self.children[name] = OverlayNode(self.fs, self, name, source, None, target.ino)

    # --- removing and moving ------------------------------------------------

    async def _victim(self, name: str, is_dir: bool) -> OverlayNode:
        node = await self.lookup(name)
        if is_dir and not isinstance(node, OverlayDir):
            raise OSError(errno.ENOTDIR, "not a directory", name)
        if not is_dir and isinstance(node, OverlayDir):
            raise OSError(errno.EISDIR, "is a directory", name)
        if isinstance(node, OverlayDir) and not await node.is_empty():
            raise OSError(errno.ENOTEMPTY, "directory not empty", name)
        return node

    async def unlink(self, name: str, is_dir: bool) -> None:
        await self._victim(name, is_dir)
        await self.copy_up()
        async with self.fs.changing(self):
            node = await self._victim(name, is_dir)  # again: things may have moved meanwhile
            await self._remove_upper(name, node)
            await self._whiteout_if_lower(name)
            self._forget(name, node)

    async def _remove_upper(self, name: str, node: OverlayNode) -> None:
        """Take ``node``'s upper entry ``name`` away (after its hidden whiteouts, for a dir)."""
        if node.upper is None:
            return
        assert self.upper is not None
        if isinstance(node, OverlayDir):
            await node.purge_whiteouts()
        else:
            attr = await node.upper.getattr()
            self.fs.forget_origin(attr.ino, attr.nlink)
        await self.upper.unlink(name, isinstance(node, OverlayDir))

    async def _whiteout_if_lower(self, name: str) -> None:
        if self.lower is not None and await walk_or_none(self.lower, name) is not None:
            assert self.upper is not None
            await make_whiteout(self.upper, name)

    def _forget(self, name: str, node: OverlayNode) -> None:
        node.removed = True
        if self.children.get(name) is node:
            del self.children[name]

    async def purge_whiteouts(self) -> None:
        """Empty this (client-empty) upper directory of whiteouts so the upper can remove it."""
        assert self.upper is not None
        cookie, names = 0, []
        while batch := await self.upper.readdir(cookie, 256):
            names += [e.name for e in batch]
            cookie = batch[-1].cookie
        for name in names:
            child = await walk_or_none(self.upper, name)
            if child is not None and await is_whiteout(child):
                await self.upper.unlink(name, False)

    async def rename(self, oldname: str, newdir: Node, newname: str) -> None:
        if not isinstance(newdir, OverlayDir) or newdir.fs is not self.fs:
            raise OSError(errno.EXDEV, "rename across file systems", newname)
        while True:  # again only if another request changed either name meanwhile
            node = await self.lookup(oldname)
            if isinstance(node, OverlayDir) and node.lower is not None:
                # overlayfs without redirect_dir does the same; mv then copies and deletes.
                raise OSError(errno.EXDEV, "a directory of the lower layer cannot be renamed",
                              oldname)
            dst = await newdir.lookup_or_none(newname)
            if dst is node or await _same_upper_file(node, dst):
                return  # one file under both names: POSIX says do nothing
            await self._check_rename(node, newdir, dst, newname)  # before any copy-up
            await node.copy_up()
            target = await newdir.copy_up()
            async with self.fs.changing(self, newdir):
                if (await self.lookup(oldname) is not node
                        or await newdir.lookup_or_none(newname) is not dst):
                    continue
                await self._check_rename(node, newdir, dst, newname)
                hidden = await newdir._make_way(newname, dst)
                assert self.upper is not None and node.upper is not None
                await self.upper.rename(oldname, target, newname)
                if isinstance(node, OverlayDir) and hidden:
                    await set_opaque(node.upper)  # else the lower directory there would show
                await self._whiteout_if_lower(oldname)
                self._move(oldname, node, newdir, newname)
                return

    async def _check_rename(self, node: OverlayNode, newdir: OverlayDir,
                            dst: OverlayNode | None, newname: str) -> None:
        moving_dir = isinstance(node, OverlayDir)
        if moving_dir:
            ancestor: OverlayDir | None = newdir
            while ancestor is not None:
                if ancestor is node:
                    raise OSError(errno.EINVAL, "directory into its own subtree", newname)
                ancestor = ancestor.parent
        if dst is None:
            return
        if moving_dir and not isinstance(dst, OverlayDir):
            raise OSError(errno.ENOTDIR, "not a directory", newname)
        if not moving_dir and isinstance(dst, OverlayDir):
            raise OSError(errno.EISDIR, "is a directory", newname)
        if isinstance(dst, OverlayDir) and not await dst.is_empty():
            raise OSError(errno.ENOTEMPTY, "directory not empty", newname)

    async def _make_way(self, name: str, dst: OverlayNode | None) -> bool:
        """Clear the upper entry ``name`` for a rename to land; True if a lower dir is there."""
        assert self.upper is not None
        if self.parent is None and name == WORK_DIR:
            raise OSError(errno.EPERM, "name reserved for the overlay", name)
        if dst is not None:
            if dst.upper is not None:
                await self._remove_upper(name, dst)
            self._forget(name, dst)
        elif await walk_or_none(self.upper, name) is not None:  # a whiteout
            await self.upper.unlink(name, False)
        lower = await walk_or_none(self.lower, name) if self.lower is not None else None
        return lower is not None and stat.S_ISDIR((await lower.getattr()).mode)

    def _move(self, oldname: str, node: OverlayNode, newdir: OverlayDir, newname: str) -> None:
        if self.children.get(oldname) is node:
            del self.children[oldname]
        newdir.children[newname] = node
        node.parent, node.name = newdir, newname


async def _same_upper_file(node: OverlayNode, other: OverlayNode | None) -> bool:
    """Two names of one upper file (hard links)."""
    if other is None or node.upper is None or other.upper is None:
        return False
    if node.upper is other.upper:
        return True
    mine, theirs = await node.upper.getattr(), await other.upper.getattr()
    return not stat.S_ISDIR(mine.mode) and mine.ino == theirs.ino


class OverlayHandle(Handle):
    """An open file of either layer.

    A read-only handle opened before a copy-up moves to the upper copy at its
    next read, as overlayfs has done since Linux 4.19 ("has it been copied up
    since we'd opened it?" in ovl_real_fdget_meta), so it sees later writes.
    """

    def __init__(self, node: OverlayNode, inner: Handle, on_lower: bool) -> None:
        self.node, self.inner, self.on_lower = node, inner, on_lower

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        if self.on_lower and self.node.upper is not None and not self.node.removed:
            await self._follow_copy_up(self.node.upper)
        return await self.inner.read(offset, size)

    async def _follow_copy_up(self, upper: Node) -> None:
        fresh = await upper.open(OpenFlags.READ)
        if not self.on_lower:  # another read switched meanwhile
            await fresh.close()
            return
        old, self.inner, self.on_lower = self.inner, fresh, False
        await old.close()

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        return await self.inner.write(offset, data)

    async def fsync(self, datasync: bool) -> None:
        await self.inner.fsync(datasync)

    async def close(self) -> None:
        await self.inner.close()


class OverlayDirHandle(Handle):
    """An open directory: listings go through the node, so there is nothing to hold."""

    async def read(self, offset: int, size: int) -> bytes:
        raise OSError(errno.EISDIR, "is a directory")
