"""Readdir cookies for a host directory: a number per name, given in order of first sight.

Python does not expose the host's telldir offsets, and they would not survive
a directory being rewritten anyway. Instead each directory node numbers the
names it has seen, 1, 2, 3..., and lists entries sorted by that number; a new
name gets a number above all others. Resuming after cookie c lists the
entries numbered above c, so no entry is listed twice and none that existed
throughout is skipped, whatever was created or removed meanwhile. It also
says where a listing ends (Node.listing_end): the last number handed out by
the rescan that starts it, so names created later (numbered above it) never
keep a listing going, as Linux's tmpfs since xfstests generic/736.

The listing is a snapshot, rescanned when the directory's mtime/ctime/size/
nlink change or when this backend changed it. The trade-offs: memory of one
number per name while the directory node lives (names gone from the host are
forgotten at the next rescan), and a host change within the filesystem's
timestamp granularity may be seen only at the next change.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterable

from ninep.vfs.node import DT_DIR, DT_LNK, DT_REG, DirEntry, dtype_of_mode

from .ownership import VIRTFS_MODE

__all__ = ["DirListing", "Scanned", "scan_directory"]

#: (name, host inode number, DT_* type or 0 when the caller must find out)
Scanned = tuple[str, int, int]


def scan_directory(fd: int, mapped: bool = False) -> list[Scanned]:
    """Every entry of the open directory ``fd`` but '.' and '..' (may run in a thread).

    ``mapped``: regular files may carry another type in user.virtfs.mode.
    """
    out: list[Scanned] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_symlink():
                dtype = DT_LNK
            elif entry.is_dir(follow_symlinks=False):
                dtype = DT_DIR
            elif entry.is_file(follow_symlinks=False):
                dtype = _mapped_dtype(fd, entry.name) if mapped else DT_REG
            else:
                try:
                    dtype = dtype_of_mode(entry.stat(follow_symlinks=False).st_mode)
                except OSError:
                    continue  # gone since the scan read it
            out.append((entry.name, entry.inode(), dtype))
    return out


def _mapped_dtype(fd: int, name: str) -> int:
    try:
        raw = os.getxattr(f"/proc/self/fd/{fd}/{name}", VIRTFS_MODE, follow_symlinks=False)
    except OSError:
        return DT_REG
    return dtype_of_mode(int.from_bytes(raw, "little")) if len(raw) == 4 else DT_REG


def stamp_of(st: os.stat_result) -> tuple[int, ...]:
    """What changes whenever the directory's entries do (within timestamp granularity)."""
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_nlink)


class DirListing:
    """One directory's cookies and its current snapshot of entries, sorted by cookie."""

    __slots__ = ("_cookies", "_entries", "_keys", "_next", "generation", "stamp")

    def __init__(self) -> None:
        self._cookies: dict[str, int] = {}
        self._next = 1
        self._entries: list[DirEntry] = []
        self._keys: list[int] = []
        self.stamp: tuple[int, ...] | None = None
        self.generation = 0  # bumped by every change this backend makes

    def invalidate(self) -> None:
        self.stamp = None
        self.generation += 1

    def rebuild(self, scanned: Iterable[Scanned], ino: Callable[[int], int],
                stamp: tuple[int, ...] | None) -> None:
        cookies, fresh = self._cookies, {}
        entries = []
        for name, host_ino, dtype in scanned:
            cookie = cookies.get(name)
            if cookie is None:
                cookie = self._next
                self._next += 1
            fresh[name] = cookie
            entries.append(DirEntry(name, ino(host_ino), dtype, cookie))
        entries.sort(key=lambda e: e.cookie)
        self._cookies = fresh  # names gone from the host are forgotten
        self._entries = entries
        self._keys = [e.cookie for e in entries]
        self.stamp = stamp

    @property
    def last_cookie(self) -> int:
        """The last number handed out (0 before any): a name first seen later gets more."""
        return self._next - 1

    def after(self, cookie: int, count: int) -> list[DirEntry]:
        start = bisect.bisect_right(self._keys, cookie)
        return self._entries[start:start + count]
