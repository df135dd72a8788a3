"""Directory operations of the ext2 backend: lookups, listings, and the namespace changes."""

from __future__ import annotations

import errno
import stat
import struct
import time
from typing import TYPE_CHECKING

from ninep.vfs.node import DirEntry, Node

from .dirs import Directory
from .inode import Inode

if TYPE_CHECKING:
    from .nodes import Ext2Node

__all__ = ["Ext2DirOps"]

LINK_MAX = 65000  # ext2's EXT2_LINK_MAX
NAME_MAX = 255  # EXT2_NAME_LEN: a directory entry keeps a name's length in one byte
FAST_SYMLINK_MAX = 59  # i_block holds 60 bytes; the kernel keeps a NUL
_FT_OF_MODE = {stat.S_IFREG: 1, stat.S_IFDIR: 2, stat.S_IFCHR: 3, stat.S_IFBLK: 4,
               stat.S_IFIFO: 5, stat.S_IFSOCK: 6, stat.S_IFLNK: 7}
_DT_OF_FT = {1: 8, 2: 4, 3: 2, 4: 6, 5: 1, 6: 12, 7: 10}
_LOST_FOUND = b"lost+found"
ROOT_INO = 2


def _name(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _check_name(raw: bytes) -> None:
    """A name a directory entry may hold: what Linux's VFS lets reach ext2_add_link.

    vfs/ checks names too; the backend checks again, since a longer name would
    not fit its length byte and '/' or NUL would make an entry e2fsck rejects.
    """
    if raw in (b"", b".", b"..") or b"/" in raw or b"\0" in raw:
        raise OSError(errno.EINVAL, "invalid file name", raw.decode("utf-8", "surrogateescape"))
    if len(raw) > NAME_MAX:
        raise OSError(errno.ENAMETOOLONG, "file name longer than 255 bytes")


def _ft(mode: int) -> int:
    return _FT_OF_MODE.get(stat.S_IFMT(mode), 0)


class Ext2DirOps:
    """The directory side of one Ext2Node (made per call; all state lives in FileSystem)."""

    def __init__(self, node: Ext2Node) -> None:
        if not node.inode.is_dir:  # never trust the caller: entries in a symlink's or a
            # file's blocks are a corrupt image (e2fsck: "Symlink ... is invalid")
            raise OSError(errno.ENOTDIR, "not a directory")
        self.node, self.table, self.fs, self.inode = node, node.table, node.fs, node.inode
        self.dir: Directory = self.fs.directory(node.inode)

    def _ft(self, mode: int) -> int:
        return _ft(mode) if self.fs.filetype else 0

    # --- reading --------------------------------------------------------------

    def walk(self, name: str) -> Ext2Node:
        if name == ".":
            return self.node
        found = self.dir.get(_name(name))
        if found is None:
            raise OSError(errno.ENOENT, "no such file or directory", name)
        return self.table.node(found[0])

    def readdir(self, cookie: int, count: int) -> list[DirEntry]:
        out: list[DirEntry] = []
        hide = self.table.hide_lost_found and self.inode.ino == ROOT_INO
        for raw, ino, ftype, next_cookie in self.dir.listing(cookie):
            if len(out) >= count:
                break
            if raw in (b".", b"..") or (hide and raw == _LOST_FOUND):
                continue
            dtype = _DT_OF_FT.get(ftype, 0)
            if not self.fs.filetype:
                dtype = _DT_OF_FT.get(_ft(self.fs.inode(ino).mode), 0)
            out.append(DirEntry(raw.decode("utf-8", "surrogateescape"), ino, dtype, next_cookie))
        self.node._touch_atime()
        return out

    # --- helpers --------------------------------------------------------------

    def _check_new(self, name: bytes) -> None:
        self.node._writable()
        _check_name(name)
        if self.inode.links == 0:  # Linux: creating in a removed directory is ENOENT
            raise OSError(errno.ENOENT, "directory was removed")
        if self.dir.get(name) is not None:
            raise OSError(errno.EEXIST, "file exists", name.decode("utf-8", "surrogateescape"))

    def _owner_gid(self, gid: int) -> int:
        return self.inode.gid if self.inode.mode & stat.S_ISGID else gid

    def _touch_dir(self, now: int) -> None:
        self.inode.mtime_ns = self.inode.ctime_ns = now
        self.fs.dirty(self.inode)

    def _abandon(self, inode: Inode) -> None:
        """Undo a half-made inode (ENOSPC while giving it blocks or a name)."""
        inode.links = 0
        self.fs.release(inode)

    def _enter(self, name: bytes, inode: Inode) -> None:
        try:
            self.dir.add(name, inode.ino, self._ft(inode.mode), self.fs.goal(self.inode))
        except OSError:
            self._abandon(inode)
            raise
        self._touch_dir(inode.ctime_ns)

    # --- creating -------------------------------------------------------------

    def make(self, name: str, mode: int, uid: int, gid: int) -> Ext2Node:
        """A new non-directory ``name`` of ``mode`` (type bits included)."""
        raw = _name(name)
        self._check_new(raw)
        inode = self.fs.new_inode(self.inode, mode, uid, self._owner_gid(gid))
        self._enter(raw, inode)
        return self.table.node(inode.ino)

    def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Ext2Node:
        raw = _name(name)
        self._check_new(raw)
        if self.inode.links >= LINK_MAX:
            raise OSError(errno.EMLINK, "too many subdirectories", name)
        mode &= 0o1777  # Linux mkdir drops setuid/setgid from the request...
        if self.inode.mode & stat.S_ISGID:
            mode |= stat.S_ISGID  # ...and a setgid parent passes setgid on
        inode = self.fs.new_inode(self.inode, stat.S_IFDIR | mode, uid, self._owner_gid(gid))
        inode.links = 2
        try:
            self.fs.directory(inode).init_block(inode.ino, self.inode.ino, self._ft(inode.mode),
                                                self.fs.goal(inode))
        except OSError:
            self._abandon(inode)
            raise
        self._enter(raw, inode)
        self.inode.links += 1
        return self.table.node(inode.ino)

    def symlink(self, name: str, target: str, uid: int, gid: int) -> Ext2Node:
        raw, data = _name(name), _name(target)
        self._check_new(raw)
        if not data:
            raise OSError(errno.ENOENT, "empty symlink target", name)
        if b"\0" in data:  # a C string ends there: Linux could never store one
            raise OSError(errno.EINVAL, "NUL byte in a symlink target", name)
        if len(data) >= self.fs.block_size:
            raise OSError(errno.ENAMETOOLONG, "symlink target too long", name)
        inode = self.fs.new_inode(self.inode, stat.S_IFLNK | 0o777, uid, self._owner_gid(gid))
        if len(data) <= FAST_SYMLINK_MAX:
            inode.block = list(struct.unpack("<15I", data.ljust(60, b"\0")))
            inode.size = len(data)
        else:
            try:
                self.fs.write(inode, 0, memoryview(data))
            except OSError:
                self._abandon(inode)
                raise
        self._enter(raw, inode)
        return self.table.node(inode.ino)

    def link(self, name: str, target: Node) -> None:
        if getattr(target, "table", None) is not self.table:
            raise OSError(errno.EXDEV, "link across filesystems", name)
        other: Inode = target.inode  # type: ignore[attr-defined]
        if other.is_dir:
            raise OSError(errno.EPERM, "hard link to a directory", name)
        raw = _name(name)
        self._check_new(raw)
        if other.links == 0:  # Linux refuses to bring an unlinked file back
            raise OSError(errno.ENOENT, "file was unlinked", name)
        if other.links >= LINK_MAX:
            raise OSError(errno.EMLINK, "too many links", name)
        self.dir.add(raw, other.ino, self._ft(other.mode), self.fs.goal(self.inode))
        now = time.time_ns()
        other.links += 1
        other.ctime_ns = now
        self.fs.dirty(other)
        self._touch_dir(now)

    # --- removing -------------------------------------------------------------

    def _child(self, name: str) -> Ext2Node:
        found = self.dir.get(_name(name))
        if found is None:
            raise OSError(errno.ENOENT, "no such file or directory", name)
        return self.table.node(found[0])

    def unlink(self, name: str, is_dir: bool) -> None:
        self.node._writable()
        if name in (".", ".."):  # they are entries here, but never ones to remove
            # Linux: rmdir "." is EINVAL, rmdir ".." ENOTEMPTY, unlink of either EISDIR
            code = (errno.EINVAL if name == "." else errno.ENOTEMPTY) if is_dir else errno.EISDIR
            raise OSError(code, "cannot remove '.' or '..'", name)
        child = self._child(name)
        self._check_removable(child, is_dir, name)
        now = time.time_ns()
        self.dir.remove(_name(name))
        self._drop(child, now)
        self._touch_dir(now)

    def _check_removable(self, child: Ext2Node, as_dir: bool, name: str) -> None:
        """``child`` may go as a directory (rmdir, a directory renamed over it) or as a
        non-directory: its kind must match, and a directory must be empty."""
        if as_dir and not child.inode.is_dir:
            raise OSError(errno.ENOTDIR, "not a directory", name)
        if not as_dir and child.inode.is_dir:
            raise OSError(errno.EISDIR, "is a directory", name)
        if child.inode.is_dir and not self.fs.directory(child.inode).is_empty():
            raise OSError(errno.ENOTEMPTY, "directory not empty", name)

    def _drop(self, child: Ext2Node, now: int) -> None:
        """``child`` lost a name in this directory: fix link counts, free it if unused."""
        inode = child.inode
        inode.ctime_ns = now
        if inode.is_dir:
            inode.links = 0
            self.inode.links -= 1
            self.fs.release(inode)  # a removed directory is empty: nothing to keep
            return
        inode.links -= 1
        if inode.links == 0:
            inode.dtime = int(now // 1_000_000_000)  # a crash finds it deleted, not lost
        self.fs.dirty(inode)
        child.release_if_unused()

    # --- renaming -------------------------------------------------------------

    def _is_ancestor(self, ino: int, of: Inode) -> bool:
        """Whether directory ``ino`` is ``of`` or above it."""
        current = of
        for _ in range(100000):
            if current.ino == ino:
                return True
            if current.ino == ROOT_INO:
                return False
            parent = self.fs.directory(current).get(b"..")
            if parent is None or parent[0] == current.ino:
                return False
            current = self.fs.inode(parent[0])
        raise OSError(errno.ELOOP, "directory tree too deep")

    def rename(self, oldname: str, newdir: Node, newname: str) -> None:
        if getattr(newdir, "table", None) is not self.table:
            raise OSError(errno.EXDEV, "rename across filesystems", newname)
        dest = Ext2DirOps(newdir)  # type: ignore[arg-type] # ENOTDIR first, as Linux's lookup
        self.node._writable()
        if {oldname, newname} & {".", ".."}:  # Linux's renameat2: EBUSY
            raise OSError(errno.EBUSY, "cannot rename '.' or '..'", oldname)
        node = self._child(oldname)
        old_raw, new_raw = _name(oldname), _name(newname)
        _check_name(new_raw)
        hit = dest.dir.get(new_raw)
        if hit is not None and hit[0] == node.inode.ino:
            return  # the same name, or two hard links of one file: POSIX says do nothing
        if dest.inode.links == 0:
            raise OSError(errno.ENOENT, "target directory was removed", newname)
        moving_dir = node.inode.is_dir
        if moving_dir and dest.inode is not self.inode \
                and self._is_ancestor(node.inode.ino, dest.inode):
            raise OSError(errno.EINVAL, "directory into its own subtree", newname)
        victim = None if hit is None else self.table.node(hit[0])
        if victim is not None:
            self._check_removable(victim, moving_dir, newname)
        elif moving_dir and dest.inode is not self.inode and dest.inode.links >= LINK_MAX:
            raise OSError(errno.EMLINK, "too many subdirectories", newname)
        now = time.time_ns()
        ftype = self._ft(node.inode.mode)
        old_block = self.dir.block_of(old_raw)
        if victim is None:
            dest.dir.add(new_raw, node.inode.ino, ftype, self.fs.goal(dest.inode))
        else:
            dest.dir.retarget(new_raw, node.inode.ino, ftype)
        if moving_dir:  # new name, '..', old name: written back to back at the checkpoint
            moved = self.fs.directory(node.inode)
            self.fs.image.moves += [dest.dir.block_of(new_raw), moved.block_of(b".."), old_block]
        self.dir.remove(old_raw)
        if victim is not None:
            dest._drop(victim, now)
        if moving_dir and dest.inode is not self.inode:
            self.fs.directory(node.inode).retarget(b"..", dest.inode.ino, self._ft(dest.inode.mode))
            self.inode.links -= 1
            dest.inode.links += 1
        node.inode.ctime_ns = now
        self.fs.dirty(node.inode)
        self._touch_dir(now)
        dest._touch_dir(now)
