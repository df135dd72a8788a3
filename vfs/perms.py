"""POSIX permission checks for the attaching identity, done once for every backend."""

from __future__ import annotations

import errno
import stat

from .node import Attr, Cred

__all__ = [
    "R_OK",
    "W_OK",
    "X_OK",
    "check_access",
    "check_owner",
    "check_sticky",
    "is_root",
    "may_access",
]

R_OK, W_OK, X_OK = 4, 2, 1


def is_root(cred: Cred) -> bool:
    return cred.uid == 0


def may_access(attr: Attr, cred: Cred, want: int) -> bool:
    """True when ``cred`` may access a file with ``attr`` for ``want`` (R/W/X bits).

    Root passes every check except execute on a non-directory that has no
    execute bit at all, as on Linux (generic_permission).
    """
    mode = attr.mode
    if cred.uid == 0:
        return not (want & X_OK and not stat.S_ISDIR(mode) and not mode & 0o111)
    if cred.uid == attr.uid:
        granted = (mode >> 6) & 7
    elif cred.in_group(attr.gid):
        granted = (mode >> 3) & 7
    else:
        granted = mode & 7
    return want & ~granted == 0


def check_access(attr: Attr, cred: Cred, want: int, what: str = "") -> None:
    """Raise EACCES unless ``may_access``."""
    if not may_access(attr, cred, want):
        raise OSError(errno.EACCES, "permission denied", what or None)


def check_owner(attr: Attr, cred: Cred, what: str = "") -> None:
    """Raise EPERM unless ``cred`` owns the file or is root (chmod, utimes to a set time)."""
    if cred.uid != 0 and cred.uid != attr.uid:
        raise OSError(errno.EPERM, "operation not permitted", what or None)


def check_sticky(dir_attr: Attr, victim: Attr, cred: Cred, what: str = "") -> None:
    """In a sticky directory only the file's owner, the directory's owner or root may remove it."""
    if (dir_attr.mode & stat.S_ISVTX and cred.uid != 0
            and cred.uid != victim.uid and cred.uid != dir_attr.uid):
        raise OSError(errno.EPERM, "operation not permitted (sticky directory)", what or None)
