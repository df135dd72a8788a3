"""The three security models of QEMU's local fsdriver: passthrough, mapped-xattr, none.

``Where`` names a host object for a path-based call: ``(path, follow)``. For
anything but a symlink it is the node's /proc/self/fd magic link, followed; for
a symlink it is ``/proc/self/fd/<dir>/<name>``, not followed.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "MODELS",
    "VIRTFS_PREFIX",
    "Mapped",
    "MappedXattr",
    "NoOwnership",
    "Ownership",
    "PassthroughOwnership",
    "Where",
]

Where = tuple[str, bool]
VIRTFS_PREFIX = "user.virtfs."
VIRTFS_UID, VIRTFS_GID = "user.virtfs.uid", "user.virtfs.gid"
VIRTFS_MODE, VIRTFS_RDEV = "user.virtfs.mode", "user.virtfs.rdev"
# QEMU stores uid, gid and mode as 32-bit and rdev as 64-bit little-endian integers
# (cpu_to_le32 / cpu_to_le64 in hw/9pfs/9p-local.c local_set_xattrat), reading them
# back only when getxattr returns data.
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class Mapped:
    """What mapped-xattr stores over the host's stat (None: not stored, use the host's)."""

    uid: int | None = None
    gid: int | None = None
    mode: int | None = None
    rdev: int | None = None


def _setxattr(where: Where | int, name: str, value: bytes) -> None:
    if isinstance(where, int):
        os.setxattr(where, name, value)
    else:
        os.setxattr(where[0], name, value, follow_symlinks=where[1])


def _chmod(where: Where, perms: int) -> None:
    if not where[1]:
        raise OSError(errno.EOPNOTSUPP, "symlinks have no mode of their own on Linux")
    os.chmod(where[0], perms & 0o7777)


class Ownership:
    """How a model creates, reports and changes ownership and modes."""

    name: ClassVar[str] = ""
    keeps_ownership: ClassVar[bool] = True
    #: device nodes, FIFOs, sockets and symlinks are stored as regular files
    specials_as_files: ClassVar[bool] = False

    def host_mode(self, mode: int, is_dir: bool) -> int:
        """The permission bits a new host object is made with (fixed up in own_new)."""
        return mode & 0o7777

    def own_new(self, where: Where | int, mode: int, uid: int, gid: int,
                rdev: int | None = None) -> None:
        """Give a new object (a descriptor, or a Where) its owner and exact ``mode``."""
        if isinstance(where, int):
            os.fchmod(where, mode & 0o7777)
        elif where[1]:
            os.chmod(where[0], mode & 0o7777)

    def mapped(self, where: Where, is_link: bool) -> Mapped:
        """What this model lays over the host's stat for the object at ``where``."""
        return _NOTHING

    def chown(self, where: Where, uid: int | None, gid: int | None) -> None:
        os.chown(where[0], -1 if uid is None else uid, -1 if gid is None else gid,
                 follow_symlinks=where[1])

    def chmod(self, where: Where, perms: int, served_mode: int) -> None:
        _chmod(where, perms)

    def hides(self, xattr: str) -> bool:
        return False


_NOTHING = Mapped()


class PassthroughOwnership(Ownership):
    """The server is root: host objects get the client's uid/gid; chown applies."""

    name = "passthrough"

    def own_new(self, where: Where | int, mode: int, uid: int, gid: int,
                rdev: int | None = None) -> None:
        # chown first: it clears setuid/setgid, which the chmod then sets as asked
        if isinstance(where, int):
            os.fchown(where, uid, gid)
        else:
            os.chown(where[0], uid, gid, follow_symlinks=where[1])
        super().own_new(where, mode, uid, gid, rdev)


class NoOwnership(Ownership):
    """QEMU's ``none``: objects belong to the server; ownership changes are accepted and
    ignored; the host checks permissions for the server's own identity."""

    name = "none"
    keeps_ownership = False

    def chown(self, where: Where, uid: int | None, gid: int | None) -> None:
        return None


class MappedXattr(Ownership):
    """QEMU's ``mapped-xattr``: the client's uid, gid, mode and rdev in user.virtfs.*
    xattrs; host files are 0600 and directories 0700, owned by the server."""

    name = "mapped-xattr"
    specials_as_files = True

    def host_mode(self, mode: int, is_dir: bool) -> int:
        return 0o700 if is_dir else 0o600  # QEMU's default fmode / dmode

    def own_new(self, where: Where | int, mode: int, uid: int, gid: int,
                rdev: int | None = None) -> None:
        _setxattr(where, VIRTFS_UID, _U32.pack(uid & 0xFFFFFFFF))
        _setxattr(where, VIRTFS_GID, _U32.pack(gid & 0xFFFFFFFF))
        _setxattr(where, VIRTFS_MODE, _U32.pack(mode & 0xFFFFFFFF))
        if rdev is not None:
            _setxattr(where, VIRTFS_RDEV, _U64.pack(rdev))

    def mapped(self, where: Where, is_link: bool) -> Mapped:
        if is_link:
            return _NOTHING  # Linux allows no user.* xattrs on a symlink
        path, follow = where
        values: list[int | None] = []
        for name, layout in ((VIRTFS_UID, _U32), (VIRTFS_GID, _U32), (VIRTFS_MODE, _U32),
                             (VIRTFS_RDEV, _U64)):
            try:
                raw = os.getxattr(path, name, follow_symlinks=follow)
            except OSError as exc:
                if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
                    raise
                raw = b""
            values.append(layout.unpack(raw)[0] if len(raw) == layout.size else None)
        return Mapped(*values)

    def chown(self, where: Where, uid: int | None, gid: int | None) -> None:
        if uid is not None:
            _setxattr(where, VIRTFS_UID, _U32.pack(uid & 0xFFFFFFFF))
        if gid is not None:
            _setxattr(where, VIRTFS_GID, _U32.pack(gid & 0xFFFFFFFF))

    def chmod(self, where: Where, perms: int, served_mode: int) -> None:
        _setxattr(where, VIRTFS_MODE, _U32.pack(stat.S_IFMT(served_mode) | perms & 0o7777))

    def hides(self, xattr: str) -> bool:
        return xattr.startswith(VIRTFS_PREFIX)


MODELS: dict[str, type[Ownership]] = {
    model.name: model for model in (PassthroughOwnership, MappedXattr, NoOwnership)}
