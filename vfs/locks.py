"""POSIX byte-range locks, kept once in vfs/ for every backend.

Owners are ``(connection id, client_id, proc_id)`` as Tlock carries them, so
two processes of one Linux client conflict, and every lock of a connection
can be dropped when it closes. A blocking request waits on a future that any
release wakes; cancelling the waiting task (Tflush) abandons the request.

Each file keeps its locks twice, so that a request costs O(log n) plus the
locks it overlaps, never a pass over every lock of the file (Linux's own list
is scanned whole by every fcntl; here the scan ran in Python on the event loop
and 8,000 locks stalled other clients for a second):

- per owner, its ranges: sorted, disjoint, merged (what Tgetlock reports and
  what a connection is charged for);
- a segment map: the file cut at every lock boundary, each segment naming its
  writer or its readers, so a conflict is found by bisecting to the range.

A connection holds at most ``max_per_connection`` ranges (MAX_LOCKS_PER_CONNECTION);
past it a request is ENOLCK, what Linux's fcntl answers when it cannot allocate
a lock.

A backend whose files other processes share (passthrough: other worker
processes, ninep/workers/, and the host's own programs) hands in ``HostLocks``
with a request: each owner's ranges are then also set on the host, after the
checks here pass and before they are recorded, and a lock another process holds
is a conflict. The kernel tells nobody when another process lets go, so a
blocked request that may wait on one looks again, at growing intervals.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from bisect import bisect_left, bisect_right
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

from ninep.wire.constants import LOCK_RDLCK, LOCK_UNLCK, LOCK_WRLCK

from .request import cancellable

__all__ = ["MAX_LOCKS_PER_CONNECTION", "OFFSET_MAX", "RDLCK", "UNLCK", "WRLCK", "FileLocks",
           "HostLocks", "Lock", "LockManager", "Owner"]

log = logging.getLogger(__name__)

RDLCK, WRLCK, UNLCK = LOCK_RDLCK, LOCK_WRLCK, LOCK_UNLCK
OFFSET_MAX = 2**64 - 1
# ranges one connection may hold over all files: a kernel client's processes share
# its connection, and SQLite or Samba hold a handful per file; 4096 is ~2 MiB here
MAX_LOCKS_PER_CONNECTION = 4096

Owner = tuple[int, str, int]  # (connection id, client_id, proc_id)
# a blocked request that another process may hold up looks again after these seconds,
# doubling: quick for a short critical section, a few system calls a second for a long one
HOST_POLL_FIRST, HOST_POLL_MAX = 0.002, 0.25
_Piece = tuple[int, int, int]  # (start, end, lock_type) of one owner's range


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


class HostLocks(Protocol):
    """One file's locks as the host holds them, for every owner that holds some."""

    def adopt(self, newer: HostLocks) -> None:
        """Take ``newer``'s way to reach the file (the current request's open file)."""

    def set(self, owner: Owner, lock_type: int, start: int, end: int) -> bool:
        """Set (RDLCK/WRLCK) or clear (UNLCK) the owner's range on the host; False when
        another process holds a lock that forbids it (never for UNLCK)."""

    def test(self, owner: Owner, lock_type: int, start: int, end: int) -> Lock | None:
        """A lock of another process that forbids ``lock_type`` (RDLCK or WRLCK: the
        table asks UNLCK's question as WRLCK's) on the range, or None."""

    def drop(self, owner: Owner) -> None:
        """The owner holds nothing on the file any more: let go of it on the host."""


def span(start: int, length: int) -> tuple[int, int]:
    """The inclusive range of a 9P (start, length) pair."""
    if length == 0:
        return start, OFFSET_MAX
    return start, min(start + length - 1, OFFSET_MAX)


class _Ranges:
    """One owner's ranges on one file: sorted, disjoint, touching ones of a type merged."""

    __slots__ = ("ends", "starts", "types")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.types: list[int] = []

    def at(self, offset: int) -> int:
        """The index of the range holding ``offset`` (which one must hold)."""
        return bisect_right(self.starts, offset) - 1

    def plan(self, lock_type: int, start: int, end: int) -> tuple[int, int, list[_Piece]]:
        """Setting (RDLCK/WRLCK) or clearing (UNLCK) ``[start, end]``: the ranges
        ``[lo, hi)`` it replaces (those it overlaps or touches) and what replaces them."""
        lo = bisect_left(self.ends, start - 1)  # ends are sorted as the ranges are disjoint
        hi = bisect_right(self.starts, end + 1)
        before: list[_Piece] = []
        after: list[_Piece] = []
        new_start, new_end = start, end
        for index in range(lo, hi):
            first, last, kind = self.starts[index], self.ends[index], self.types[index]
            if last < start:  # touches on the left
                if kind == lock_type:
                    new_start = first
                else:
                    before.append((first, last, kind))
            elif first > end:  # touches on the right
                if kind == lock_type:
                    new_end = last
                else:
                    after.append((first, last, kind))
            else:  # overlaps: what sticks out stays (merged when of the new type)
                if first < start:
                    if kind == lock_type:
                        new_start = first
                    else:
                        before.append((first, start - 1, kind))
                if last > end:
                    if kind == lock_type:
                        new_end = last
                    else:
                        after.append((end + 1, last, kind))
        middle = [(new_start, new_end, lock_type)] if lock_type != UNLCK else []
        return lo, hi, before + middle + after

    def replace(self, lo: int, hi: int, pieces: list[_Piece]) -> None:
        self.starts[lo:hi] = [p[0] for p in pieces]
        self.ends[lo:hi] = [p[1] for p in pieces]
        self.types[lo:hi] = [p[2] for p in pieces]

    def __len__(self) -> int:
        return len(self.starts)


class _Segment:
    """Who holds a stretch of the file: one writer, or readers."""

    __slots__ = ("readers", "writer")

    def __init__(self, writer: Owner | None = None, readers: set[Owner] | None = None) -> None:
        self.writer = writer
        self.readers: set[Owner] = readers if readers is not None else set()

    def copy(self) -> _Segment:
        return _Segment(self.writer, set(self.readers))

    def same(self, other: _Segment) -> bool:
        return self.writer == other.writer and self.readers == other.readers

    def conflicting(self, lock_type: int, owner: Owner) -> Owner | None:
        """An owner other than ``owner`` whose lock here forbids ``lock_type``."""
        if self.writer is not None and self.writer != owner:
            return self.writer
        if lock_type == WRLCK and self.readers:
            for reader in self.readers:  # at most two looks: one may be the owner
                if reader != owner:
                    return reader
        return None


@dataclass(slots=True)
class FileLocks:
    """The locks held on one file and the requests waiting for them.

    ``touched`` counts the segments and ranges the last request looked at (tests
    check it stays bounded by what the request overlaps, not by the lock count).
    """

    owners: dict[Owner, _Ranges] = field(default_factory=dict)
    # segment i covers [bounds[i], bounds[i + 1] - 1]; the last one runs to OFFSET_MAX
    bounds: list[int] = field(default_factory=lambda: [0])
    segments: list[_Segment] = field(default_factory=lambda: [_Segment()])
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    per_connection: dict[int, int] = field(default_factory=dict)  # ranges held here
    touched: int = 0
    host: HostLocks | None = None  # the same locks held on the host file (passthrough)

    @property
    def held(self) -> list[Lock]:
        """Every lock on the file (a copy: for tests and inspection)."""
        return [Lock(ranges.types[i], ranges.starts[i], ranges.ends[i], owner)
                for owner, ranges in self.owners.items() for i in range(len(ranges))]

    def conflict(self, lock_type: int, start: int, end: int, owner: Owner) -> Lock | None:
        """A lock of another owner that forbids ``lock_type`` on the range."""
        bounds, segments = self.bounds, self.segments
        index = bisect_right(bounds, start) - 1
        while index < len(bounds) and bounds[index] <= end:
            self.touched += 1
            other = segments[index].conflicting(lock_type, owner)
            if other is not None:
                ranges = self.owners[other]
                at = ranges.at(max(start, bounds[index]))
                return Lock(ranges.types[at], ranges.starts[at], ranges.ends[at], other)
            index += 1
        return None

    def plan(self, lock_type: int, start: int, end: int,
             owner: Owner) -> tuple[int, int, list[_Piece]]:
        """What :meth:`apply` would change in the owner's ranges (``len(pieces) -
        (hi - lo)`` is the change in its count), without changing anything."""
        ranges = self.owners.get(owner)
        if ranges is None:
            return 0, 0, [] if lock_type == UNLCK else [(start, end, lock_type)]
        lo, hi, pieces = ranges.plan(lock_type, start, end)
        self.touched += hi - lo
        return lo, hi, pieces

    def apply(self, lock_type: int, start: int, end: int, owner: Owner,
              planned: tuple[int, int, list[_Piece]] | None = None) -> None:
        """Set (RDLCK/WRLCK) or clear (UNLCK) the owner's range, splitting and merging."""
        lo, hi, pieces = planned or self.plan(lock_type, start, end, owner)
        ranges = self.owners.get(owner)
        if ranges is None:
            if not pieces:
                return
            ranges = self.owners[owner] = _Ranges()
        if lock_type == UNLCK:  # only where the owner held something: the rest is as it was
            for first, last in zip(ranges.starts[lo:hi], ranges.ends[lo:hi], strict=True):
                if first <= end and start <= last:
                    self._paint(UNLCK, max(first, start), min(last, end), owner)
        else:
            self._paint(lock_type, start, end, owner)
        ranges.replace(lo, hi, pieces)
        if not ranges:
            del self.owners[owner]
        count = self.per_connection.get(owner[0], 0) + len(pieces) - (hi - lo)
        if count:
            self.per_connection[owner[0]] = count
        else:
            self.per_connection.pop(owner[0], None)
        self.wake()  # a downgrade or unlock may satisfy a waiter; waiters re-check

    def _paint(self, lock_type: int, start: int, end: int, owner: Owner) -> None:
        """Record in the segment map that ``owner`` holds ``lock_type`` on [start, end]."""
        first = self._split(start)
        last = self._split(end + 1) if end < OFFSET_MAX else len(self.bounds)
        segments = self.segments
        for index in range(first, last):
            segment = segments[index]
            if segment.writer == owner:
                segment.writer = None
            segment.readers.discard(owner)
            if lock_type == WRLCK:
                segment.writer = owner
            elif lock_type == RDLCK:
                segment.readers.add(owner)
        self.touched += last - first
        self._coalesce(max(first - 1, 0), min(last + 1, len(self.bounds)))

    def _split(self, offset: int) -> int:
        """The index of the segment that starts at ``offset``, cutting one if needed."""
        index = bisect_right(self.bounds, offset) - 1
        if self.bounds[index] == offset:
            return index
        self.bounds.insert(index + 1, offset)
        self.segments.insert(index + 1, self.segments[index].copy())
        return index + 1

    def _coalesce(self, first: int, stop: int) -> None:
        """Merge neighbours alike among segments ``[first, stop)``."""
        bounds, segments = self.bounds, self.segments
        kept_bounds, kept = [bounds[first]], [segments[first]]
        for index in range(first + 1, stop):
            if segments[index].same(kept[-1]):
                continue
            kept_bounds.append(bounds[index])
            kept.append(segments[index])
        if len(kept) != stop - first:
            bounds[first:stop] = kept_bounds
            segments[first:stop] = kept

    def release_connection(self, conn_id: int) -> int:
        """Drop every range of the connection's owners; how many there were."""
        dropped = 0
        self.per_connection.pop(conn_id, None)
        for owner in [o for o in self.owners if o[0] == conn_id]:
            ranges = self.owners.pop(owner)
            dropped += len(ranges)
            for first, last in zip(ranges.starts, ranges.ends, strict=True):
                self._paint(UNLCK, first, last, owner)
            if self.host is not None:
                self.host.drop(owner)
        if dropped:
            self.wake()
        return dropped

    def idle(self) -> bool:
        return not self.owners and not self.waiters

    def wake(self) -> None:
        if not self.waiters:
            return
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


class LockManager:
    """Every file's locks, keyed by (backend instance, inode)."""

    def __init__(self, max_per_connection: int = MAX_LOCKS_PER_CONNECTION) -> None:
        self.max_per_connection = max_per_connection
        self._files: dict[Hashable, FileLocks] = {}
        self._held: dict[int, int] = {}  # connection id -> ranges held
        self._conn_files: dict[int, set[Hashable]] = {}  # connection id -> keys it locked

    def file(self, key: Hashable) -> FileLocks:
        locks = self._files.get(key)
        if locks is None:
            locks = self._files[key] = FileLocks()
        return locks

    def held_by(self, conn_id: int) -> int:
        """How many ranges the connection holds, over all files."""
        return self._held.get(conn_id, 0)

    def _forget_if_idle(self, key: Hashable) -> None:
        locks = self._files.get(key)
        if locks is not None and locks.idle():
            del self._files[key]

    def test(self, key: Hashable, lock_type: int, start: int, length: int,
             owner: Owner, host: HostLocks | None = None) -> Lock | None:
        """Tgetlock: the lock that would block this request, or None; one held by
        another process through ``host`` is reported with proc_id its pid (0 when it
        is an open file description's lock, which belongs to no process)."""
        first, last = span(start, length)
        # Linux's v9fs_file_getlock asks with type UNLCK whatever F_GETLK's caller
        # wanted ("is anything held here?"): answer as for a writer, whom every lock
        # of another owner forbids, so that a read lock is reported too
        probe = WRLCK if lock_type == UNLCK else lock_type
        locks = self._files.get(key)
        if locks is not None:
            locks.touched = 0
            held = locks.conflict(probe, first, last, owner)
            if held is not None:
                return held
            if locks.host is not None and host is not None:
                locks.host.adopt(host)
            host = locks.host or host
        return host.test(owner, probe, first, last) if host is not None else None

    def try_lock(self, key: Hashable, lock_type: int, start: int, length: int,
                 owner: Owner, host: HostLocks | None = None) -> bool:
        """Tlock without BLOCK: set or clear the range; False when another owner
        conflicts (or, through ``host``, another process); ENOLCK when the
        connection would hold more than its share."""
        first, last = span(start, length)
        locks = self.file(key)
        locks.touched = 0
        if host is not None:
            if locks.host is None:
                locks.host = host
            else:
                locks.host.adopt(host)
        try:
            if lock_type != UNLCK and locks.conflict(lock_type, first, last, owner):
                return False
            planned = locks.plan(lock_type, first, last, owner)
            lo, hi, pieces = planned
            conn_id = owner[0]
            count = self._held.get(conn_id, 0) + len(pieces) - (hi - lo)
            if count > self.max_per_connection and len(pieces) > hi - lo:
                log.debug("connection %d: lock refused, %d ranges held (limit %d)", conn_id,
                          count - 1, self.max_per_connection)
                raise OSError(errno.ENOLCK, f"more than {self.max_per_connection} locks held")
            if locks.host is not None and not locks.host.set(owner, lock_type, first, last):
                return False
            locks.apply(lock_type, first, last, owner, planned)
            if locks.host is not None and owner not in locks.owners:
                locks.host.drop(owner)
            self._count(conn_id, key, count, locks)
            return True
        finally:
            self._forget_if_idle(key)

    def _count(self, conn_id: int, key: Hashable, count: int, locks: FileLocks) -> None:
        """Record that the connection holds ``count`` ranges, and whether some are on
        ``key`` (so that closing it visits only the files it locked)."""
        if count:
            self._held[conn_id] = count
        else:
            self._held.pop(conn_id, None)
        files = self._conn_files.get(conn_id)
        if conn_id in locks.per_connection:
            if files is None:
                files = self._conn_files[conn_id] = set()
            files.add(key)
        elif files is not None:
            files.discard(key)
            if not files:
                del self._conn_files[conn_id]

    async def lock(self, key: Hashable, lock_type: int, start: int, length: int,
                   owner: Owner, host: HostLocks | None = None) -> None:
        """Tlock with BLOCK: wait until the range can be set; cancellable. With host
        locks the wait also ends after a while to look again: another process's
        unlock wakes nobody here. (F_OFD_SETLKW would wait in a thread that a Tflush
        cannot stop: CPython retries the call after a signal, PEP 475.)"""
        poll = HOST_POLL_FIRST
        while not self.try_lock(key, lock_type, start, length, owner, host):
            locks = self.file(key)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            locks.waiters.append(fut)
            try:
                # Linux flushes a lock wait its process gave up
                if locks.host is None:
                    await cancellable(fut)
                else:
                    await cancellable(asyncio.wait((fut,), timeout=poll))
                    poll = min(poll * 2, HOST_POLL_MAX)
            finally:
                if fut in locks.waiters:
                    locks.waiters.remove(fut)
                self._forget_if_idle(key)

    def release_connection(self, conn_id: int) -> None:
        """Drop every lock held by one connection (it closed)."""
        self._held.pop(conn_id, None)
        for key in self._conn_files.pop(conn_id, ()):
            locks = self._files.get(key)
            if locks is not None:
                locks.release_connection(conn_id)
                self._forget_if_idle(key)
