"""POSIX permission checks for the attaching identity, done once for every backend.

9P2000.L carries a uid per attach and no group list, so where a caller's groups
come from is a choice (``Membership``, docs/config.md "Group membership"):

- ``host`` (the default): the groups the server's user database gives the
  attach's uid (``getgrouplist``, resolved at the attach), plus, for one create,
  the gid the client sends with it (Linux's v9fs sends the creating process's
  fsgid, or the directory's group in a set-group-id directory);
- ``client``: the client kernel's word. Linux's v9fs checks every access and
  every chown with the calling process's own groups before it sends a request
  (generic_permission, setattr_prepare), as QEMU's 9pfs relies on for its guest;
  the server then grants a non-owner what the group *or* the other class allows
  (the client already chose between them) and lets an owner give its file any
  group, except a gid the policy's id map made anonymous.
"""

from __future__ import annotations

import errno
import stat
from dataclasses import dataclass, replace

from .node import UTIME_NOW, Attr, Cred, SetAttr
from .setid import mode_change_only_kills, settle_setattr

__all__ = [
    "HOST_GROUPS",
    "R_OK",
    "W_OK",
    "X_OK",
    "Membership",
    "check_access",
    "check_owner",
    "check_sticky",
    "checked_setattr",
    "is_root",
    "may_access",
]

R_OK, W_OK, X_OK = 4, 2, 1


@dataclass(frozen=True, slots=True)
class Membership:
    """Which groups count as the caller's (the policy's ``groups`` model)."""

    client: bool = False  # "client": the client kernel has checked membership itself
    anonymous: int | None = None  # the id map's anonymous gid: never trusted on the client's word

    def member(self, cred: Cred, gid: int) -> bool:
        """Whether ``cred`` may act as a member of ``gid`` (chgrp, a kept set-group-id bit)."""
        return cred.in_group(gid) or (self.client and gid != self.anonymous)


HOST_GROUPS = Membership()


def is_root(cred: Cred) -> bool:
    return cred.uid == 0


def may_access(attr: Attr, cred: Cred, want: int, groups: Membership = HOST_GROUPS) -> bool:
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
    elif groups.client and attr.gid != groups.anonymous:
        granted = ((mode >> 3) | mode) & 7  # the client kernel picked one of the two classes
    else:
        granted = mode & 7
    return want & ~granted == 0


def check_access(attr: Attr, cred: Cred, want: int, what: str = "",
                 groups: Membership = HOST_GROUPS) -> None:
    """Raise EACCES unless ``may_access``."""
    if not may_access(attr, cred, want, groups):
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


def checked_setattr(attr: Attr, changes: SetAttr, cred: Cred, groups: Membership,
                    open_for_write: bool, host_applies: bool) -> SetAttr:
    """Check a Tsetattr on a file with ``attr`` as Linux's setattr_prepare does, and
    return it with the set-id bits Linux clears along with it (vfs/setid.py), unless the
    host applies those rules itself (``host_applies``).

    ``open_for_write``: the fid is open for writing, so truncation needs no further
    permission (ftruncate on an fd, even after a chmod or unlink).
    """
    if changes.mode is not None and cred.uid not in (0, attr.uid):
        if not mode_change_only_kills(attr, changes.mode):
            raise OSError(errno.EPERM, "operation not permitted")
        # what a client kernel sends for a non-owner's write or truncate (ATTR_FORCE):
        # allowed to whoever may write the file; a host that applies the rules
        # itself clears them with the write or truncate
        if not open_for_write:
            check_access(attr, cred, W_OK, groups=groups)
        if host_applies:
            changes = replace(changes, mode=None)
    if changes.uid is not None and changes.uid != attr.uid and cred.uid != 0:
        raise OSError(errno.EPERM, "only root may change the owner")
    if changes.gid is not None and changes.gid != attr.gid and cred.uid != 0:
        check_owner(attr, cred)
        if not groups.member(cred, changes.gid):
            raise OSError(errno.EPERM, "not a member of the target group")
    if changes.size is not None and not open_for_write:
        check_access(attr, cred, W_OK, groups=groups)
    explicit = [t for t in (changes.atime_ns, changes.mtime_ns) if t is not None]
    if explicit and cred.uid not in (0, attr.uid):
        if any(t != UTIME_NOW for t in explicit):  # a time before 1970 too
            raise OSError(errno.EPERM, "only the owner may set file times")
        check_access(attr, cred, W_OK, groups=groups)
    if host_applies:
        return changes
    gid = attr.gid if changes.gid is None else changes.gid
    return settle_setattr(attr, changes, cred, groups.member(cred, gid))
