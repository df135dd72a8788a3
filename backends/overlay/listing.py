"""Merged directory listings with cookies that survive changes made while a client reads.

A listing has two runs: first the lower directory in its own cookie order
(each name shown as the overlay sees it: hidden under a whiteout, or the
upper file that replaced or copied it up), then the upper directory in its
order, leaving out names the first run covers. The lower layer never changes,
so a name present in it is listed by the first run or not at all, whatever
is copied up, deleted or re-created meanwhile; an upper-only name is listed
by the second run, whose cookies the upper backend keeps stable. Resuming
after any cookie thus lists no entry twice and skips none that existed
throughout, without a snapshot.

A listing ends (``listing_end``) at the upper directory's own end, moved into
the upper run: the lower run never grows, and names created later fall in
the upper run above it.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ninep.vfs.node import DT_CHR, DT_DIR, DirEntry, Node, dtype_of_mode

from .markers import WORK_DIR, is_whiteout, walk_or_none

if TYPE_CHECKING:
    from .nodes import OverlayDir

__all__ = ["UPPER_RUN", "CookieCodec", "listing_end", "read_merged"]

UPPER_RUN = 1 << 61  # cookies at or above: the upper run; below: the lower run
_WIDE = 1 << 60  # a layer cookie at or above this goes through a table


class CookieCodec:
    """Overlay cookies for layer cookies, keeping both runs below 2**62 as node.py asks."""

    def __init__(self) -> None:
        self._wide: dict[tuple[int, int], int] = {}
        self._back: dict[int, int] = {}

    def encode(self, run: int, cookie: int) -> int:
        base = run * UPPER_RUN
        if cookie < _WIDE:
            return base + cookie
        mapped = self._wide.get((run, cookie))
        if mapped is None:
            mapped = self._wide[(run, cookie)] = base + _WIDE + len(self._wide) + 1
            self._back[mapped] = cookie
        return mapped

    def decode(self, run: int, cookie: int) -> int:
        if cookie - run * UPPER_RUN < _WIDE:
            return cookie - run * UPPER_RUN
        try:
            return self._back[cookie]
        except KeyError:
            raise OSError(errno.EINVAL, "directory cookie no longer known") from None


async def read_merged(d: OverlayDir, cookie: int, count: int) -> list[DirEntry]:
    """Up to ``count`` entries of ``d`` after the overlay cookie ``cookie``."""
    out: list[DirEntry] = []
    if cookie < UPPER_RUN:
        if d.lower is not None:
            await _lower_run(d, d.lower, cookie, count, out)
            if len(out) >= count:
                return out
        cookie = UPPER_RUN
    if d.upper is not None:
        await _upper_run(d, d.upper, cookie, count, out)
    return out


async def listing_end(d: OverlayDir) -> int | None:
    """Node.listing_end of ``d``: the upper layer's end in the upper run."""
    if d.upper is None:  # every lower cookie is below; a copy-up's entries are above
        return UPPER_RUN - 1
    end = await d.upper.listing_end()
    if end is None:
        return None
    if end >= _WIDE:  # wide cookies are numbered in order of first sight: no bound holds
        return (1 << 62) - 1
    return UPPER_RUN + end


async def _lower_run(d: OverlayDir, lower: Node, cookie: int, count: int,
                     out: list[DirEntry]) -> None:
    at = d.cookies.decode(0, cookie)
    while len(out) < count:
        batch = await lower.readdir(at, count - len(out))
        if not batch:
            return
        for entry in batch:
            shown = await _shown_lower(d, entry)
            if shown is not None:
                out.append(DirEntry(shown.name, shown.ino, shown.dtype,
                                    d.cookies.encode(0, entry.cookie)))
                if len(out) >= count:
                    return
        at = batch[-1].cookie


async def _shown_lower(d: OverlayDir, entry: DirEntry) -> DirEntry | None:
    """How a lower entry looks through the overlay, or None when it is hidden."""
    if d.parent is None and entry.name == WORK_DIR:
        return None
    if d.upper is not None:
        upper = await walk_or_none(d.upper, entry.name)
        if upper is not None:
            if await is_whiteout(upper):
                return None
            return await _entry_of(d, entry.name)
    return DirEntry(entry.name, d.fs.lower_ino(entry.ino), entry.dtype, 0)


async def _upper_run(d: OverlayDir, upper: Node, cookie: int, count: int,
                     out: list[DirEntry]) -> None:
    at = d.cookies.decode(1, cookie)
    while len(out) < count:
        batch = await upper.readdir(at, count - len(out))
        if not batch:
            return
        for entry in batch:
            shown = await _shown_upper(d, upper, entry)
            if shown is not None:
                out.append(DirEntry(shown.name, shown.ino, shown.dtype,
                                    d.cookies.encode(1, entry.cookie)))
                if len(out) >= count:
                    return
        at = batch[-1].cookie


async def _shown_upper(d: OverlayDir, upper: Node, entry: DirEntry) -> DirEntry | None:
    """An upper entry the lower run did not cover, or None."""
    name = entry.name
    if d.parent is None and name == WORK_DIR:
        return None
    if entry.dtype == DT_CHR:
        child = await walk_or_none(upper, name)
        if child is None or await is_whiteout(child):
            return None
    if d.lower is not None and await walk_or_none(d.lower, name) is not None:
        return None  # the lower run lists this name
    if entry.dtype == DT_DIR:  # an upper-only directory has no origin to look up
        return DirEntry(name, d.fs.upper_ino(entry.ino), DT_DIR, 0)
    node = d.children.get(name)
    if node is not None:
        return DirEntry(name, node.ino, entry.dtype, 0)
    if d.fs.origins_complete:  # no xattr to read: the number is at hand
        ino = d.fs.origins.get(entry.ino) or d.fs.upper_ino(entry.ino)
        return DirEntry(name, ino, entry.dtype, 0)
    return await _entry_of(d, name)


async def _entry_of(d: OverlayDir, name: str) -> DirEntry | None:
    try:
        node = await d.lookup(name)
    except FileNotFoundError:
        return None
    attr = node.peek_attr() or await node.getattr()
    return DirEntry(name, node.ino, dtype_of_mode(attr.mode), 0)
