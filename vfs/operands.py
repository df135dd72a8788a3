"""What Linux checks of a request's operands before any filesystem sees them: names,
symlink targets, times, directory operands, existing names, files served as images."""

from __future__ import annotations

import errno
import stat
from dataclasses import replace
from typing import TYPE_CHECKING

from .image_claims import CLAIMS
from .node import UTIME_NOW, SetAttr
from .synthetic_dir import SyntheticDir

if TYPE_CHECKING:
    from .namespace import Location

__all__ = ["NAME_MAX", "PATH_MAX", "check_symlink_target", "clamp_times", "not_an_image",
           "refuse_existing", "require_directory", "too_long", "validate_name"]

NAME_MAX = 255
PATH_MAX = 4096  # Linux's, counting the NUL: the longest symlink target is 4095 bytes
_NS = 1_000_000_000


def validate_name(name: str) -> None:
    """A name a client may create: not empty, no '/', no NUL, not '.' or '..', <= 255 bytes."""
    if not name or name in (".", ".."):
        raise OSError(errno.EINVAL, f"invalid file name {name!r}")
    if "/" in name or "\0" in name:
        raise OSError(errno.EINVAL, f"file name {name!r} contains '/' or NUL")
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise OSError(errno.ENAMETOOLONG, "file name longer than 255 bytes")



async def refuse_existing(loc: Location, name: str) -> None:
    """Linux's filename_create looks the name up before the read-only check: an existing
    name (a mount point too) is EEXIST, not EROFS, and ``mkdir -p`` relies on it."""
    if isinstance(loc.node, SyntheticDir) and name in loc.node.children:
        raise OSError(errno.EEXIST, "file exists", name)
    try:
        await loc.node.walk(name)
    except OSError:
        return
    raise OSError(errno.EEXIST, "file exists", name)


async def not_an_image(loc: Location) -> None:
    """ETXTBSY for writing to or truncating a file another mount serves as its image,
    as Linux answers for an active swap file (S_SWAPFILE)."""
    backend = loc.mount.backend
    if CLAIMS.any_in(backend):
        holder = CLAIMS.holder(backend, (await loc.node.type_and_ino())[1])
        if holder is not None:
            raise OSError(errno.ETXTBSY, f"the file is served as {holder}")


async def require_directory(loc: Location) -> None:
    """Linux answers ENOTDIR whenever a directory operand is not a directory (the
    lookup of "file/name", a *at() call whose dirfd is a file), before it checks a
    name, a permission or a read-only mount; checked here for every backend, whose
    own answer differed (ext2 wrote an entry into a symlink). A node's kind never
    changes, so type_and_ino answers without asking the storage where it can."""
    if not stat.S_ISDIR((await loc.node.type_and_ino())[0]):
        raise OSError(errno.ENOTDIR, "not a directory")


def check_symlink_target(target: str) -> None:
    """What Linux's symlink(2) refuses before any filesystem sees the target."""
    if not target:
        raise OSError(errno.ENOENT, "empty symlink target")
    if "\0" in target:  # a C string ends there; diod and QEMU would store a shorter target
        raise OSError(errno.EINVAL, "NUL byte in a symlink target")
    if too_long(target):
        raise OSError(errno.ENAMETOOLONG, "symlink target longer than 4095 bytes")


def too_long(target: str) -> bool:
    return len(target.encode("utf-8", "surrogateescape")) >= PATH_MAX


def clamp_times(changes: SetAttr, time_range: tuple[int, int]) -> SetAttr:
    """Explicit times clamped to what the backend can store, as Linux's
    timestamp_truncate clamps them to a superblock's s_time_min/s_time_max."""
    low, high = time_range[0] * _NS, time_range[1] * _NS + _NS - 1
    atime, mtime = changes.atime_ns, changes.mtime_ns
    if atime is not None and atime != UTIME_NOW:
        atime = min(max(atime, low), high)
    if mtime is not None and mtime != UTIME_NOW:
        mtime = min(max(mtime, low), high)
    if atime == changes.atime_ns and mtime == changes.mtime_ns:
        return changes
    return replace(changes, atime_ns=atime, mtime_ns=mtime)
