"""The RAM backend: a complete tmpfs held in memory, with sparse paged files."""

from __future__ import annotations

import bisect
import errno
import itertools
import stat
import time

from ninep.vfs.node import (
    Attr,
    Backend,
    DirEntry,
    Handle,
    Node,
    OpenFlags,
    SetAttr,
    StatFs,
    apply_setattr,
    dtype_of_mode,
)
from ninep.wire.constants import (
    XATTR_CREATE,
    XATTR_REPLACE,
    XATTR_SIZE_MAX,
)

from .ram_pages import BLOCK, PAGE_SIZE, Pages, growth, read_pages, shrink_pages, write_pages
from .registry import Options, option_int

__all__ = ["MAX_FILE_SIZE", "PAGE_SIZE", "TMPFS_MAGIC", "RamBackend", "RamDir", "RamFile",
           "RamHandle", "RamNode", "RamSpecial", "RamSymlink", "open_backend"]

MAX_FILE_SIZE = 2**63 - 1  # Linux MAX_LFS_FILESIZE
TMPFS_MAGIC = 0x01021994
_UNLIMITED = 2**31  # what statfs reports for a limit that was not set

_fsids = itertools.count(1)


def _encoded_len(text: str) -> int:
    """Bytes ``text`` takes on the wire (names from 9P may carry undecodable bytes)."""
    return len(text.encode("utf-8", "surrogateescape"))


class RamNode(Node):
    """What every RAM object has: attributes, xattrs, and a count of open handles."""

    def __init__(self, fs: RamBackend, mode: int, uid: int, gid: int, rdev: int = 0,
                 size: int = 0) -> None:
        now = time.time_ns()
        self.fs = fs
        self.attr = Attr(fs.take_inode(), mode, uid, gid, 1, size, now, now, now, rdev,
                         0, BLOCK, now)
        self.xattrs: dict[str, bytes] = {}
        self.opens = 0
        self.released = False

    def peek_attr(self) -> Attr:
        return self.attr

    async def getattr(self) -> Attr:
        a = self.attr  # hot path: a positional copy, no dict building
        return Attr(a.ino, a.mode, a.uid, a.gid, a.nlink, a.size, a.atime_ns, a.mtime_ns,
                    a.ctime_ns, a.rdev, a.blocks, a.blksize, a.btime_ns, a.gen,
                    a.data_version)

    async def setattr(self, changes: SetAttr) -> None:
        now = time.time_ns()
        if changes.size is not None:  # first: it is the only change that can fail
            self.truncate(changes.size, now)
        apply_setattr(self.attr, changes, now, changed=changes.size is not None)

    def truncate(self, size: int, now: int) -> None:
        raise OSError(errno.EINVAL, "not a regular file")

    async def open(self, flags: OpenFlags) -> Handle:
        raise OSError(errno.ENXIO, "special files cannot be opened on a RAM filesystem")

    async def statfs(self) -> StatFs:
        return self.fs.statfs()

    async def xattr_get(self, name: str) -> bytes:
        try:
            return self.xattrs[name]
        except KeyError:
            raise OSError(errno.ENODATA, "no such attribute", name) from None

    async def xattr_list(self) -> list[str]:
        return list(self.xattrs)

    async def xattr_set(self, name: str, value: bytes, flags: int) -> None:
        if flags & ~(XATTR_CREATE | XATTR_REPLACE):
            raise OSError(errno.EINVAL, "bad xattr flags")
        value = bytes(value)
        if len(value) > XATTR_SIZE_MAX:
            raise OSError(errno.E2BIG, "xattr value too large", name)
        old = self.xattrs.get(name)
        if old is None and flags & XATTR_REPLACE:
            raise OSError(errno.ENODATA, "no such attribute", name)
        if old is not None and flags & XATTR_CREATE:
            raise OSError(errno.EEXIST, "attribute exists", name)
        cost = len(value) - len(old) if old is not None else len(value) + _encoded_len(name)
        self.fs.reserve(cost)
        self.xattrs[name] = value
        self.attr.ctime_ns = time.time_ns()

    async def xattr_remove(self, name: str) -> None:
        old = self.xattrs.pop(name, None)
        if old is None:
            raise OSError(errno.ENODATA, "no such attribute", name)
        self.fs.release(len(old) + _encoded_len(name))
        self.attr.ctime_ns = time.time_ns()

    def drop_link(self, now: int) -> None:
        """One name of this node went away."""
        self.attr.nlink -= 1
        self.attr.ctime_ns = now
        if self.attr.nlink > 0:
            self.fs.used_inodes -= 1  # the name's share of inode_limit (RamDir.link)
        self.release_if_unused()

    def release_if_unused(self) -> None:
        """Give the space back once no name and no open handle is left."""
        if self.attr.nlink > 0 or self.opens > 0:
            return
        self.fs.release(self.space_used())
        self.free_data()
        self.xattrs.clear()
        if not self.released:
            self.released = True
            self.fs.used_inodes -= 1

    def space_used(self) -> int:
        return sum(_encoded_len(k) + len(v) for k, v in self.xattrs.items())

    def free_data(self) -> None:
        """Drop the content (a RamFile's pages)."""


class RamFile(RamNode):
    """A regular file: its bytes in pages (backends/ram_pages.py)."""

    def __init__(self, fs: RamBackend, mode: int, uid: int, gid: int) -> None:
        super().__init__(fs, stat.S_IFREG | (mode & 0o7777), uid, gid)
        self.pages: Pages = {}
        self.alloc = 0  # bytes held in pages, a multiple of BLOCK

    async def open(self, flags: OpenFlags) -> Handle:
        if flags.directory:
            raise OSError(errno.ENOTDIR, "not a directory")
        if flags.truncates:  # vfs/ asked for write permission already, as Linux does
            self.truncate(0, time.time_ns())
        return RamHandle(self, flags.reads, flags.writes, flags.appends)

    def read_bytes(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0:
            raise OSError(errno.EINVAL, "negative offset or size")
        a = self.attr
        end = min(offset + size, a.size)
        if offset >= end:
            return b""
        if a.atime_ns <= a.mtime_ns or a.atime_ns <= a.ctime_ns:  # relatime
            a.atime_ns = time.time_ns()
        return read_pages(self.pages, offset, end)

    def write_bytes(self, offset: int, data: bytes | memoryview) -> int:
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        count = len(view)
        if offset < 0:
            raise OSError(errno.EINVAL, "negative offset")
        if count == 0:
            return 0
        end = offset + count
        if end > MAX_FILE_SIZE:
            raise OSError(errno.EFBIG, "file too large")
        grow = growth(self.pages, offset, end)
        self.fs.reserve(grow)  # before any byte is stored: ENOSPC leaves nothing half-written
        write_pages(self.pages, offset, view)
        self.alloc += grow
        a = self.attr
        a.blocks = self.alloc // 512
        a.size = max(a.size, end)
        a.mtime_ns = a.ctime_ns = time.time_ns()
        a.data_version += 1
        return count

    def truncate(self, size: int, now: int) -> None:
        if size < 0:
            raise OSError(errno.EINVAL, "negative size")
        if size > MAX_FILE_SIZE:
            raise OSError(errno.EFBIG, "file too large")
        a = self.attr
        if size < a.size:
            freed = shrink_pages(self.pages, size)
            self.alloc -= freed
            self.fs.release(freed)
            a.blocks = self.alloc // 512
        a.size = size
        a.mtime_ns = a.ctime_ns = now  # Linux truncate updates both, even to the same size
        a.data_version += 1

    def space_used(self) -> int:
        return super().space_used() + self.alloc

    def free_data(self) -> None:
        self.pages.clear()
        self.alloc = 0
        self.attr.size = self.attr.blocks = 0


class RamSymlink(RamNode):
    """A symbolic link; its target counts toward the size limit."""

    def __init__(self, fs: RamBackend, target: str, uid: int, gid: int) -> None:
        size = _encoded_len(target)
        fs.reserve(size)
        try:
            super().__init__(fs, stat.S_IFLNK | 0o777, uid, gid, size=size)
        except OSError:  # out of inodes: give the bytes back
            fs.release(size)
            raise
        self.target = target
        self.charged = size  # 0 once released; the target stays readable through the node

    async def open(self, flags: OpenFlags) -> Handle:
        raise OSError(errno.ELOOP, "is a symbolic link")

    async def readlink(self) -> str:
        return self.target

    def space_used(self) -> int:
        return super().space_used() + self.charged

    def free_data(self) -> None:
        self.charged = 0


class RamSpecial(RamNode):
    """A FIFO, socket, or character or block device: metadata only."""


class _Link:
    """One directory entry: a name, its node, and its readdir sequence number."""

    __slots__ = ("dtype", "name", "node", "seq")

    def __init__(self, name: str, node: RamNode, seq: int) -> None:
        self.name, self.node, self.seq = name, node, seq
        self.dtype = dtype_of_mode(node.attr.mode)


class RamDir(RamNode):
    """A directory. Entries carry increasing sequence numbers that serve as readdir cookies.

    ``order`` lists the sequence numbers ever handed out, ascending (a new entry
    always gets the largest), so a listing resumes with one bisect; removed
    entries stay in ``order`` until they outnumber the live ones.
    """

    def __init__(self, fs: RamBackend, mode: int, uid: int, gid: int,
                 parent: RamDir | None) -> None:
        super().__init__(fs, stat.S_IFDIR | (mode & 0o7777), uid, gid)
        self.attr.nlink = 2
        self.parent: RamDir = self if parent is None else parent
        self.children: dict[str, _Link] = {}
        self.by_seq: dict[int, _Link] = {}
        self.order: list[int] = []
        self.dead = 0
        self.next_seq = 1

    async def open(self, flags: OpenFlags) -> Handle:
        if not flags.read_only_access or flags.truncates:
            raise OSError(errno.EISDIR, "is a directory")
        return RamHandle(self, True, False, False)

    def truncate(self, size: int, now: int) -> None:
        raise OSError(errno.EISDIR, "is a directory")

    async def walk(self, name: str) -> Node:
        if name == "..":
            return self.parent
        if name == ".":
            return self
        link = self.children.get(name)
        if link is None:
            raise OSError(errno.ENOENT, "no such file or directory", name)
        return link.node

    async def readdir(self, cookie: int, count: int) -> list[DirEntry]:
        order, by_seq = self.order, self.by_seq
        i, n = bisect.bisect_right(order, cookie), len(order)
        out: list[DirEntry] = []
        while i < n and len(out) < count:
            link = by_seq.get(order[i])
            i += 1
            if link is not None:
                out.append(DirEntry(link.name, link.node.attr.ino, link.dtype, link.seq))
        a = self.attr
        if a.atime_ns <= a.mtime_ns or a.atime_ns <= a.ctime_ns:  # relatime
            a.atime_ns = time.time_ns()
        return out

    async def listing_end(self) -> int:
        return self.next_seq - 1  # every new entry, a rename's too, gets next_seq or above

    # --- entries ----------------------------------------------------------

    def check_new(self, name: str) -> None:
        if self.attr.nlink == 0:  # Linux: creating in a removed directory is ENOENT
            raise OSError(errno.ENOENT, "directory was removed", name)
        if name in self.children:
            raise OSError(errno.EEXIST, "file exists", name)

    def insert(self, name: str, node: RamNode, now: int) -> None:
        link = _Link(name, node, self.next_seq)
        self.next_seq += 1
        self.children[name] = link
        self.by_seq[link.seq] = link
        self.order.append(link.seq)
        if isinstance(node, RamDir):
            self.attr.nlink += 1
        self.attr.mtime_ns = self.attr.ctime_ns = now

    def remove(self, name: str, now: int) -> RamNode:
        """Take ``name`` out of the listing; the caller fixes the node's link count."""
        link = self.children.pop(name)
        del self.by_seq[link.seq]
        self.dead += 1
        if self.dead > 64 and self.dead * 2 > len(self.order):
            self.order = [seq for seq in self.order if seq in self.by_seq]
            self.dead = 0
        if isinstance(link.node, RamDir):
            self.attr.nlink -= 1
        self.attr.mtime_ns = self.attr.ctime_ns = now
        return link.node

    def detach(self, name: str, now: int) -> None:
        """Remove ``name`` for good: unlink, rmdir, or the target of a rename."""
        node = self.remove(name, now)
        if isinstance(node, RamDir):
            node.attr.nlink = 1  # drop_link takes it to 0, as rmdir does
        node.drop_link(now)

    def owner_gid(self, gid: int) -> int:
        """A setgid directory hands its group to new entries (BSD group semantics)."""
        return self.attr.gid if self.attr.mode & stat.S_ISGID else gid

    def make_file(self, name: str, mode: int, uid: int, gid: int) -> RamFile:
        self.check_new(name)
        node = RamFile(self.fs, mode, uid, self.owner_gid(gid))
        self.insert(name, node, node.attr.ctime_ns)
        return node

    def make_dir(self, name: str, mode: int, uid: int, gid: int) -> RamDir:
        self.check_new(name)
        mode &= 0o1777  # Linux mkdir drops setuid/setgid from the request...
        if self.attr.mode & stat.S_ISGID:
            mode |= stat.S_ISGID  # ...and a setgid parent passes setgid on
        node = RamDir(self.fs, mode, uid, self.owner_gid(gid), self)
        self.insert(name, node, node.attr.ctime_ns)
        return node

    # --- the contract ------------------------------------------------------

    async def create(self, name: str, flags: OpenFlags, mode: int, uid: int,
                     gid: int) -> tuple[Node, Handle]:
        node = self.make_file(name, mode, uid, gid)
        return node, RamHandle(node, flags.reads, flags.writes, flags.appends)

    async def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Node:
        return self.make_dir(name, mode, uid, gid)

    async def symlink(self, name: str, target: str, uid: int, gid: int) -> Node:
        self.check_new(name)
        if not target:
            raise OSError(errno.ENOENT, "empty symlink target", name)
        node = RamSymlink(self.fs, target, uid, self.owner_gid(gid))
        self.insert(name, node, node.attr.ctime_ns)
        return node

    async def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> Node:
        kind = stat.S_IFMT(mode)
        if kind in (0, stat.S_IFREG):  # Linux mknod makes an empty regular file
            return self.make_file(name, mode, uid, gid)
        if kind == stat.S_IFDIR:
            raise OSError(errno.EPERM, "mknod cannot make a directory", name)
        if kind not in (stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK):
            raise OSError(errno.EINVAL, "unknown file type", name)
        self.check_new(name)
        is_dev = kind in (stat.S_IFCHR, stat.S_IFBLK)
        node = RamSpecial(self.fs, kind | (mode & 0o7777), uid, self.owner_gid(gid),
                          rdev if is_dev else 0)
        self.insert(name, node, node.attr.ctime_ns)
        return node

    async def link(self, name: str, target: Node) -> None:
        if not isinstance(target, RamNode) or target.fs is not self.fs:
            raise OSError(errno.EXDEV, "link across filesystems", name)
        if isinstance(target, RamDir):
            raise OSError(errno.EPERM, "hard link to a directory", name)
        self.check_new(name)
        if target.attr.nlink == 0:  # Linux refuses to bring an unlinked file back
            raise OSError(errno.ENOENT, "file was unlinked", name)
        # Each extra name counts as an inode, as tmpfs's shmem_link does: names cost
        # memory too, and inode_limit bounds what a client can make.
        self.fs.reserve_inode()
        now = time.time_ns()
        target.attr.nlink += 1
        target.attr.ctime_ns = now
        self.insert(name, target, now)

    async def unlink(self, name: str, is_dir: bool) -> None:
        link = self.children.get(name)
        if link is None:
            raise OSError(errno.ENOENT, "no such file or directory", name)
        node = link.node
        if is_dir and not isinstance(node, RamDir):
            raise OSError(errno.ENOTDIR, "not a directory", name)
        if not is_dir and isinstance(node, RamDir):
            raise OSError(errno.EISDIR, "is a directory", name)
        if isinstance(node, RamDir) and node.children:
            raise OSError(errno.ENOTEMPTY, "directory not empty", name)
        self.detach(name, time.time_ns())

    async def rename(self, oldname: str, newdir: Node, newname: str) -> None:
        if not isinstance(newdir, RamDir) or newdir.fs is not self.fs:
            raise OSError(errno.EXDEV, "rename across filesystems", newname)
        link = self.children.get(oldname)
        if link is None:
            raise OSError(errno.ENOENT, "no such file or directory", oldname)
        node, dst = link.node, newdir.children.get(newname)
        if dst is not None and dst.node is node:
            return  # the same name, or two hard links of one file: POSIX says do nothing
        if newdir.attr.nlink == 0:
            raise OSError(errno.ENOENT, "target directory was removed", newname)
        moving_dir = isinstance(node, RamDir)
        if moving_dir and newdir is not self:
            ancestor = newdir
            while True:  # a directory may not move into its own subtree
                if ancestor is node:
                    raise OSError(errno.EINVAL, "directory into its own subtree", newname)
                if ancestor.parent is ancestor:
                    break
                ancestor = ancestor.parent
        if dst is not None:
            if moving_dir and not isinstance(dst.node, RamDir):
                raise OSError(errno.ENOTDIR, "not a directory", newname)
            if not moving_dir and isinstance(dst.node, RamDir):
                raise OSError(errno.EISDIR, "is a directory", newname)
            if isinstance(dst.node, RamDir) and dst.node.children:
                raise OSError(errno.ENOTEMPTY, "directory not empty", newname)
        now = time.time_ns()
        if dst is not None:
            newdir.detach(newname, now)
        self.remove(oldname, now)
        newdir.insert(newname, node, now)  # a new sequence number: its new place in listings
        if isinstance(node, RamDir):
            node.parent = newdir
        node.attr.ctime_ns = now


class RamHandle(Handle):
    """An open RAM file or directory; the access mode is fixed at open."""

    def __init__(self, node: RamNode, readable: bool, writable: bool, append: bool) -> None:
        self.node, self.readable, self.writable, self.append = node, readable, writable, append
        self.closed = False
        node.opens += 1

    async def read(self, offset: int, size: int) -> bytes:
        if self.closed or not self.readable:
            raise OSError(errno.EBADF, "not open for reading")
        if not isinstance(self.node, RamFile):
            raise OSError(errno.EISDIR, "is a directory")
        return self.node.read_bytes(offset, size)

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        if self.closed or not self.writable or not isinstance(self.node, RamFile):
            raise OSError(errno.EBADF, "not open for writing")
        if self.append:  # O_APPEND: the offset the client sent does not matter
            offset = self.node.attr.size
        return self.node.write_bytes(offset, data)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.node.opens -= 1
            self.node.release_if_unused()


class RamBackend(Backend):
    """A tmpfs: everything in memory, optionally bounded in bytes and in inodes."""

    kind = "ram"
    keeps_ownership = True

    def __init__(self, size_limit: int | None = None, inode_limit: int | None = None,
                 root_uid: int = 0, root_gid: int = 0, root_mode: int = 0o755) -> None:
        if size_limit is not None and size_limit < 0:
            raise ValueError("size_limit must not be negative")
        if inode_limit is not None and inode_limit < 1:
            raise ValueError("inode_limit must be at least 1 (the root)")
        self.size_limit = size_limit
        self.inode_limit = inode_limit
        self.used_bytes = 0
        self.used_inodes = 0
        self.fsid = next(_fsids)
        self._inos = itertools.count(1)
        self.root: RamDir = RamDir(self, root_mode, root_uid, root_gid, None)

    def take_inode(self) -> int:
        """A new inode number, or ENOSPC past inode_limit."""
        self.reserve_inode()
        return next(self._inos)

    def reserve_inode(self) -> None:
        """Count one more inode (or hard link), or ENOSPC past inode_limit."""
        if self.inode_limit is not None and self.used_inodes >= self.inode_limit:
            raise OSError(errno.ENOSPC, "no inodes left")
        self.used_inodes += 1

    def reserve(self, nbytes: int) -> None:
        """Account ``nbytes`` more (or fewer, if negative), or ENOSPC past size_limit."""
        limit = self.size_limit
        if nbytes > 0 and limit is not None and self.used_bytes + nbytes > limit:
            raise OSError(errno.ENOSPC, "no space left on device")
        self.used_bytes += nbytes

    def release(self, nbytes: int) -> None:
        self.used_bytes -= nbytes

    def statfs(self) -> StatFs:
        used = -(-self.used_bytes // BLOCK)
        limit = self.size_limit
        blocks = max(_UNLIMITED, used) if limit is None else limit // BLOCK
        files = _UNLIMITED if self.inode_limit is None else self.inode_limit
        free = max(blocks - used, 0)
        return StatFs(BLOCK, blocks, free, free, files, max(files - self.used_inodes, 0),
                      fsid=self.fsid, namelen=255, fstype=TMPFS_MAGIC)

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> RamFile:
        """Seed ``path`` (relative to the root) with ``data``, making missing directories."""
        parts = [p for p in path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValueError(f"bad path for add_file: {path!r}")
        directory, uid, gid = self.root, self.root.attr.uid, self.root.attr.gid
        for part in parts[:-1]:
            link = directory.children.get(part)
            if link is None:
                directory = directory.make_dir(part, 0o755, uid, gid)
            elif isinstance(link.node, RamDir):
                directory = link.node
            else:
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", part)
        link = directory.children.get(parts[-1])
        if link is not None and isinstance(link.node, RamFile):
            node = link.node
            node.truncate(0, time.time_ns())
            node.attr.mode = stat.S_IFREG | (mode & 0o7777)
        else:
            node = directory.make_file(parts[-1], mode, uid, gid)
        node.write_bytes(0, data)
        return node


async def open_backend(source: str, options: Options, read_only: bool) -> RamBackend:
    """The registry's factory: options ``size`` (bytes, K/M/G suffixes), ``inodes``,
    ``mode`` (the root's permission bits), as the registry declares and converts them."""
    size = option_int(options, "size", None)
    inodes = option_int(options, "inodes", None, minimum=1)
    mode = options["mode"]
    assert isinstance(mode, int)
    return RamBackend(size_limit=size, inode_limit=inodes, root_mode=mode)
