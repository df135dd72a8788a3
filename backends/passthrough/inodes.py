"""Inode numbers for qid.path: (st_dev, st_ino) folded into 48 bits, stable across restarts."""

from __future__ import annotations

import itertools

__all__ = ["INO_BITS", "InodeMap"]

INO_BITS = 40  # the host inode number; the 8 bits above it name the host filesystem
_SLOTS = 1 << (48 - INO_BITS)
_OVERFLOW = _SLOTS - 1  # inode numbers of 40 bits or more, numbered as met


class InodeMap:
    """Maps host (st_dev, st_ino) to backend inode numbers below 2**48.

    The export's own filesystem is slot 0, so its files keep their host inode
    numbers. Another filesystem mounted below the export gets a slot derived
    from its st_dev (probing on a clash), so its numbers never collide with the
    first's and stay the same when the server restarts. Only inode numbers of
    2**40 or more (rare: some XFS and overlayfs setups) are numbered in the
    order they are met, in the last slot, and so are stable only while the
    server runs.
    """

    def __init__(self, root_dev: int) -> None:
        self._slots: dict[int, int] = {root_dev: 0}
        self._taken: set[int] = {0, _OVERFLOW}
        self._overflow: dict[tuple[int, int], int] = {}
        self._next_overflow = itertools.count(1)

    def __call__(self, dev: int, ino: int) -> int:
        slot = self._slots.get(dev)
        if slot is None:
            slot = self._assign(dev)
        if ino < 1 << INO_BITS:
            return slot << INO_BITS | ino
        key = (dev, ino)
        mapped = self._overflow.get(key)
        if mapped is None:
            mapped = self._overflow[key] = _OVERFLOW << INO_BITS | next(self._next_overflow)
        return mapped

    def _assign(self, dev: int) -> int:
        if len(self._taken) >= _SLOTS:
            raise OSError(28, "too many host filesystems below one export (254 at most)")
        slot = 1 + (dev * 0x9E3779B1 >> 7) % (_SLOTS - 2)
        while slot in self._taken:
            slot = slot % (_SLOTS - 2) + 1
        self._taken.add(slot)
        self._slots[dev] = slot
        return slot
