"""One attach's view: a mount tree of backends, walks across mounts, qids, and the checks.

Read-only mounts, name validity and POSIX permissions are enforced here,
before any backend is called, so a backend bug cannot widen them.
"""

from __future__ import annotations

import copy
import errno
import functools
import itertools
import stat
from dataclasses import dataclass, replace

from ninep.wire.constants import QTDIR, QTFILE, QTSYMLINK
from ninep.wire.qid import Qid, qid_type

from .caller import serving
from .idmap import IdMap
from .image_claims import CLAIMS
from .node import (
    DT_DIR,
    Attr,
    Backend,
    Cred,
    DirEntry,
    Handle,
    Node,
    OpenFlags,
    SetAttr,
    StatFs,
    dtype_of_mode,
)
from .operands import (
    NAME_MAX,
    PATH_MAX,
    check_symlink_target,
    clamp_times,
    not_an_image,
    refuse_existing,
    require_directory,
    too_long,
    validate_name,
)
from .perms import (
    HOST_GROUPS,
    R_OK,
    W_OK,
    X_OK,
    Membership,
    check_access,
    check_owner,
    check_sticky,
    checked_setattr,
)
from .setid import (
    SETID,
    WriteGuard,
    changes_set_setid,
    host_applies,
    new_file_mode,
    note_setid_change,
)
from .synthetic_dir import SyntheticBackend, SyntheticDir

__all__ = [
    "DOT_COOKIES",
    "NO_LISTING_END",
    "QTDIR",
    "QTFILE",
    "QTSYMLINK",
    "Location",
    "Mount",
    "Namespace",
    "SyntheticDir",
    "qid_type",
    "validate_name",
]

DOT_COOKIES = 2  # namespace cookies 1 and 2 follow "." and ".."; backend cookie c is c + 2
NO_LISTING_END = 1 << 64  # Namespace.listing_end of a directory that cannot grow
_SYNTHETIC_DEV = 0xFFFF
_INO_LIMIT = 1 << 48  # a qid.path is 16 bits of mount (dev) and 48 of inode
_FOLD = 0x9E37_79B9_7F4A_7C15  # 2^64 / golden ratio: spreads the high bits (Knuth)


@dataclass(eq=False)
class Mount:
    """A backend instance mounted at ``path``; ``dev`` keeps its qids apart from others'."""

    path: str
    backend: Backend
    read_only: bool = False
    dev: int = 0  # the mount's place in the configuration, never the order of events
    parent: Location | None = None  # where ".." from this mount's root leads

    def qid_path(self, ino: int) -> int:
        """Map a backend inode number to a qid.path unique across the namespace.

        A function of (dev, ino) alone, so that every worker process (ninep/workers/)
        and every restart gives a file the same qid.path: a kernel client that
        reconnects elsewhere keeps its inode numbers. An inode number of 48 bits or
        more (XFS inode64, btrfs subvolumes) has its high bits folded in by a
        multiplicative hash: distinct files may then share a qid.path, with odds of
        about n^2 / 2^49 for n such files, where a table of first sightings would
        differ from process to process."""
        if ino < _INO_LIMIT:
            return (self.dev << 48) | ino
        folded = (ino ^ ((ino >> 48) * _FOLD)) & (_INO_LIMIT - 1)
        return (self.dev << 48) | folded


@dataclass(frozen=True, slots=True)
class Location:
    """A node and the mount it belongs to: what a fid points at."""

    mount: Mount
    node: Node


class Namespace:
    """A mount tree, built once (``await Namespace.build(...)``) and shared by attaches.

    :meth:`view` gives one attach its own read-only flag and id mapping over
    the same tree: both are enforced here, before any backend is called.
    """

    read_only = False
    idmap: IdMap | None = None
    groups: Membership = HOST_GROUPS  # where a caller's groups come from (vfs/perms.py)

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self._synthetic = Mount("/", SyntheticBackend(), read_only=True, dev=_SYNTHETIC_DEV)
        self._root = Location(self._synthetic, self._synthetic.backend.root)
        self._covered: dict[tuple[int, int], Mount] = {}  # (id(outer mount), ino) -> inner
        self._synthetic_inos = itertools.count(2)  # 1 is the synthetic root
        self.mounts: list[Mount] = []

    @classmethod
    async def build(cls, mounts: list[tuple[str, Backend, bool]], name: str = "default") -> Namespace:
        """Mount each (path, backend, read_only), shallowest first."""
        ns = cls(name)
        for path, backend, read_only in sorted(mounts, key=lambda m: _depth(m[0])):
            await ns.mount(path, backend, read_only)
        return ns

    async def mount(self, path: str, backend: Backend, read_only: bool = False) -> Mount:
        """Mount ``backend`` at ``path``: on a synthetic directory, or over a directory of
        an existing mount (which must exist there)."""
        parts = [p for p in path.split("/") if p]
        dev = len(self.mounts)
        mount = Mount("/" + "/".join(parts), backend, read_only or backend.read_only, dev=dev)
        if not parts:
            if self.mounts:
                raise ValueError("/ must be mounted first")
            mount.parent = None
            self._root = Location(mount, backend.root)
            self.mounts.append(mount)
            return mount
        loc = self._root
        for index, part in enumerate(parts):
            if loc.mount is self._synthetic:
                sdir = loc.node
                assert isinstance(sdir, SyntheticDir)
                child = sdir.children.get(part)
                if index == len(parts) - 1:
                    if child is not None:
                        raise ValueError(f"mount point {mount.path} is already in use")
                    sdir.children[part] = mount
                    mount.parent = loc
                    break
                if child is None:
                    child = sdir.children[part] = SyntheticDir(next(self._synthetic_inos), sdir)
                loc = self._enter(loc, child)
                continue
            inner = await self._mount_point_step(loc, part, mount.path)
            if index == len(parts) - 1:
                attr = await inner.node.getattr()
                if not stat.S_ISDIR(attr.mode):
                    raise ValueError(f"mount point {mount.path} is not a directory")
                self._covered[(id(inner.mount), attr.ino)] = mount
                mount.parent = loc
                break
            loc = inner
        self.mounts.append(mount)
        return mount

    async def _mount_point_step(self, loc: Location, part: str, path: str) -> Location:
        """Walk toward a mount point inside a backend, making the directory in a
        writable one (``--mount /=ram --mount /ro=ram,ro`` needs /ro in the RAM disk)."""
        try:
            return await self.walk(loc, part, _ROOT)
        except FileNotFoundError:
            if loc.mount.read_only:
                raise ValueError(f"mount point {path}: {part!r} does not exist in the read-only "
                                 f"backend mounted at {loc.mount.path}") from None
        try:
            return await self.mkdir(loc, part, 0o755, 0, _ROOT)
        except FileExistsError:  # made meanwhile by another process on the same host
            return await self.walk(loc, part, _ROOT)  # directory (worker processes)
        except OSError as exc:
            raise ValueError(f"mount point {path}: cannot make {part!r} in the backend mounted "
                             f"at {loc.mount.path}: {exc.strerror}") from None

    def _enter(self, loc: Location, child: Node | Mount) -> Location:
        if isinstance(child, Mount):
            return Location(child, child.backend.root)
        return Location(loc.mount, child)

    def root(self) -> Location:
        return self._root

    def view(self, read_only: bool = False, idmap: IdMap | None = None,
             client_groups: bool = False) -> Namespace:
        """This tree as one attach sees it: everything read-only if ``read_only``,
        client ids translated by ``idmap``, group membership taken on the client
        kernel's word if ``client_groups`` (vfs/perms.py). Shares the mounts; costs
        one copy."""
        if idmap is not None and idmap.identity:
            idmap = None
        if not read_only and idmap is None and not client_groups:
            return self
        view = copy.copy(self)
        view.read_only = read_only or self.read_only
        view.idmap = idmap or self.idmap
        if client_groups:
            view.groups = Membership(True, None if view.idmap is None else view.idmap.anon_gid)
        return view

    def _gid_in(self, gid: int) -> int:
        return gid if self.idmap is None else self.idmap.gid_in(gid)

    # --- identity --------------------------------------------------------

    def qid(self, loc: Location, attr: Attr) -> Qid:
        return Qid.of(attr.mode, loc.mount.qid_path(attr.ino))

    async def getattr(self, loc: Location) -> Attr:
        return self.client_attr(await loc.node.getattr())

    def client_attr(self, attr: Attr) -> Attr:
        """``attr`` with owners as the client knows them (this view's id map); a new
        object when they differ, so a backend's live attributes are never changed."""
        return attr if self.idmap is None else self.idmap.attr_out(attr)

    # --- walking ---------------------------------------------------------

    async def walk(self, loc: Location, name: str, cred: Cred) -> Location:
        """One step from the directory ``loc``; '..' stops at the namespace root."""
        mount = loc.mount
        serving(cred, mount.backend)  # vfs/caller.py: whom the backend call serves
        if mount.backend.keeps_ownership and cred.uid != 0:
            attr = await loc.node.getattr()
            if not stat.S_ISDIR(attr.mode):
                raise OSError(errno.ENOTDIR, "not a directory")
            check_access(attr, cred, X_OK, groups=self.groups)
            self._lend_group(mount.backend, cred, attr.gid,
                             self.groups.client and (attr.mode >> 3) & X_OK)
        else:  # root may search any directory, other backends check for themselves
            await require_directory(loc)
        if name == "..":
            return await self._walk_up(loc, cred)
        if name == ".":
            return loc
        if not name:  # Linux's lookup of an empty path, and a path-based server's answer
            raise OSError(errno.ENOENT, "empty name in walk")
        if "/" in name or "\0" in name:
            raise OSError(errno.ENOENT, f"invalid name {name!r} in walk")
        if len(name) > NAME_MAX // 4 and len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
            # what Linux's lookup answers (simple_lookup) before any filesystem searches
            raise OSError(errno.ENAMETOOLONG, "name longer than 255 bytes in walk")
        if mount is self._synthetic:
            assert isinstance(loc.node, SyntheticDir)
            child = loc.node.children.get(name)
            if child is None:
                raise OSError(errno.ENOENT, "no such file or directory")
            return self._enter(loc, child)
        node = await loc.node.walk(name)
        if self._covered:
            inner = self._covered.get((id(mount), (await node.getattr()).ino))
            if inner is not None:
                return Location(inner, inner.backend.root)
        return Location(mount, node)

    async def _walk_up(self, loc: Location, cred: Cred) -> Location:
        mount = loc.mount
        if loc.node is mount.backend.root and mount is not self._synthetic:
            # mount.parent: the directory holding the mount point, recorded at mount time
            return mount.parent or loc
        if mount is self._synthetic:
            assert isinstance(loc.node, SyntheticDir)
            return Location(mount, loc.node.parent)
        return Location(mount, await loc.node.walk(".."))

    # --- checks ----------------------------------------------------------

    def _lend_group(self, backend: Backend, cred: Cred, gid: int, granted: int | bool) -> None:
        """A host that checks permissions itself (passthrough under the caller's fsuid,
        vfs/caller.py) is told that the caller is in ``gid`` for the next call, when the
        checks made here ``granted`` it (the client group model's word, or a set-group-id
        directory's group, which Linux gives whatever the creator's groups)."""
        if (granted and not cred.in_group(gid) and gid != self.groups.anonymous
                and host_applies(backend)):
            serving(replace(cred, groups=cred.groups | {gid}), backend)

    def _lend_new_group(self, loc: Location, dir_attr: Attr | None, cred: Cred, gid: int) -> None:
        """A create's gid for the host: the client's word under the client model; in a
        set-group-id directory its group (inode_init_owner), which a host call under a
        non-member's identity could not give the new file (chown) or keep (chmod)."""
        inherited = (dir_attr is not None and bool(dir_attr.mode & stat.S_ISGID)
                     and gid == dir_attr.gid)
        self._lend_group(loc.mount.backend, cred, gid, self.groups.client or inherited)

    def _writable(self, loc: Location, what: str = "") -> None:
        if loc.mount.read_only or self.read_only:
            raise OSError(errno.EROFS, "read-only file system", what or None)

    async def _check(self, loc: Location, cred: Cred, want: int) -> Attr | None:
        if not loc.mount.backend.keeps_ownership:
            return None
        attr = await loc.node.getattr()
        check_access(attr, cred, want, groups=self.groups)
        return attr

    async def _check_dir_write(self, loc: Location, cred: Cred, new_name: str = "") -> Attr | None:
        if new_name and (loc.mount.read_only or self.read_only):
            await refuse_existing(loc, new_name)
        self._writable(loc)
        return await self._check(loc, cred, W_OK | X_OK)

    # --- operations ------------------------------------------------------

    async def open(self, loc: Location, flags: int, cred: Cred) -> Handle:
        serving(cred, loc.mount.backend)
        decoded = OpenFlags(flags)  # the one decoding: backends ask its properties
        writes = decoded.modifies
        if writes:
            self._writable(loc)
            await not_an_image(loc)
        want = (R_OK if decoded.reads else 0) | (W_OK if writes else 0)
        attr = await self._check(loc, cred, want)
        if attr is not None:
            self._lend_group(loc.mount.backend, cred, attr.gid,
                             self.groups.client and want & ~((attr.mode >> 3) & 7) == 0)
        handle = await loc.node.open(decoded)
        if writes and attr is not None and cred.uid != 0 and not host_applies(loc.mount.backend):
            guard = WriteGuard(handle, loc.node, loc.mount.backend, attr.mode,
                               functools.partial(self.groups.member, cred))
            if decoded.truncates:  # handle_truncate: do_truncate removes privileges too
                await guard.remove_privs()
            handle = guard
        return handle

    async def create(self, loc: Location, name: str, flags: int, mode: int, gid: int,
                     cred: Cred) -> tuple[Location, Handle]:
        serving(cred, loc.mount.backend)
        await require_directory(loc)
        validate_name(name)
        dir_attr = await self._check_dir_write(loc, cred, name)
        gid = self._gid_in(gid)
        mode = self._new_mode(loc, dir_attr, mode, gid, cred)
        self._lend_new_group(loc, dir_attr, cred, gid)
        decoded = OpenFlags(flags)
        node, handle = await loc.node.create(name, decoded, mode, cred.uid, gid)
        if (dir_attr is not None and cred.uid != 0 and decoded.writes
                and not host_applies(loc.mount.backend)):
            handle = WriteGuard(handle, node, loc.mount.backend, stat.S_IFREG | mode,
                                functools.partial(self.groups.member, cred))
        return Location(loc.mount, node), handle

    def _new_mode(self, loc: Location, dir_attr: Attr | None, mode: int, gid: int,
                  cred: Cred) -> int:
        if dir_attr is None:  # a backend whose host keeps the modes
            return mode
        mode = new_file_mode(mode, gid, dir_attr, cred, self.groups.member(cred, gid))
        if mode & SETID:
            note_setid_change(loc.mount.backend)
        return mode

    async def mkdir(self, loc: Location, name: str, mode: int, gid: int, cred: Cred) -> Location:
        serving(cred, loc.mount.backend)
        await require_directory(loc)
        validate_name(name)
        dir_attr = await self._check_dir_write(loc, cred, name)
        gid = self._gid_in(gid)
        self._lend_new_group(loc, dir_attr, cred, gid)
        return Location(loc.mount, await loc.node.mkdir(name, mode, cred.uid, gid))

    async def symlink(self, loc: Location, name: str, target: str, gid: int,
                      cred: Cred) -> Location:
        serving(cred, loc.mount.backend)
        await require_directory(loc)
        validate_name(name)
        check_symlink_target(target)
        dir_attr = await self._check_dir_write(loc, cred, name)
        gid = self._gid_in(gid)
        self._lend_new_group(loc, dir_attr, cred, gid)
        return Location(loc.mount, await loc.node.symlink(name, target, cred.uid, gid))

    async def mknod(self, loc: Location, name: str, mode: int, rdev: int, gid: int,
                    cred: Cred) -> Location:
        serving(cred, loc.mount.backend)
        await require_directory(loc)
        validate_name(name)
        dir_attr = await self._check_dir_write(loc, cred, name)
        if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and cred.uid != 0:
            raise OSError(errno.EPERM, "only root may create device nodes")
        gid = self._gid_in(gid)
        mode = self._new_mode(loc, dir_attr, mode, gid, cred)
        self._lend_new_group(loc, dir_attr, cred, gid)
        return Location(loc.mount, await loc.node.mknod(name, mode, rdev, cred.uid, gid))

    async def link(self, dir_loc: Location, name: str, target: Location, cred: Cred) -> None:
        serving(cred, dir_loc.mount.backend)
        await require_directory(dir_loc)
        validate_name(name)
        if target.mount is not dir_loc.mount:
            raise OSError(errno.EXDEV, "cross-mount link")
        await self._check_dir_write(dir_loc, cred, name)
        await dir_loc.node.link(name, target.node)

    async def _victim(self, dir_loc: Location, name: str, dir_attr: Attr | None,
                      cred: Cred) -> None:
        if dir_attr is not None and dir_attr.mode & stat.S_ISVTX:
            victim = await (await dir_loc.node.walk(name)).getattr()
            check_sticky(dir_attr, victim, cred)

    async def unlink(self, dir_loc: Location, name: str, is_dir: bool, cred: Cred) -> None:
        serving(cred, dir_loc.mount.backend)
        await require_directory(dir_loc)
        if name in (".", ".."):
            raise OSError(errno.EINVAL if name == "." else errno.ENOTEMPTY, "cannot remove . or ..")
        validate_name(name)
        if await self._is_mount_point(dir_loc, name):
            raise OSError(errno.EBUSY, "a mount point or a served image cannot be removed")
        dir_attr = await self._check_dir_write(dir_loc, cred)
        await self._victim(dir_loc, name, dir_attr, cred)
        await dir_loc.node.unlink(name, is_dir)

    async def rename(self, old_dir: Location, oldname: str, new_dir: Location, newname: str,
                     cred: Cred) -> None:
        serving(cred, old_dir.mount.backend)
        await require_directory(old_dir)
        await require_directory(new_dir)
        validate_name(oldname)
        validate_name(newname)
        if old_dir.mount is not new_dir.mount:
            raise OSError(errno.EXDEV, "cross-mount rename")
        if (await self._is_mount_point(old_dir, oldname)
                or await self._is_mount_point(new_dir, newname)):
            raise OSError(errno.EBUSY, "a mount point or a served image cannot be renamed")
        old_attr = await self._check_dir_write(old_dir, cred)
        new_attr = await self._check_dir_write(new_dir, cred)
        await self._victim(old_dir, oldname, old_attr, cred)
        if new_attr is not None and new_attr.mode & stat.S_ISVTX:
            try:
                await self._victim(new_dir, newname, new_attr, cred)
            except FileNotFoundError:
                pass
        await old_dir.node.rename(oldname, new_dir.node, newname)

    async def _is_mount_point(self, dir_loc: Location, name: str) -> bool:
        """``name`` is a mount point, or a file another mount serves as its image (which
        Linux would call busy too: a loop device's file is not, but a swap file is)."""
        if dir_loc.mount is self._synthetic:
            return name in dir_loc.node.children  # type: ignore[attr-defined]
        images = CLAIMS.any_in(dir_loc.mount.backend)
        if not images and not any(key[0] == id(dir_loc.mount) for key in self._covered):
            return False
        try:
            node = await dir_loc.node.walk(name)
        except OSError:
            return False
        ino = (await node.getattr()).ino
        return (id(dir_loc.mount), ino) in self._covered \
            or (images and CLAIMS.holder(dir_loc.mount.backend, ino) is not None)

    async def readlink(self, loc: Location, cred: Cred) -> str:
        serving(cred, loc.mount.backend)
        target = await loc.node.readlink()
        if len(target) >= PATH_MAX // 4 and too_long(target):
            # no Linux file system hands out more (a tar archive or a damaged image
            # might): a longer Rreadlink could not be encoded, or not fit the msize
            raise OSError(errno.ENAMETOOLONG, "symlink target longer than 4095 bytes")
        return target

    async def statfs(self, loc: Location) -> StatFs:
        return await loc.node.statfs()

    async def setattr(self, loc: Location, changes: SetAttr, cred: Cred,
                      open_for_write: bool = False) -> None:
        """Tsetattr with the checks chmod/chown/truncate/utimes make on Linux.

        ``open_for_write``: the fid is open for writing, so truncation needs no
        further permission (ftruncate on an fd, even after a chmod or unlink).
        """
        serving(cred, loc.mount.backend)
        self._writable(loc)
        if changes.size is not None:
            await not_an_image(loc)
        if self.idmap is not None:
            changes = self.idmap.setattr_in(changes)
        changes = clamp_times(changes, loc.mount.backend.time_range)
        backend = loc.mount.backend
        if backend.keeps_ownership:
            changes = await self._check_setattr(loc, changes, cred, open_for_write)
            if changes_set_setid(changes):
                note_setid_change(backend)  # open files' WriteGuards look again
        if changes != _NO_CHANGE:
            await loc.node.setattr(changes)

    async def _check_setattr(self, loc: Location, changes: SetAttr, cred: Cred,
                             open_for_write: bool) -> SetAttr:
        """Check ``changes`` as Linux's setattr_prepare does; return them with the set-id
        bits Linux clears along with them (vfs/perms.py, vfs/setid.py)."""
        attr = await loc.node.getattr()
        backend = loc.mount.backend
        checked = checked_setattr(attr, changes, cred, self.groups, open_for_write,
                                  host_applies(backend))
        if checked.gid is not None and checked.gid != attr.gid:
            self._lend_group(backend, cred, checked.gid, self.groups.client)
        return checked

    async def xattr_get(self, loc: Location, name: str, cred: Cred) -> bytes:
        serving(cred, loc.mount.backend)
        await self._check(loc, cred, R_OK)
        return await loc.node.xattr_get(name)

    async def xattr_list(self, loc: Location, cred: Cred) -> list[str]:
        serving(cred, loc.mount.backend)
        return await loc.node.xattr_list()

    async def xattr_set(self, loc: Location, name: str, value: bytes, flags: int,
                        cred: Cred) -> None:
        serving(cred, loc.mount.backend)
        self._writable(loc)
        await self._check_xattr_write(loc, name, cred)
        await loc.node.xattr_set(name, value, flags)

    async def xattr_remove(self, loc: Location, name: str, cred: Cred) -> None:
        serving(cred, loc.mount.backend)
        self._writable(loc)
        await self._check_xattr_write(loc, name, cred)
        await loc.node.xattr_remove(name)

    async def _check_xattr_write(self, loc: Location, name: str, cred: Cred) -> None:
        if name.startswith("trusted.") and cred.uid != 0:
            raise OSError(errno.EPERM, "trusted.* attributes need root")
        if loc.mount.backend.keeps_ownership:
            attr = await loc.node.getattr()
            if name.startswith("user."):
                check_access(attr, cred, W_OK, groups=self.groups)
            else:
                check_owner(attr, cred)

    async def listing_end(self, loc: Location) -> int:
        """The namespace cookie a listing of ``loc`` started now ends at (Node.listing_end);
        NO_LISTING_END for a directory that cannot grow."""
        end = await loc.node.listing_end()
        return NO_LISTING_END if end is None else end + DOT_COOKIES

    async def readdir(self, loc: Location, cookie: int, count: int,
                      end: int = NO_LISTING_END) -> list[DirEntry]:
        """Entries after the namespace cookie ``cookie``, "." and ".." first, none whose
        cookie is above ``end`` (from :meth:`listing_end` at the start of the listing)."""
        out: list[DirEntry] = []
        if cookie < DOT_COOKIES:
            attr = await loc.node.getattr()
            dots = [DirEntry(".", attr.ino, DT_DIR, 1), DirEntry("..", attr.ino, DT_DIR, 2)]
            out.extend(dots[cookie:])
            cookie = DOT_COOKIES
        for entry in await loc.node.readdir(cookie - DOT_COOKIES, max(count - len(out), 1)):
            if entry.cookie + DOT_COOKIES > end:
                break  # created after the listing began: cookies only grow from here on
            dtype = entry.dtype
            if self._covered:  # a mount point shows the type of what is mounted there
                inner = self._covered.get((id(loc.mount), entry.ino))
                if inner is not None:
                    dtype = dtype_of_mode((await inner.backend.root.getattr()).mode)
            out.append(DirEntry(entry.name, entry.ino, dtype, entry.cookie + DOT_COOKIES))
        return out


_ROOT = Cred(0, 0)
_NO_CHANGE = SetAttr()


def _depth(path: str) -> int:
    return len([p for p in path.split("/") if p])
