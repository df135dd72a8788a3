"""The backend contract: Node (a file's metadata and names) and Handle (an open file).

Every method is async and may raise ``OSError`` with a Linux errno; the server
turns that into Rlerror. Anything else raised is a bug: it is logged with its
traceback and answered EIO. Backends are called only after vfs/ has checked
read-only mounts, name validity and (for ``Backend.keeps_ownership``)
permissions, so a backend does not repeat those checks.

Concurrency: one event loop drives all calls. An in-memory backend finishes
each call without awaiting anything; a backend that awaits (thread pool,
image I/O) must tolerate other calls on the same nodes interleaving at its
await points.
"""

from __future__ import annotations

import errno
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from ninep.wire.constants import (
    DT_BLK,
    DT_CHR,
    DT_DIR,
    DT_FIFO,
    DT_LNK,
    DT_REG,
    DT_SOCK,
    O_ACCMODE,
    O_APPEND,
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_NOCTTY,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
)

__all__ = [
    "DT_BLK",
    "DT_CHR",
    "DT_DIR",
    "DT_FIFO",
    "DT_LNK",
    "DT_REG",
    "DT_SOCK",
    "TIME64_MAX",
    "TIME64_MIN",
    "UTIME_NOW",
    "V9FS_MAGIC",
    "Attr",
    "Backend",
    "Cred",
    "DirEntry",
    "Handle",
    "LeafNode",
    "NoXattrNode",
    "Node",
    "OpenFlags",
    "ReadOnlyNode",
    "SetAttr",
    "StatFs",
    "apply_setattr",
    "dtype_of_mode",
]

V9FS_MAGIC = 0x01021997
# SetAttr.atime_ns / mtime_ns: "the server's current time". Below any time a client can
# send (signed 64-bit seconds), so a time just before 1970 is never taken for it.
UTIME_NOW = -(1 << 96)
TIME64_MIN, TIME64_MAX = -(1 << 63), (1 << 63) - 1  # Linux's time64_t, in seconds

_DTYPES = {stat.S_IFIFO: DT_FIFO, stat.S_IFCHR: DT_CHR, stat.S_IFDIR: DT_DIR,
           stat.S_IFBLK: DT_BLK, stat.S_IFREG: DT_REG, stat.S_IFLNK: DT_LNK,
           stat.S_IFSOCK: DT_SOCK}


def dtype_of_mode(mode: int) -> int:
    """The DT_* value for a st_mode."""
    return _DTYPES.get(stat.S_IFMT(mode), 0)


class OpenFlags(int):
    """Tlopen/Tlcreate flags as a backend asks about them; vfs/ decodes them once
    (``OpenFlags(msg.flags)``) before calling ``Node.open`` or ``Node.create``.

    Still the exact 9P2000.L bits (Linux's x86 O_* values), so a backend that hands
    them on (passthrough to the host, the 9p import to its back server) loses none.
    The access mode follows Linux: 3 neither reads nor writes here, but is no
    read-only open either (Linux's ACC_MODE asks read and write permission for it).
    """

    __slots__ = ()

    READ: ClassVar[OpenFlags]
    WRITE: ClassVar[OpenFlags]
    READ_WRITE: ClassVar[OpenFlags]

    @property
    def reads(self) -> bool:
        """The access mode is O_RDONLY or O_RDWR."""
        return self & O_ACCMODE in (O_RDONLY, O_RDWR)

    @property
    def writes(self) -> bool:
        """The access mode is O_WRONLY or O_RDWR (O_TRUNC alone does not count)."""
        return self & O_ACCMODE in (O_WRONLY, O_RDWR)

    @property
    def read_only_access(self) -> bool:
        """The access mode is exactly O_RDONLY (O_TRUNC is asked separately)."""
        return self & O_ACCMODE == O_RDONLY

    @property
    def modifies(self) -> bool:
        """Writes, or truncates: an open that needs write permission and a writable file."""
        return self.writes or self.truncates

    @property
    def truncates(self) -> bool:
        """O_TRUNC: the file is cut to size 0 at open."""
        return bool(self & O_TRUNC)

    @property
    def appends(self) -> bool:
        """O_APPEND: every write goes to the end of the file as it is then."""
        return bool(self & O_APPEND)

    @property
    def directory(self) -> bool:
        """O_DIRECTORY: only a directory may be opened (ENOTDIR otherwise)."""
        return bool(self & O_DIRECTORY)

    @property
    def creates(self) -> bool:
        """O_CREAT was sent (a Tlcreate is a create whatever its flags say)."""
        return bool(self & O_CREAT)

    @property
    def excl(self) -> bool:
        """O_EXCL was sent."""
        return bool(self & O_EXCL)

    def for_open(self) -> OpenFlags:
        """The bits to open an existing file with: O_CREAT, O_EXCL and O_NOCTTY dropped
        (they mean nothing once the file exists, as in Linux's do_dentry_open)."""
        return OpenFlags(self & ~(O_CREAT | O_EXCL | O_NOCTTY))

    def for_exclusive_create(self) -> OpenFlags:
        """The bits to create a new file with: O_CREAT|O_EXCL added, so no existing
        file is opened instead, and O_NOCTTY dropped."""
        return OpenFlags((self & ~O_NOCTTY) | O_CREAT | O_EXCL)


OpenFlags.READ = OpenFlags(O_RDONLY)
OpenFlags.WRITE = OpenFlags(O_WRONLY)
OpenFlags.READ_WRITE = OpenFlags(O_RDWR)


@dataclass(frozen=True, slots=True)
class Cred:
    """Who is asking: the attach's uid, primary gid and supplementary groups."""

    uid: int
    gid: int
    groups: frozenset[int] = frozenset()

    def in_group(self, gid: int) -> bool:
        return gid == self.gid or gid in self.groups


@dataclass(slots=True)
class Attr:
    """A file's attributes as a backend reports them.

    ``ino`` is unique within one backend instance and shared by hard links;
    vfs/ maps it to a qid.path unique across the namespace. Times are
    nanoseconds since the epoch.
    """

    ino: int
    mode: int  # file type bits and permission bits, as st_mode
    uid: int
    gid: int
    nlink: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    rdev: int = 0
    blocks: int = 0  # 512-byte units
    blksize: int = 4096
    btime_ns: int = 0
    gen: int = 0
    data_version: int = 0


@dataclass(frozen=True, slots=True)
class SetAttr:
    """The changes of one Tsetattr; None means "leave as is".

    ``atime_ns``/``mtime_ns`` may be UTIME_NOW. ``ctime`` set alone asks for
    ctime to be touched (Linux sends it with every setattr).
    """

    mode: int | None = None  # permission bits only (07777)
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    ctime: bool = False


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One directory entry; ``cookie`` resumes a listing right after it."""

    name: str
    ino: int
    dtype: int
    cookie: int


@dataclass(frozen=True, slots=True)
class StatFs:
    """Filesystem figures for Tstatfs."""

    bsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    fsid: int = 0
    namelen: int = 255
    fstype: int = V9FS_MAGIC


class Stamped(Protocol):
    """What apply_setattr changes: an Attr, or a backend's own inode record."""

    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int


def apply_setattr(target: Stamped, changes: SetAttr, now: int, changed: bool = False) -> None:
    """Apply the owner, mode and time changes of ``changes`` as Linux does, and touch
    ctime if anything changed (``changed``: the caller already changed something, the
    size). The size itself is the backend's to apply, first (it is what can fail)."""
    changed = changed or changes.ctime
    if changes.uid is not None or changes.gid is not None:
        target.uid = target.uid if changes.uid is None else changes.uid
        target.gid = target.gid if changes.gid is None else changes.gid
        if stat.S_ISREG(target.mode):
            # Linux kills setuid on chown, and setgid only when group-exec is set
            # (setgid without it marks mandatory locking, not privilege).
            target.mode &= ~stat.S_ISUID
            if target.mode & stat.S_IXGRP:
                target.mode &= ~stat.S_ISGID
        changed = True
    if changes.mode is not None:
        target.mode = stat.S_IFMT(target.mode) | (changes.mode & 0o7777)
        changed = True
    if changes.atime_ns is not None:
        target.atime_ns = now if changes.atime_ns == UTIME_NOW else changes.atime_ns
        changed = True
    if changes.mtime_ns is not None:
        target.mtime_ns = now if changes.mtime_ns == UTIME_NOW else changes.mtime_ns
        changed = True
    if changed:
        target.ctime_ns = now


class Handle:
    """An open file. Closed exactly once, at the clunk of its fid."""

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        """Up to ``size`` bytes at ``offset``; short only at end of file.

        The result goes to the socket as it is, and uvloop keeps a reference
        until it is sent: return bytes, or a view of memory that never changes.

        Errnos: EISDIR, EBADF (not opened for reading), EIO.
        """
        raise OSError(errno.EBADF, "not open for reading")

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        """Write ``data`` at ``offset`` (at end of file if opened O_APPEND).

        Returns the count written. Errnos: EBADF, EFBIG, ENOSPC, EIO.
        """
        raise OSError(errno.EBADF, "not open for writing")

    #: Its file's byte-range locks are kept by another server (the 9p backend): Tlock
    #: and Tgetlock on the handle's fid go to ``lock``/``getlock``, not to vfs/locks.py.
    forwards_locks: ClassVar[bool] = False

    async def lock(self, lock_type: int, flags: int, start: int, length: int,
                   owner: tuple[int, str, int]) -> int:
        """Tlock for ``owner`` (connection id, client_id, proc_id); the Rlock status."""
        raise OSError(errno.ENOLCK, "locks are not forwarded")

    async def getlock(self, lock_type: int, start: int, length: int,
                      owner: tuple[int, str, int]) -> tuple[int, int, int, int, str]:
        """Tgetlock: (type, start, length, proc_id, client_id) of the first conflict."""
        raise OSError(errno.ENOLCK, "locks are not forwarded")

    async def fsync(self, datasync: bool) -> None:
        """Make written data (and metadata unless ``datasync``) durable."""

    async def close(self) -> None:
        """Release the handle; an unlinked file may be freed after this."""


class Node:
    """A file, directory, symlink or special file of one backend instance.

    A Node stays valid while anyone holds it, even after its last name is
    unlinked (open-unlink idiom): getattr/setattr/open keep working.
    """

    async def getattr(self) -> Attr:
        raise NotImplementedError

    async def type_and_ino(self) -> tuple[int, int]:
        """The file type bits of the mode and the inode number: all a qid needs.

        Both are fixed for the life of a node, so a backend that keeps them
        answers without asking its storage (a walk's qid); the default asks.
        """
        a = await self.getattr()
        return a.mode, a.ino

    def peek_attr(self) -> Attr | None:
        """The current attributes when they are at hand without waiting, else None.

        The hot path of Tgetattr: the result is packed at once and never kept
        or changed, so a backend may return its live object. Optional.
        """
        return None

    def getattr_soon(self, done: Callable[[Attr | OSError], None]) -> bool:
        """Start a getattr answered by ``done(attr)`` or ``done(OSError)``, called from
        the event loop later, never from inside this call: the Tgetattr hot path of a
        backend whose getattr waits on a callback (an import's reply), with no Task.
        False, with ``done`` never called, where the caller must await getattr()
        instead. Optional."""
        return False

    async def setattr(self, changes: SetAttr) -> None:
        """Apply ``changes``; ctime is updated as POSIX says.

        Errnos: EPERM, EINVAL, EISDIR (size on a directory), EFBIG, ENOSPC.
        """
        raise OSError(errno.EOPNOTSUPP, "setattr not supported")

    async def walk(self, name: str) -> Node:
        """The child ``name`` ("..": the parent; the root's parent is itself).

        Errnos: ENOENT, ENOTDIR.
        """
        raise OSError(errno.ENOTDIR, "not a directory")

    async def open(self, flags: OpenFlags) -> Handle:
        """Open with ``flags``, decoded by vfs/ (reads, writes, appends, truncates and
        directory honoured; OpenFlags is still the int of Linux O_* bits).

        Errnos: EISDIR (write on a directory), ELOOP (symlink), ENXIO.
        """
        raise OSError(errno.EOPNOTSUPP, "open not supported")

    async def readdir(self, cookie: int, count: int) -> list[DirEntry]:
        """Up to ``count`` entries after ``cookie`` (0 = from the start).

        No "." or ".." (vfs/ adds them). Cookies are positive, below 2**62,
        and stay valid across creates and unlinks: resuming after any
        cookie handed out before lists no entry twice and skips none that
        existed throughout. An empty list means the end. Errno: ENOTDIR.
        """
        raise OSError(errno.ENOTDIR, "not a directory")

    async def listing_end(self) -> int | None:
        """A cookie at or above the cookie of every entry now in this directory, such
        that an entry created from now on gets a cookie above it (or, for backends
        whose cookies are positions, may reuse a gap below it).

        vfs/ asks at the start of a listing and lists no entry whose cookie is above
        the answer, so a listing ends even while entries are being created between
        its batches, as Linux's tmpfs does since the fix xfstests generic/736 tests.
        None: this directory cannot grow during a listing (it never changes: tar,
        static synthetic directories). Errno: ENOTDIR.

        A backend that implements readdir implements this too (the backend
        acceptance suite checks that a listing ends); the default, like readdir's,
        is that of a node that is no directory.
        """
        raise OSError(errno.ENOTDIR, "not a directory")

    async def create(self, name: str, flags: OpenFlags, mode: int, uid: int,
                     gid: int) -> tuple[Node, Handle]:
        """Create a regular file and open it with ``flags`` (decoded as for open; a
        create never opens an existing file, whatever O_EXCL says). Errnos: EEXIST,
        ENOSPC."""
        raise OSError(errno.ENOTDIR, "not a directory")

    async def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Node:
        raise OSError(errno.ENOTDIR, "not a directory")

    async def symlink(self, name: str, target: str, uid: int, gid: int) -> Node:
        raise OSError(errno.ENOTDIR, "not a directory")

    async def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> Node:
        """Create a FIFO, socket, char or block device (type bits in ``mode``)."""
        raise OSError(errno.ENOTDIR, "not a directory")

    async def link(self, name: str, target: Node) -> None:
        """Add the name ``name`` for ``target`` (same backend). Errnos: EEXIST, EPERM (dir), EXDEV."""
        raise OSError(errno.ENOTDIR, "not a directory")

    async def rename(self, oldname: str, newdir: Node, newname: str) -> None:
        """Move ``oldname`` here to ``newname`` in ``newdir`` (same backend), POSIX rules.

        Errnos: ENOENT, EEXIST/ENOTEMPTY, EISDIR, ENOTDIR, EINVAL (a directory
        into its own subtree), EXDEV.
        """
        raise OSError(errno.ENOTDIR, "not a directory")

    async def unlink(self, name: str, is_dir: bool) -> None:
        """Remove ``name``; ``is_dir`` as rmdir. Errnos: ENOENT, ENOTDIR, EISDIR, ENOTEMPTY."""
        raise OSError(errno.ENOTDIR, "not a directory")

    async def readlink(self) -> str:
        raise OSError(errno.EINVAL, "not a symlink")

    async def statfs(self) -> StatFs:
        raise OSError(errno.EOPNOTSUPP, "statfs not supported")

    async def xattr_get(self, name: str) -> bytes:
        """Errno: ENODATA when absent."""
        raise OSError(errno.ENODATA, "no such attribute")

    async def xattr_list(self) -> list[str]:
        return []

    async def xattr_set(self, name: str, value: bytes, flags: int) -> None:
        """``flags``: XATTR_CREATE 1 (EEXIST if present), XATTR_REPLACE 2 (ENODATA if absent)."""
        raise OSError(errno.EOPNOTSUPP, "xattrs not supported")

    async def xattr_remove(self, name: str) -> None:
        raise OSError(errno.ENODATA, "no such attribute")


class ReadOnlyNode(Node):
    """Refuses every change with EROFS (vfs/ also refuses them for ro mounts)."""

    async def setattr(self, changes: SetAttr) -> None:
        raise OSError(errno.EROFS, "read-only file system")

    async def create(self, name: str, flags: OpenFlags, mode: int, uid: int,
                     gid: int) -> tuple[Node, Handle]:
        raise OSError(errno.EROFS, "read-only file system")

    async def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Node:
        raise OSError(errno.EROFS, "read-only file system")

    async def symlink(self, name: str, target: str, uid: int, gid: int) -> Node:
        raise OSError(errno.EROFS, "read-only file system")

    async def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> Node:
        raise OSError(errno.EROFS, "read-only file system")

    async def link(self, name: str, target: Node) -> None:
        raise OSError(errno.EROFS, "read-only file system")

    async def rename(self, oldname: str, newdir: Node, newname: str) -> None:
        raise OSError(errno.EROFS, "read-only file system")

    async def unlink(self, name: str, is_dir: bool) -> None:
        raise OSError(errno.EROFS, "read-only file system")

    async def xattr_set(self, name: str, value: bytes, flags: int) -> None:
        raise OSError(errno.EROFS, "read-only file system")

    async def xattr_remove(self, name: str) -> None:
        raise OSError(errno.EROFS, "read-only file system")


class NoXattrNode(Node):
    """A node without extended attributes: reads find none, writes are refused."""

    async def xattr_set(self, name: str, value: bytes, flags: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "extended attributes not supported")

    async def xattr_remove(self, name: str) -> None:
        raise OSError(errno.EOPNOTSUPP, "extended attributes not supported")


class LeafNode(NoXattrNode):
    """A non-directory whose directory operations answer ENOTDIR (the Node defaults)."""


class Backend:
    """One mounted filesystem instance: its root and what vfs/ must do for it.

    ``keeps_ownership``: the backend stores uid/gid/mode that vfs/ must
    enforce (RAM, ext2, tar). A backend that delegates checks to its host
    (passthrough as a non-root server) sets it False.
    """

    kind: ClassVar[str] = "backend"
    keeps_ownership: ClassVar[bool] = True
    #: Cannot change at all (a tar archive, an image opened read-only): vfs/ mounts it
    #: read-only, so every change is EROFS before any permission check, as on Linux.
    read_only: bool = False
    #: The seconds a timestamp may take (Linux's s_time_min/s_time_max); vfs/ clamps the
    #: times of a Tsetattr into it, as Linux clamps timestamps to a filesystem's range.
    time_range: ClassVar[tuple[int, int]] = (TIME64_MIN, TIME64_MAX)
    #: Its host calls run under the caller's identity (passthrough as root): vfs/ tells
    #: it whom each call serves through vfs.caller.CALLER.
    host_identity: bool = False
    root: Node

    async def close(self) -> None:
        """Called once when the server stops using this instance."""
