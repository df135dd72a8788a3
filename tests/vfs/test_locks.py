"""POSIX byte-range locks: conflicts, splitting and merging, blocking waits, release."""

from __future__ import annotations

import asyncio

import pytest

from vfs.locks import OFFSET_MAX, RDLCK, UNLCK, WRLCK, LockManager

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
