"""Block and inode allocation over the group bitmaps, with free counts kept exact.

Freed blocks and inodes are quarantined until the next checkpoint: they stay
marked in use (in memory and on disk) until the metadata that stopped using
them is written, so a crash never finds one block claimed by two files or a
directory entry aimed at a reused inode.
"""

from __future__ import annotations

import errno
import re

from .image import BITMAP, Image
from .layout import GroupDesc, Superblock

__all__ = ["Allocator"]

_NOT_FULL = re.compile(rb"[^\xff]")
_NOT_EMPTY = re.compile(rb"[^\x00]")


def _first_zero(bm: bytearray, start: int, end: int) -> int:
    """The first clear bit in [start, end), or -1."""
    i = start
    while i < end and i & 7:
        if not bm[i >> 3] >> (i & 7) & 1:
            return i
        i += 1
    if i >= end:
        return -1
    m = _NOT_FULL.search(bm, i >> 3, (end + 7) >> 3)
    if m is None:
        return -1
    byte = m.start()
    value = bm[byte]
    for k in range(8):
        if not value >> k & 1:
            idx = byte * 8 + k
            return idx if idx < end else -1
    return -1


def _zero_run(bm: bytearray, start: int, limit: int) -> int:
    """How many clear bits follow ``start`` (inclusive), up to ``limit`` bits in all."""
    i, end = start, start + limit
    while i < end and i & 7:
        if bm[i >> 3] >> (i & 7) & 1:
            return i - start
        i += 1
    if i < end:
        m = _NOT_EMPTY.search(bm, i >> 3, (end + 7) >> 3)
        stop = end if m is None else min(end, m.start() * 8)
        i = stop
        while i < end and not bm[i >> 3] >> (i & 7) & 1:
            i += 1
    return min(i, end) - start


class Allocator:
    """The group bitmaps, group descriptors and superblock counters of one file system."""

    def __init__(self, image: Image, sb: Superblock, groups: list[GroupDesc]) -> None:
        self.image, self.sb, self.groups = image, sb, groups
        self.bpg = sb.get("blocks_per_group")
        self.ipg = sb.get("inodes_per_group")
        self.first = sb.get("first_data_block")
        self.blocks_count = sb.get("blocks_count")
        self.pending_blocks: list[int] = []
        self.pending_inodes: list[tuple[int, bool]] = []
        self.gd_dirty = False

    # --- blocks ---------------------------------------------------------------

    def group_of_block(self, n: int) -> int:
        return (n - self.first) // self.bpg

    def group_first_block(self, group: int) -> int:
        return self.first + group * self.bpg

    def _group_len(self, group: int) -> int:
        return min(self.bpg, self.blocks_count - self.group_first_block(group))

    def free_blocks(self) -> int:
        return self.sb.get("free_blocks_count")

    def alloc_run(self, goal: int, wanted: int) -> tuple[int, int]:
        """Up to ``wanted`` contiguous free blocks at or after ``goal``: (first, count)."""
        if not self.free_blocks():
            raise OSError(errno.ENOSPC, "no space left on device")
        if not self.first <= goal < self.blocks_count:
            goal = self.first
        ngroups = len(self.groups)
        start_group = self.group_of_block(goal)
        for step in range(ngroups + 1):
            group = (start_group + step) % ngroups
            gd = self.groups[group]
            if not gd.free_blocks:
                continue
            bm = self.image.block(gd.block_bitmap)
            length = self._group_len(group)
            offset = goal - self.group_first_block(group) if step == 0 else 0
            idx = _first_zero(bm, offset, length)
            if idx < 0 and offset:
                idx = _first_zero(bm, 0, length)
            if idx < 0:
                continue
            count = _zero_run(bm, idx, min(wanted, length - idx))
            self._mark_blocks(group, idx, count, True)
            return self.group_first_block(group) + idx, count
        raise OSError(errno.ENOSPC, "no space left on device")

    def _mark_blocks(self, group: int, idx: int, count: int, used: bool) -> None:
        gd = self.groups[group]
        bm = self.image.block(gd.block_bitmap)
        for i in range(idx, idx + count):
            if used:
                bm[i >> 3] |= 1 << (i & 7)
            else:
                bm[i >> 3] &= ~(1 << (i & 7)) & 0xFF
        self.image.touch(gd.block_bitmap, BITMAP)
        delta = -count if used else count
        gd.free_blocks += delta
        self.sb.set("free_blocks_count", self.sb.get("free_blocks_count") + delta)
        self.gd_dirty = True

    def free_block(self, n: int) -> None:
        """Give ``n`` back at the next checkpoint; its cached contents are dropped now."""
        self.image.check_block(n)
        self.image.forget(n)
        self.pending_blocks.append(n)

    # --- inodes ---------------------------------------------------------------

    def free_inodes(self) -> int:
        return self.sb.get("free_inodes_count")

    def _pick_group(self, parent_group: int, is_dir: bool) -> int:
        groups = self.groups
        if is_dir:  # spread directories: a roomy group with more free inodes than average
            avg = self.free_inodes() // len(groups)
            best, best_free = -1, -1
            for g, gd in enumerate(groups):
                if gd.free_inodes and gd.free_inodes >= avg and gd.free_blocks > best_free:
                    best, best_free = g, gd.free_blocks
            if best >= 0:
                return best
        for step in range(len(groups)):
            g = (parent_group + step) % len(groups)
            if groups[g].free_inodes:
                return g
        raise OSError(errno.ENOSPC, "no free inodes")

    def alloc_inode(self, parent_ino: int, is_dir: bool) -> int:
        if not self.free_inodes():
            raise OSError(errno.ENOSPC, "no free inodes")
        group = self._pick_group((parent_ino - 1) // self.ipg, is_dir)
        gd = self.groups[group]
        bm = self.image.block(gd.inode_bitmap)
        limit = min(self.ipg, self.sb.get("inodes_count") - group * self.ipg)
        first = max(0, self.sb.first_ino - 1 - group * self.ipg)
        idx = _first_zero(bm, first, limit)
        if idx < 0:
            raise OSError(errno.EIO, f"group {group} inode bitmap disagrees with its free count")
        bm[idx >> 3] |= 1 << (idx & 7)
        self.image.touch(gd.inode_bitmap, BITMAP)
        self._count_inode(group, -1, is_dir)
        return group * self.ipg + idx + 1

    def _count_inode(self, group: int, delta: int, is_dir: bool) -> None:
        gd = self.groups[group]
        gd.free_inodes += delta
        if is_dir:
            gd.used_dirs -= delta
        self.sb.set("free_inodes_count", self.sb.get("free_inodes_count") + delta)
        self.gd_dirty = True

    def free_inode(self, ino: int, is_dir: bool) -> None:
        self.pending_inodes.append((ino, is_dir))

    # --- checkpoint -----------------------------------------------------------

    def has_pending(self) -> bool:
        return bool(self.pending_blocks or self.pending_inodes)

    def release_pending(self) -> None:
        """Clear the quarantined bits: their last users are on disk now.

        All or nothing: the bitmaps are read first (the only step that can fail),
        so a failure leaves every bit quarantined, to be released next time.
        """
        for group in {self.group_of_block(n) for n in self.pending_blocks}:
            self.image.block(self.groups[group].block_bitmap)
        for group in {(ino - 1) // self.ipg for ino, _ in self.pending_inodes}:
            self.image.block(self.groups[group].inode_bitmap)
        blocks, self.pending_blocks = sorted(self.pending_blocks), []
        i = 0
        while i < len(blocks):
            group = self.group_of_block(blocks[i])
            base = self.group_first_block(group)
            j = i
            while j + 1 < len(blocks) and blocks[j + 1] == blocks[j] + 1 \
                    and blocks[j + 1] < base + self.bpg:
                j += 1
            self._mark_blocks(group, blocks[i] - base, j - i + 1, False)
            i = j + 1
        inodes, self.pending_inodes = self.pending_inodes, []
        for ino, is_dir in inodes:
            group, idx = divmod(ino - 1, self.ipg)
            gd = self.groups[group]
            bm = self.image.block(gd.inode_bitmap)
            bm[idx >> 3] &= ~(1 << (idx & 7)) & 0xFF
            self.image.touch(gd.inode_bitmap, BITMAP)
            self._count_inode(group, 1, is_dir)
