"""POSIX byte-range locks, kept once in vfs/ for every backend.

Owners are ``(connection id, client_id, proc_id)`` as Tlock carries them, so
two processes of one Linux client conflict, and every lock of a connection
can be dropped when it closes. A blocking request waits on a future that any
release wakes; cancelling the waiting task (Tflush) abandons the request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable, Hashable

from ninep.constants import LOCK_RDLCK, LOCK_UNLCK, LOCK_WRLCK

from .request import cancellable

__all__ = ["OFFSET_MAX", "RDLCK", "UNLCK", "WRLCK", "FileLocks", "Lock", "LockManager", "Owner"]

RDLCK, WRLCK, UNLCK = LOCK_RDLCK, LOCK_WRLCK, LOCK_UNLCK
OFFSET_MAX = 2**64 - 1

Owner = tuple[int, str, int]  # (connection id, client_id, proc_id)


@dataclass(frozen=True, slots=True)
class Lock:
    """A held lock over ``[start, end]`` (inclusive; end OFFSET_MAX = to end of file)."""

    lock_type: int
    start: int
    end: int
    owner: Owner

    @property
    def length(self) -> int:
        """The 9P length: 0 means "to end of file"."""
        return 0 if self.end == OFFSET_MAX else self.end - self.start + 1

    def overlaps(self, start: int, end: int) -> bool:
        return self.start <= end and start <= self.end


def span(start: int, length: int) -> tuple[int, int]:
    """The inclusive range of a 9P (start, length) pair."""
    if length == 0:
        return start, OFFSET_MAX
    return start, min(start + length - 1, OFFSET_MAX)


@dataclass(slots=True)
class FileLocks:
    """The locks held on one file and the requests waiting for them."""

    held: list[Lock] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def conflict(self, lock_type: int, start: int, end: int, owner: Owner) -> Lock | None:
        """The first lock of another owner that forbids ``lock_type`` on the range."""
        for held in self.held:
            if (held.owner != owner and held.overlaps(start, end)
                    and (lock_type == WRLCK or held.lock_type == WRLCK)):
                return held
        return None

    def apply(self, lock_type: int, start: int, end: int, owner: Owner) -> None:
        """Set (RDLCK/WRLCK) or clear (UNLCK) the owner's range, splitting and merging."""
        kept: list[Lock] = []
        for held in self.held:
            if held.owner != owner or not held.overlaps(start, end):
                kept.append(held)
                continue
            if held.start < start:
                kept.append(Lock(held.lock_type, held.start, start - 1, owner))
            if held.end > end:
                kept.append(Lock(held.lock_type, end + 1, held.end, owner))
        if lock_type != UNLCK:
            kept.append(Lock(lock_type, start, end, owner))
            kept = _merge_adjacent(kept, owner)
        self.held = kept
        self.wake()  # a downgrade or unlock may satisfy a waiter; waiters re-check

    def release_if(self, predicate: Callable[[Owner], bool]) -> None:
        before = len(self.held)
        self.held = [h for h in self.held if not predicate(h.owner)]
        if len(self.held) != before:
            self.wake()

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


def _merge_adjacent(locks: list[Lock], owner: Owner) -> list[Lock]:
    """Merge the owner's touching ranges of the same type into one."""
    mine = sorted((lk for lk in locks if lk.owner == owner), key=lambda lk: lk.start)
    others = [lk for lk in locks if lk.owner != owner]
    merged: list[Lock] = []
    for lk in mine:
        last = merged[-1] if merged else None
        if (last is not None and last.lock_type == lk.lock_type
                and last.end != OFFSET_MAX and last.end + 1 >= lk.start):
            merged[-1] = Lock(lk.lock_type, last.start, max(last.end, lk.end), owner)
        else:
            merged.append(lk)
    return others + merged


class LockManager:
    """Every file's locks, keyed by (backend instance, inode)."""

    def __init__(self) -> None:
        self._files: dict[Hashable, FileLocks] = {}

    def file(self, key: Hashable) -> FileLocks:
        locks = self._files.get(key)
        if locks is None:
            locks = self._files[key] = FileLocks()
        return locks

    def _forget_if_idle(self, key: Hashable) -> None:
        locks = self._files.get(key)
        if locks is not None and not locks.held and not locks.waiters:
            del self._files[key]

    def test(self, key: Hashable, lock_type: int, start: int, length: int,
             owner: Owner) -> Lock | None:
        """Tgetlock: the lock that would block this request, or None."""
        locks = self._files.get(key)
        if locks is None:
            return None
        return locks.conflict(lock_type, *span(start, length), owner)

    def try_lock(self, key: Hashable, lock_type: int, start: int, length: int,
                 owner: Owner) -> bool:
        """Tlock without BLOCK: set or clear the range; False when another owner conflicts."""
        first, last = span(start, length)
        locks = self.file(key)
        if lock_type != UNLCK and locks.conflict(lock_type, first, last, owner):
            self._forget_if_idle(key)
            return False
        locks.apply(lock_type, first, last, owner)
        self._forget_if_idle(key)
        return True

    async def lock(self, key: Hashable, lock_type: int, start: int, length: int,
                   owner: Owner) -> None:
        """Tlock with BLOCK: wait until the range can be set; cancellable."""
        while not self.try_lock(key, lock_type, start, length, owner):
            locks = self.file(key)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            locks.waiters.append(fut)
            try:
                await cancellable(fut)  # Linux flushes a lock wait its process gave up
            finally:
                if fut in locks.waiters:
                    locks.waiters.remove(fut)
                self._forget_if_idle(key)

    def release_connection(self, conn_id: int) -> None:
        """Drop every lock held by one connection (it closed)."""
        for key, locks in list(self._files.items()):
            locks.release_if(lambda owner: owner[0] == conn_id)
            self._forget_if_idle(key)
