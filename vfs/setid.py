"""The set-user-id and set-group-id rules of Linux, for every backend that keeps its
own modes: what a write, a truncate, a chown, a chmod and a create do to them.

Linux (fs/attr.c, fs/inode.c):

- a write or truncate by a process without CAP_FSETID clears set-user-id, and
  set-group-id when group-execute is set too, or when the writer is not in the
  file's group (``file_remove_privs``, ``setattr_should_drop_sgid`` since Linux
  6.2; 6.1's ``should_remove_suid`` kept set-group-id without group-execute
  whoever wrote: a host of 6.2 or later does the former for passthrough, and so
  does the server, so that every backend agrees);
- a chown or chgrp clears them the same way, whoever makes it (``chown_common``
  asks ATTR_KILL_SUID|ATTR_KILL_SGID for every non-directory);
- a chmod by a caller that is not root and not a member of the file's group
  drops set-group-id (``setattr_prepare``), and so does a create of a
  non-directory with a group the creator is not in (``mode_strip_sgid``).

A client's kernel clears them itself on its own truncates and cached writes, by a
Tsetattr(mode) it is allowed to make even when the caller does not own the
file (ATTR_FORCE); with cache=none a write reaches the server as Twrite alone,
so the server clears them (``WriteGuard``).

The server's caller without CAP_FSETID is any uid but 0.
"""

from __future__ import annotations

import stat
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from .node import Attr, Backend, Cred, Handle, Node, SetAttr

__all__ = [
    "SETID",
    "WriteGuard",
    "changes_set_setid",
    "host_applies",
    "killed_by_write",
    "mode_change_only_kills",
    "new_file_mode",
    "note_setid_change",
    "setid_epoch",
    "settle_setattr",
]

SETID = stat.S_ISUID | stat.S_ISGID


def killed_by_write(mode: int, member: bool) -> int:
    """The set-id bits a write or truncate by a caller without CAP_FSETID clears: regular
    files only; set-group-id with group-execute, or when the caller is not a ``member``
    of the file's group (setattr_should_drop_sgid)."""
    if not stat.S_ISREG(mode) or not mode & SETID:
        return 0
    kill = mode & stat.S_ISUID
    if mode & stat.S_ISGID and (mode & stat.S_IXGRP or not member):
        kill |= stat.S_ISGID
    return kill


def mode_change_only_kills(attr: Attr, mode: int) -> bool:
    """Whether a Tsetattr's ``mode`` only clears set-id bits the file has: what a client
    kernel sends for a write or truncate by a non-owner (ATTR_KILL_SUID, ATTR_FORCE)."""
    current = stat.S_IMODE(attr.mode)
    return mode != current and mode | (current & SETID) == current


def new_file_mode(mode: int, gid: int, dir_attr: Attr, cred: Cred, member: bool) -> int:
    """The mode a new non-directory gets: Linux's mode_strip_sgid drops set-group-id when
    the creator is not in the file's group (``member``) and is not root. The gid a client
    sends is the creating process's fsgid, a group it is in, unless the directory is
    set-group-id and the gid is the directory's (v9fs_get_fsgid_for_create)."""
    if (mode & stat.S_ISGID and cred.uid != 0 and dir_attr.mode & stat.S_ISGID
            and gid == dir_attr.gid and not member):
        mode &= ~stat.S_ISGID
    return mode


def changes_set_setid(changes: SetAttr) -> bool:
    return changes.mode is not None and bool(changes.mode & SETID)


# --- which files may have set-id bits: one counter per backend instance --------------

_epochs: weakref.WeakKeyDictionary[Backend, list[int]] = weakref.WeakKeyDictionary()


def setid_epoch(backend: Backend) -> list[int]:
    """A counter that moves whenever the namespace gives some file of ``backend`` a
    set-id bit (every mode change of a backend that keeps its own modes passes there)."""
    cell = _epochs.get(backend)
    if cell is None:
        cell = _epochs[backend] = [0]
    return cell


def note_setid_change(backend: Backend) -> None:
    setid_epoch(backend)[0] += 1


class WriteGuard(Handle):
    """An open file of a caller without CAP_FSETID: set-id bits are cleared before a
    write, as Linux's file_remove_privs does.

    Cheap on the write path: a file without set-id bits when opened is asked again
    only after the namespace gave some file of its backend a set-id bit (the
    backend's epoch moved); reads and fsync go straight to the backend's handle.
    """

    __slots__ = ("_epoch", "_member", "_seen", "_setid", "inner", "node")

    def __init__(self, inner: Handle, node: Node, backend: Backend, mode: int,
                 member: Callable[[int], bool]) -> None:
        self.inner = inner
        self.node = node
        self._member = member  # whether the writer is in a group
        self._epoch = setid_epoch(backend)
        self._seen = self._epoch[0]
        self._setid = bool(mode & SETID)

    def read(self, offset: int, size: int) -> Coroutine[Any, Any, bytes | memoryview]:
        return self.inner.read(offset, size)

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        if self._setid or self._epoch[0] != self._seen:
            await self.remove_privs()
        return await self.inner.write(offset, data)

    async def remove_privs(self) -> None:
        """Clear what a write clears now (also after an O_TRUNC open)."""
        self._seen = self._epoch[0]
        attr = await self.node.getattr()
        kill = killed_by_write(attr.mode, self._member(attr.gid))
        if kill:
            await self.node.setattr(SetAttr(mode=stat.S_IMODE(attr.mode) & ~kill))
        self._setid = False

    def fsync(self, datasync: bool) -> Coroutine[Any, Any, None]:
        return self.inner.fsync(datasync)

    def close(self) -> Coroutine[Any, Any, None]:
        return self.inner.close()


def settle_setattr(attr: Attr, changes: SetAttr, cred: Cred, member: bool) -> SetAttr:
    """``changes`` with the set-id bits Linux would clear along with them:

    - a truncate by a caller other than root clears what a write clears;
    - a chmod by a caller other than root that is not a member of the file's group
      drops set-group-id (setattr_prepare).
    ``member``: whether the caller is in the group the file ends with.
    Chown's own clearing is the backend's (vfs.node.apply_setattr), as the host's
    is for passthrough.
    """
    if cred.uid == 0:
        return changes
    mode = changes.mode
    if mode is not None and mode & stat.S_ISGID and not member:
        mode &= ~stat.S_ISGID
    if changes.size is not None:
        kill = killed_by_write(attr.mode, member)
        if kill:
            mode = (stat.S_IMODE(attr.mode) if mode is None else mode) & ~kill
    return changes if mode == changes.mode else replace(changes, mode=mode)


def host_applies(backend: Backend) -> bool:
    """Whether the host kernel applies these rules itself: passthrough running its host
    calls under the caller's fsuid/fsgid (backends/passthrough/fsident.py), where a
    non-owner's chmod would be refused and a write or truncate clears the bits anyway."""
    return bool(getattr(backend, "host_identity", False))
