"""A host object below the export, held by an O_PATH descriptor and resolved by name only
relative to its parent's descriptor, never following a symlink."""

from __future__ import annotations

import errno
import os
import stat
import time
import weakref
from typing import TYPE_CHECKING

from ninep.vfs.node import UTIME_NOW, Attr, DirEntry, Handle, Node, OpenFlags, SetAttr, StatFs
from ninep.vfs.request import current_account

from .containment import MoveWatch, check_contained, move_watch, watched
from .fsident import HostCred, SearchGrants, host_cred, thread_cred, under_caller
from .handle import DirHandle, FileHandle, check_open
from .hostcalls import O_PATH_FLAGS, host_open_flags, host_statfs, open_noatime, proc_path
from .listing import DirListing, scan_directory, stamp_of
from .ownership import Mapped, Where
from .userfiles import OpenerFileHandle, truncate_through_writer
from .userring import open_as

if TYPE_CHECKING:
    from .backend import PassthroughBackend
    from .fdtable import FdBox

__all__ = ["PassthroughNode"]

_INLINE_SCAN_BYTES = 16 * 4096  # a directory this small is listed without a thread hop
_SPECIAL = {stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK}


class PassthroughNode(Node):
    """One host file, directory, symlink or special file.

    ``parent`` and ``name`` are where the node was last seen; they let the
    descriptor budget close the descriptor and reopen it later, and give '..'
    without asking the host (whose '..' may lead out of the export after a
    directory was moved away). The root has no parent.
    """

    def __init__(self, fs: PassthroughBackend, box: FdBox, st: os.stat_result,
                 parent: PassthroughNode | None, name: str) -> None:
        self.fs = fs
        self.box = box
        self.key = (st.st_dev, st.st_ino)
        self.host_type = stat.S_IFMT(st.st_mode)
        self.ino = fs.inodes(st.st_dev, st.st_ino)
        self.parent = parent
        self.name = name
        self.pins = 0  # operations in a thread that use the descriptor
        self.listing: DirListing | None = None
        self._mapped: tuple[int, Mapped] | None = None  # (st_ctime_ns, xattrs) cache
        self.ref = weakref.ref(self)
        # containment.py: the move epoch at which this directory was last proven below
        # the export, and the inotify watch that tells when it moves
        self.proven = -1
        self.search_grants: SearchGrants | None = None  # fsident.py: users the kernel let in
        self.writers: list[OpenerFileHandle] | None = None  # userfiles.py
        self.watcher: MoveWatch | None = None
        self.watch = -1
        if self.host_type == stat.S_IFDIR:
            self.watcher = move_watch()
            self.watch = self.watcher.watch(box.fd)

    def __del__(self) -> None:
        # the last fid let go: forget the node and close its descriptor
        fs = self.fs
        if fs.nodes.get(self.key) is self.ref:
            del fs.nodes[self.key]
        fs.fds.release(self.box)
        if self.watcher is not None and self.watch >= 0:
            self.watcher.unwatch(self.watch)

    # --- descriptors ---------------------------------------------------------

    def fd(self) -> int:
        """The O_PATH descriptor, reopened by name if the budget closed it."""
        box = self.box
        if box.fd >= 0:
            self.fs.fds.touch(box)
            return box.fd
        parent = self.parent
        if parent is None or self.fs.closed:
            raise OSError(errno.EBADF, "the backend is closed")
        fd = os.open(self.name, O_PATH_FLAGS, dir_fd=parent.fd())
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != self.key:
            os.close(fd)
            raise OSError(errno.ESTALE, f"{self.name!r} was replaced on the host")
        box.fd = fd
        self.fs.fds.add_node_fd(self.ref, box, current_account())
        return fd

    def can_close(self) -> bool:
        """For the budget: closable when it can be reopened by name, and not unlinked."""
        parent = self.parent
        if parent is None or self.pins:
            return False
        try:
            if os.fstat(self.box.fd).st_nlink == 0:
                return False
            if parent.box.fd >= 0:
                st = os.stat(self.name, dir_fd=parent.box.fd, follow_symlinks=False)
                return (st.st_dev, st.st_ino) == self.key
        except OSError:
            return False
        return True

    def where(self) -> Where:
        """How path-based calls name this object: never through a symlink."""
        if self.host_type == stat.S_IFLNK and self.parent is not None:
            return f"{proc_path(self.parent.fd())}/{self.name}", False
        return proc_path(self.fd()), True

    def _begin(self) -> int:
        """This node's descriptor at the start of an operation that may open others
        (a walk's child, a file, a new name): room made for them first (fdtable)."""
        self.fs.fds.trim(current_account())
        return self.fd()

    def _fd_now(self) -> int:
        """This node's descriptor for an operation that opens no other: the budget
        trims first only when it must be reopened."""
        box = self.box
        if box.fd >= 0:
            self.fs.fds.touch(box)
            return box.fd
        return self._begin()

    def _begin_held(self, opens: bool = False) -> int:
        """This node's descriptor for an operation on the object (``opens``: one that opens
        a file): its directory must still be in the export (the object itself, for a
        directory)."""
        fd = self._begin() if opens else self._fd_now()
        held = self if self.host_type == stat.S_IFDIR else self.parent
        if held is not None:
            check_contained(held)
        return fd

    def _changed(self) -> None:
        if self.listing is not None:
            self.listing.invalidate()

    # --- attributes ----------------------------------------------------------

    def _attr(self, st: os.stat_result) -> Attr:
        if self.fs.mapped:
            return self._mapped_attr(st)
        return Attr(self.ino, st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_size,
                    st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, st.st_rdev, st.st_blocks,
                    st.st_blksize)

    def _mapped_attr(self, st: os.stat_result) -> Attr:
        mapped = self._mapped_of(st)
        return Attr(self.ino, st.st_mode if mapped.mode is None else mapped.mode,
                    st.st_uid if mapped.uid is None else mapped.uid,
                    st.st_gid if mapped.gid is None else mapped.gid,
                    st.st_nlink, st.st_size, st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns,
                    st.st_rdev if mapped.rdev is None else mapped.rdev, st.st_blocks,
                    st.st_blksize)

    def _mapped_of(self, st: os.stat_result) -> Mapped:
        cached = self._mapped
        if cached is not None and cached[0] == st.st_ctime_ns:
            return cached[1]  # any xattr change moves ctime
        mapped = self.fs.model.mapped(self.where(), self.host_type == stat.S_IFLNK)
        self._mapped = (st.st_ctime_ns, mapped)
        return mapped

    def served_mode(self) -> int:
        return self._attr(os.fstat(self.fd())).mode

    def peek_attr(self) -> Attr | None:
        fd = self.box.fd
        if fd < 0:
            return None  # closed by the budget: the general path reopens it
        try:
            return self._attr(os.fstat(fd))
        except OSError:
            return None  # the general path reports the error

    async def getattr(self) -> Attr:
        return self._attr(os.fstat(self._fd_now()))

    async def type_and_ino(self) -> tuple[int, int]:
        if self.fs.mapped:  # a stored mode may make a host file a symlink or a device
            a = await self.getattr()
            return a.mode, a.ino
        return self.host_type, self.ino

    @under_caller
    async def setattr(self, changes: SetAttr) -> None:
        self.fs.writable()
        self._begin_held()
        if changes.size is not None:
            await self._truncate(changes.size)
        where = self.where()
        model = self.fs.model
        if changes.uid is not None or changes.gid is not None:
            model.chown(where, changes.uid, changes.gid)
            self._mapped = None  # ctime may not move within one timestamp tick
        if changes.mode is not None:
            model.chmod(where, changes.mode, self.served_mode())
            self._mapped = None
        if changes.atime_ns == UTIME_NOW and changes.mtime_ns == UTIME_NOW:
            # utimensat(NULL): the one time change a writer who is not the owner may make
            # (utimensat(2)), which a host call under the caller's identity must ask for
            os.utime(where[0], None, follow_symlinks=where[1])
        elif changes.atime_ns is not None or changes.mtime_ns is not None:
            st = os.fstat(self.fd())
            os.utime(where[0], ns=(_when(changes.atime_ns, st.st_atime_ns),
                                   _when(changes.mtime_ns, st.st_mtime_ns)),
                     follow_symlinks=where[1])
        elif changes.ctime and changes == SetAttr(ctime=True):
            # ctime alone (a chmod, chown or truncate moved it already); a chown to the
            # same owner touches it, but clears set-id bits (chown_common's
            # ATTR_KILL_SUID), so never after a chmod that set them (v9fs sends chmod
            # as MODE|CTIME)
            try:  # a chown to the same owner is how Linux touches ctime alone
                os.chown(where[0], -1, -1, follow_symlinks=where[1])
            except OSError:
                pass

    async def _truncate(self, size: int) -> None:
        if self.host_type == stat.S_IFDIR:
            raise OSError(errno.EISDIR, "is a directory")
        if self.host_type != stat.S_IFREG:
            raise OSError(errno.EINVAL, "not a regular file")
        if await truncate_through_writer(self, thread_cred(), size):
            return  # ftruncate(2): what the user's open descriptor lets it do
        self.pins += 1
        try:  # freeing the blocks of a large file can take a while
            await self.fs.in_thread(os.truncate, proc_path(self.fd()), size)
        finally:
            self.pins -= 1

    async def statfs(self) -> StatFs:
        return host_statfs(self._fd_now())

    # --- names ---------------------------------------------------------------

    def _dir_fd(self, *names: str) -> int:
        """This directory's descriptor at the start of an operation naming ``names``."""
        for name in names:
            _check_name(name)
        self._check_dir()
        fd = self._begin()
        check_contained(self)  # a directory the host moved out lends no names outside
        return fd

    def _check_dir(self) -> None:
        if self.host_type != stat.S_IFDIR:
            raise OSError(errno.ENOTDIR, "not a directory")

    async def walk(self, name: str) -> Node:
        if name == "..":
            return self.parent or self  # never the host's '..'
        if "/" in name or "\0" in name or name in ("", "."):
            raise OSError(errno.ENOENT, f"invalid name {name!r} in walk")
        if self.host_type != stat.S_IFDIR:
            raise OSError(errno.ENOTDIR, "not a directory")
        fs = self.fs
        account = current_account()
        fs.fds.trim(account)  # a walk opens its child's descriptor
        dfd = self.fd()
        epoch = check_contained(self)  # a directory the host moved out lends no names
        cred = host_cred(fs)
        if cred is None:
            return fs.adopt(os.open(name, O_PATH_FLAGS, dir_fd=dfd), self, name, account)
        # the one check the kernel makes here is search permission on this directory,
        # for the user: asked of the kernel once per user until the directory's
        # attributes change (IN_ATTRIB advances the epoch)
        grants = self.search_grants
        if grants is None:
            grants = self.search_grants = SearchGrants()
        return grants.walk(epoch, cred, self._adopt, name, self._watched)

    def _watched(self) -> bool:
        return watched(self)

    def _adopt(self, name: str) -> PassthroughNode:
        fd = os.open(name, O_PATH_FLAGS, dir_fd=self.fd())
        return self.fs.adopt(fd, self, name, current_account())

    async def readdir(self, cookie: int, count: int) -> list[DirEntry]:
        return (await self._current_listing()).after(cookie, count)

    async def listing_end(self) -> int:
        # cookies are numbers in first-sight order: whatever a rescan after this finds
        # new gets a number above the last one handed out now
        return (await self._current_listing()).last_cookie

    async def _current_listing(self) -> DirListing:
        """This directory's listing, rescanned if the host directory changed."""
        dfd = self._dir_fd()
        listing = self.listing
        if listing is None:
            listing = self.listing = DirListing()
        st = os.fstat(dfd)
        stamp = stamp_of(st)
        if listing.stamp != stamp:
            generation = listing.generation
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
            try:
                mapped = self.fs.model.specials_as_files
                if st.st_size <= _INLINE_SCAN_BYTES:
                    scanned = scan_directory(fd, mapped)
                else:
                    scanned = await self.fs.in_thread(scan_directory, fd, mapped)
            finally:
                os.close(fd)
            dev, inodes = st.st_dev, self.fs.inodes
            # a change made by this backend during the scan leaves the snapshot stale
            listing.rebuild(scanned, lambda ino: inodes(dev, ino),
                            stamp if listing.generation == generation else None)
        return listing

    async def readlink(self) -> str:  # readlinkat checks no permission: no identity switch
        fd = self._fd_now()
        if self.host_type == stat.S_IFLNK:
            return os.readlink("", dir_fd=fd)  # readlinkat on the O_PATH descriptor itself
        if self.host_type == stat.S_IFREG and stat.S_ISLNK(self.served_mode()):
            return self._read_mapped_link()
        raise OSError(errno.EINVAL, "not a symlink")

    def _read_mapped_link(self) -> str:
        """mapped-xattr keeps a symlink as a regular file holding the target (as QEMU)."""
        fd = os.open(proc_path(self.fd()), os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 65536)
        finally:
            os.close(fd)
        return data.decode("utf-8", "surrogateescape")

    # --- opening -------------------------------------------------------------

    async def open(self, flags: OpenFlags) -> Handle:
        cred = host_cred(self.fs)
        if cred is not None and self.host_type == stat.S_IFREG and not flags.truncates:
            handle = self._open_by_ring(cred, flags)
            if handle is not None:
                return handle
        return await self._open_switched(flags)

    def _open_by_ring(self, cred: HostCred, flags: OpenFlags) -> Handle | None:
        """A user's open of a regular file, checked by the kernel for ``cred`` without
        switching this thread (userring.py); None: open it the authoritative way, which
        gives the client its errno."""
        if not flags.read_only_access:
            self.fs.writable()
        self._begin_held(opens=True)
        parent = self.parent
        if parent is None:
            return None
        host_flags = host_open_flags(flags)
        check_open()  # EMFILE/ENFILE before anything is opened (vfs.budget)
        fd = open_as(cred, parent.fd(), self.name, host_flags)
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == self.key:  # the very file walked to
                return OpenerFileHandle(self.fs, self, fd, host_flags & os.O_ACCMODE, True,
                                        cred)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the name leads elsewhere now: through /proc/self/fd, as a switch
        return None

    @under_caller
    async def _open_switched(self, flags: OpenFlags) -> Handle:
        writes = not flags.read_only_access or flags.truncates
        if writes:
            self.fs.writable()
        self._begin_held(opens=True)
        kind = self.host_type
        if kind == stat.S_IFDIR:
            if writes:
                raise OSError(errno.EISDIR, "is a directory")
            if thread_cred() is not None:  # the kernel checks read permission, as opendir
                os.close(os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                                 dir_fd=self.fd()))
            return DirHandle()
        self._check_openable(kind)
        host_flags = host_open_flags(flags)
        check_open()  # EMFILE/ENFILE before anything is opened (vfs.budget)
        if kind == stat.S_IFIFO:  # may wait for the other end: bounded, cancellable
            fd = await self.fs.fifo_opens.open(self, host_flags)
        else:  # the very object walked to, even if moved since
            fd = open_noatime(proc_path(self.fd()), host_flags)
        return self._handle(self, fd, host_flags, kind == stat.S_IFREG)

    def _check_openable(self, kind: int) -> None:
        if kind == stat.S_IFLNK:
            raise OSError(errno.ELOOP, "is a symbolic link")
        if kind in (stat.S_IFCHR, stat.S_IFBLK):
            # as a nodev mount: a device node inside the export must not open a host device
            raise OSError(errno.EACCES, "device nodes are not opened on the host")
        if kind == stat.S_IFSOCK:
            raise OSError(errno.ENXIO, "cannot open a socket")
        if self.fs.model.specials_as_files and stat.S_ISLNK(self.served_mode()):
            raise OSError(errno.ELOOP, "is a symbolic link")

    # --- creation ------------------------------------------------------------

    @under_caller
    async def create(self, name: str, flags: OpenFlags, mode: int, uid: int,
                     gid: int) -> tuple[Node, Handle]:
        self.fs.writable()
        dfd = self._dir_fd(name)
        model = self.fs.model
        host_flags = host_open_flags(flags) | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        check_open()
        fd = os.open(name, host_flags, model.host_mode(mode, False), dir_fd=dfd)
        try:
            model.own_new(fd, stat.S_IFREG | mode, uid, gid)
            node = self.fs.adopt(os.open(proc_path(fd), os.O_PATH | os.O_CLOEXEC), self, name,
                                 current_account())
        except BaseException:
            os.close(fd)
            _remove_quietly(dfd, name, False)
            raise
        finally:
            self._changed()
        return node, self._handle(node, fd, host_flags, True)

    def _handle(self, node: PassthroughNode, fd: int, host_flags: int,
                seekable: bool) -> FileHandle:
        cred = thread_cred()  # the opener's, while this step runs under it
        if cred is None:
            return FileHandle(self.fs, node, fd, host_flags & os.O_ACCMODE, seekable)
        return OpenerFileHandle(self.fs, node, fd, host_flags & os.O_ACCMODE, seekable, cred)

    @under_caller
    async def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Node:
        self.fs.writable()
        dfd = self._dir_fd(name)
        os.mkdir(name, self.fs.model.host_mode(mode, True), dir_fd=dfd)
        self._changed()
        return self._finish_new(name, True, stat.S_IFDIR | mode, uid, gid, None)

    @under_caller
    async def symlink(self, name: str, target: str, uid: int, gid: int) -> Node:
        self.fs.writable()
        dfd = self._dir_fd(name)
        mode = stat.S_IFLNK | 0o777
        if self.fs.model.specials_as_files:
            self._make_file(name, target.encode("utf-8", "surrogateescape"), mode, uid, gid, None)
            return self._adopt(name)
        os.symlink(target, name, dir_fd=dfd)
        self._changed()
        return self._finish_new(name, False, mode, uid, gid, None)

    @under_caller
    async def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> Node:
        self.fs.writable()
        dfd = self._dir_fd(name)
        kind = stat.S_IFMT(mode)
        if kind in (0, stat.S_IFREG):
            mode, rdev = stat.S_IFREG | stat.S_IMODE(mode), 0
        elif kind not in _SPECIAL:
            raise OSError(errno.EINVAL, "mknod makes FIFOs, sockets and device nodes")
        if self.fs.model.specials_as_files:
            # QEMU's mapped-xattr: a regular file carrying the type, mode and rdev
            self._make_file(name, b"", mode, uid, gid, rdev)
            return self._adopt(name)
        os.mknod(name, self.fs.model.host_mode(mode, False) | stat.S_IFMT(mode), rdev,
                 dir_fd=dfd)
        self._changed()
        return self._finish_new(name, False, mode, uid, gid, rdev)

    def _finish_new(self, name: str, is_dir: bool, mode: int, uid: int, gid: int,
                    rdev: int | None) -> Node:
        """Give a just-made object its owner and mode; remove it if that fails."""
        try:
            node = self._adopt(name)
            self.fs.model.own_new(node.where(), mode, uid, gid, rdev)
        except BaseException:
            _remove_quietly(self.fd(), name, is_dir)
            raise
        return node

    def _make_file(self, name: str, data: bytes, mode: int, uid: int, gid: int,
                   rdev: int | None) -> None:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     self.fs.model.host_mode(mode, False), dir_fd=self.fd())
        self._changed()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            self.fs.model.own_new(fd, mode, uid, gid, rdev)
        except BaseException:
            _remove_quietly(self.fd(), name, False)
            raise
        finally:
            os.close(fd)

    # --- links, renames, removal ---------------------------------------------

    @under_caller
    async def link(self, name: str, target: Node) -> None:
        self.fs.writable()
        dfd = self._dir_fd(name)
        source = self.fs.own_node(target)
        if source.host_type == stat.S_IFDIR or source.parent is None:
            raise OSError(errno.EPERM, "cannot link a directory")
        # By name, never following: linkat through /proc would follow a symlink's target
        # and could link a file from outside the export. The name must still be this file.
        check_contained(source.parent)
        sfd = source.parent.fd()
        st = os.stat(source.name, dir_fd=sfd, follow_symlinks=False)
        if (st.st_dev, st.st_ino) != source.key:
            raise OSError(errno.ENOENT, "the file has no name left in the export")
        os.link(source.name, name, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
        self._changed()

    @under_caller
    async def rename(self, oldname: str, newdir: Node, newname: str) -> None:
        self.fs.writable()
        dfd = self._dir_fd(oldname, newname)
        target = self.fs.own_node(newdir)
        target._check_dir()
        check_contained(target)
        ndfd = target.fd()  # a reopen here closes nothing: the budget trims between operations
        st = os.stat(oldname, dir_fd=dfd, follow_symlinks=False)
        target._hold_victim(ndfd, newname)  # the file replaced, if any
        os.rename(oldname, newname, src_dir_fd=dfd, dst_dir_fd=ndfd)
        self._changed()
        target._changed()
        moved = self.fs.live((st.st_dev, st.st_ino))
        if moved is not None and moved.parent is self and moved.name == oldname:
            moved.parent, moved.name = target, newname

    @under_caller
    async def unlink(self, name: str, is_dir: bool) -> None:
        self.fs.writable()
        dfd = self._dir_fd(name)
        self._hold_victim(dfd, name)
        try:
            if is_dir:
                os.rmdir(name, dir_fd=dfd)
            else:
                os.unlink(name, dir_fd=dfd)
        finally:
            self._changed()

    def _hold_victim(self, dfd: int, name: str) -> None:
        """Before ``name`` may lose its last link: a fid's node of it whose descriptor the
        budget closed reopens it now, as it could not by name afterwards."""
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except OSError:
            return  # the unlink or rename reports it
        victim = self.fs.live((st.st_dev, st.st_ino))
        if victim is not None and victim.box.fd < 0:
            try:
                victim.fd()
            except OSError:
                pass

    # --- extended attributes -------------------------------------------------

    async def xattr_get(self, name: str) -> bytes:
        if name.startswith("user."):
            return await self._xattr_get_as_caller(name)
        # Linux's xattr_permission checks nothing for system.*/security.* reads (the ACL
        # and label `ls -l` asks for each file), and trusted.* needs CAP_SYS_ADMIN, which
        # no fsuid drops (vfs/ refuses it to non-root): no identity switch for them
        return self._xattr_get(name)

    @under_caller
    async def _xattr_get_as_caller(self, name: str) -> bytes:
        return self._xattr_get(name)  # user.*: read permission on the file (xattr_permission)

    def _xattr_get(self, name: str) -> bytes:
        self._begin_held()
        if self.fs.model.hides(name):
            raise OSError(errno.ENODATA, "no such attribute", name)
        path, follow = self.where()
        return os.getxattr(path, name, follow_symlinks=follow)

    async def xattr_list(self) -> list[str]:  # listxattr checks no permission
        self._begin_held()
        path, follow = self.where()
        hides = self.fs.model.hides
        return [n for n in os.listxattr(path, follow_symlinks=follow) if not hides(n)]

    @under_caller
    async def xattr_set(self, name: str, value: bytes, flags: int) -> None:
        self.fs.writable()
        self._begin_held()
        if flags & ~(os.XATTR_CREATE | os.XATTR_REPLACE):
            raise OSError(errno.EINVAL, "bad xattr flags")
        if self.fs.model.hides(name):
            raise OSError(errno.EACCES, "user.virtfs.* belongs to the mapped-xattr model")
        path, follow = self.where()
        os.setxattr(path, name, bytes(value), flags, follow_symlinks=follow)

    @under_caller
    async def xattr_remove(self, name: str) -> None:
        self.fs.writable()
        self._begin_held()
        if self.fs.model.hides(name):
            raise OSError(errno.EACCES, "user.virtfs.* belongs to the mapped-xattr model")
        path, follow = self.where()
        os.removexattr(path, name, follow_symlinks=follow)


def _check_name(name: str) -> None:
    """One entry's name, never a path: vfs/ checks this first, and so do we."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise OSError(errno.EINVAL, f"invalid file name {name!r}")


def _when(value: int | None, current: int) -> int:
    if value is None:
        return current
    return time.time_ns() if value == UTIME_NOW else value


def _remove_quietly(dfd: int, name: str, is_dir: bool) -> None:
    try:
        if is_dir:
            os.rmdir(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)
    except OSError:
        pass

