"""POSIX byte-range locks: conflicts, splitting and merging, blocking waits, release."""

from __future__ import annotations

import asyncio
import bisect
import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ninep.vfs.locks import OFFSET_MAX, RDLCK, UNLCK, WRLCK, LockManager

A = (1, "host", 100)
B = (2, "host", 200)
A_OTHER_PROC = (1, "host", 101)
KEY = ("backend", 7)


def ranges(locks: LockManager, owner: tuple[int, str, int]) -> list[tuple[int, int, int]]:
    held = locks.file(KEY).held
    return sorted((h.lock_type, h.start, h.end) for h in held if h.owner == owner)


def test_write_locks_of_two_owners_conflict_on_overlap_only() -> None:
    locks = LockManager()
    assert locks.try_lock(KEY, WRLCK, 0, 10, A)
    assert not locks.try_lock(KEY, WRLCK, 5, 10, B)
    assert not locks.try_lock(KEY, RDLCK, 9, 1, B)
    assert locks.try_lock(KEY, WRLCK, 10, 10, B)


def test_processes_of_one_client_are_different_owners() -> None:
    locks = LockManager()
    assert locks.try_lock(KEY, WRLCK, 0, 0, A)
    assert not locks.try_lock(KEY, WRLCK, 0, 0, A_OTHER_PROC)


def test_read_locks_share() -> None:
    locks = LockManager()
    assert locks.try_lock(KEY, RDLCK, 0, 100, A)
    assert locks.try_lock(KEY, RDLCK, 50, 100, B)
    assert not locks.try_lock(KEY, WRLCK, 0, 1, B)


def test_length_zero_means_to_end_of_file() -> None:
    locks = LockManager()
    assert locks.try_lock(KEY, WRLCK, 1000, 0, A)
    assert not locks.try_lock(KEY, WRLCK, 2**62, 1, B)
    held = locks.test(KEY, WRLCK, 5000, 1, B)
    assert held is not None and held.start == 1000 and held.end == OFFSET_MAX and held.length == 0


def test_unlock_splits_a_range() -> None:
    locks = LockManager()
    locks.try_lock(KEY, WRLCK, 0, 100, A)
    locks.try_lock(KEY, UNLCK, 40, 20, A)
    assert ranges(locks, A) == [(WRLCK, 0, 39), (WRLCK, 60, 99)]
    assert locks.try_lock(KEY, WRLCK, 45, 5, B)


def test_relocking_changes_type_in_place_and_merges() -> None:
    locks = LockManager()
    locks.try_lock(KEY, RDLCK, 0, 10, A)
    locks.try_lock(KEY, RDLCK, 10, 10, A)
    assert ranges(locks, A) == [(RDLCK, 0, 19)]
    locks.try_lock(KEY, WRLCK, 5, 5, A)
    assert ranges(locks, A) == [(RDLCK, 0, 4), (RDLCK, 10, 19), (WRLCK, 5, 9)]


def test_test_reports_nothing_for_own_locks_or_free_ranges() -> None:
    locks = LockManager()
    locks.try_lock(KEY, WRLCK, 0, 10, A)
    assert locks.test(KEY, WRLCK, 0, 10, A) is None
    assert locks.test(KEY, WRLCK, 20, 10, B) is None
    assert locks.test(("backend", 8), WRLCK, 0, 0, B) is None


@pytest.mark.asyncio
async def test_blocking_lock_waits_for_release() -> None:
    locks = LockManager()
    locks.try_lock(KEY, WRLCK, 0, 0, A)
    waiter = asyncio.ensure_future(locks.lock(KEY, WRLCK, 0, 0, B))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    locks.try_lock(KEY, UNLCK, 0, 0, A)
    await asyncio.wait_for(waiter, 1)
    assert ranges(locks, B) == [(WRLCK, 0, OFFSET_MAX)]


@pytest.mark.asyncio
async def test_cancelled_wait_leaves_nothing_behind() -> None:
    locks = LockManager()
    locks.try_lock(KEY, WRLCK, 0, 0, A)
    waiter = asyncio.ensure_future(locks.lock(KEY, WRLCK, 0, 0, B))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert locks.file(KEY).waiters == []
    locks.try_lock(KEY, UNLCK, 0, 0, A)
    assert ranges(locks, B) == []


@pytest.mark.asyncio
async def test_closing_a_connection_releases_its_locks_and_wakes_waiters() -> None:
    locks = LockManager()
    locks.try_lock(KEY, WRLCK, 0, 10, A)
    locks.try_lock(KEY, RDLCK, 50, 10, A_OTHER_PROC)
    waiter = asyncio.ensure_future(locks.lock(KEY, WRLCK, 0, 100, B))
    await asyncio.sleep(0.01)
    locks.release_connection(1)
    await asyncio.wait_for(waiter, 1)
    assert ranges(locks, A) == [] and ranges(locks, A_OTHER_PROC) == []


# --- the network fuzzer's finding: cost and count -----------------------------------

_compared = 0


class CountingOwner(tuple):  # type: ignore[type-arg]
    """An owner that counts the comparisons made with it: every lock a request looks
    at is compared with the requester (what it costs does not show otherwise)."""

    __hash__ = tuple.__hash__

    def __eq__(self, other: object) -> bool:
        global _compared
        _compared += 1
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)


def _counting(conn: int, proc: int) -> tuple[int, str, int]:
    return CountingOwner((conn, "host", proc))  # type: ignore[return-value]


def test_a_lock_request_looks_at_what_it_overlaps_not_at_every_lock() -> None:
    """4,000 locks of 40 owners on one file; another owner's request elsewhere, a
    relock of one of them, a conflicting request and an unlock each compare owners
    and visit entries a bounded number of times (each compared the requester with
    every lock on the file before: 4,000 and more)."""
    global _compared
    locks = LockManager()
    owners = [_counting(1 + n % 4, n) for n in range(40)]
    for index in range(4000):
        assert locks.try_lock(KEY, RDLCK if index % 3 else WRLCK, 4 * index, 2,
                              owners[index % 40])
    newcomer = _counting(9, 9)
    cases = [(WRLCK, 4 * 4000 + 10, 5, newcomer, True),  # past every lock
             (RDLCK, 4 * 1000 + 2, 2, newcomer, True),  # in a gap
             (WRLCK, 4 * 1001, 1, newcomer, False),  # on a read lock of another owner
             (WRLCK, 4 * 1001, 2, owners[1001 % 40], True),  # its owner upgrades it
             (UNLCK, 4 * 2000, 1, owners[2000 % 40], True)]  # and one splits another
    for lock_type, start, length, owner, granted in cases:
        _compared = 0
        assert locks.try_lock(KEY, lock_type, start, length, owner) is granted
        assert _compared <= 8, (lock_type, start, _compared)
        assert locks.file(KEY).touched <= 8, (lock_type, start, locks.file(KEY).touched)
    _compared = 0
    held = locks.test(KEY, WRLCK, 4 * 3000, 1, newcomer)
    assert held is not None and held.start == 4 * 3000 and _compared <= 8


def test_a_connection_holds_at_most_its_share_of_locks() -> None:
    locks = LockManager(max_per_connection=100)
    other_file = ("backend", 8)
    for index in range(100):
        assert locks.try_lock(KEY, WRLCK, 2 * index, 1, A)
    assert locks.held_by(1) == 100
    with pytest.raises(OSError) as refused:  # any owner of the connection, any file
        locks.try_lock(other_file, WRLCK, 0, 1, A_OTHER_PROC)
    assert refused.value.errno == errno.ENOLCK
    assert locks.try_lock(KEY, WRLCK, 1, 1, A)  # merges 0 and 2: one range fewer
    assert locks.try_lock(KEY, WRLCK, 3, 1, A)  # 0-4: one fewer again
    assert locks.try_lock(KEY, UNLCK, 1, 1, A)  # 0 and 2-4: one more, within the share
    assert locks.try_lock(other_file, WRLCK, 0, 1, A_OTHER_PROC)
    assert locks.held_by(1) == 100
    with pytest.raises(OSError) as refused:  # an unlock that splits a range needs one more
        locks.try_lock(KEY, UNLCK, 3, 1, A)
    assert refused.value.errno == errno.ENOLCK
    assert locks.try_lock(other_file, WRLCK, 5, 1, B)  # another connection has its own share
    locks.try_lock(KEY, UNLCK, 0, 0, A)  # every range on the file goes
    assert locks.held_by(1) == 1
    locks.release_connection(1)
    assert locks.held_by(1) == 0 and ranges(locks, A) == []
    assert [(h.start, h.owner) for h in locks.file(other_file).held] == [(5, B)]


_POINTS = 24  # offsets 0..19 in the model; 20..23 stand for "to the end of the file"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([RDLCK, WRLCK, UNLCK]), st.integers(0, 19),
                          st.integers(0, 6), st.integers(0, 3)), max_size=40))
def test_the_locks_agree_with_a_model_of_every_byte(
        ops: list[tuple[int, int, int, int]]) -> None:
    """Conflicts, the ranges each owner is reported to hold, and the segment map agree
    with a model that records each owner's lock on every offset."""
    locks = LockManager()
    owners = [(1, "c", 1), (1, "c", 2), (2, "c", 1), (3, "c", 1)]
    model: dict[tuple[int, str, int], dict[int, int]] = {o: {} for o in owners}
    for lock_type, start, length, who in ops:
        owner = owners[who]
        length = min(length, 20 - start)  # finite ranges end in the model's 0..19
        points = range(start, _POINTS if length == 0 else min(start + length, 20))
        blocked = lock_type != UNLCK and any(
            point in held and (lock_type == WRLCK or held[point] == WRLCK)
            for other, held in model.items() if other != owner for point in points)
        if lock_type != UNLCK:
            assert (locks.test(KEY, lock_type, start, length, owner) is not None) == blocked
        assert locks.try_lock(KEY, lock_type, start, length, owner) is not blocked
        if not blocked:
            for point in points:
                if lock_type == UNLCK:
                    model[owner].pop(point, None)
                else:
                    model[owner][point] = lock_type
        for other in owners:
            assert ranges(locks, other) == _runs(model[other]), (other, model[other])
        _check_segments(locks, model)
    held = sum(len(_runs(model[o])) for o in owners if o[0] == 1)
    assert locks.held_by(1) == held


def _runs(held: dict[int, int]) -> list[tuple[int, int, int]]:
    """The merged ranges of a model owner, as ``ranges`` sorts them."""
    runs: list[list[int]] = []
    for point in sorted(held):
        if runs and runs[-1][2] == point - 1 and runs[-1][0] == held[point]:
            runs[-1][2] = point
        else:
            runs.append([held[point], point, point])
    out = [(t, first, OFFSET_MAX if last >= 20 else last) for t, first, last in runs]
    return sorted(out)


def _check_segments(locks: LockManager, model: dict[tuple[int, str, int], dict[int, int]]) -> None:
    file = locks.file(KEY)
    assert file.bounds == sorted(set(file.bounds)) and file.bounds[0] == 0
    for point in range(_POINTS):
        offset = point if point < 20 else 20 + (point - 20) * 2**40
        segment = file.segments[bisect.bisect_right(file.bounds, offset) - 1]
        writers = {o for o, held in model.items() if held.get(point) == WRLCK}
        readers = {o for o, held in model.items() if held.get(point) == RDLCK}
        assert segment.writer == (writers.pop() if writers else None)
        assert segment.readers == readers
    for left, right in zip(file.segments, file.segments[1:], strict=False):
        assert not left.same(right)  # neighbours alike are merged
