"""Logical-to-physical block mapping through direct, single, double and triple indirect blocks."""

from __future__ import annotations

import errno
import struct

from .alloc import Allocator
from .extents import EXTENTS_FL, ExtentMap
from .image import Image
from .inode import Inode

__all__ = ["BlockMap", "max_file_size"]

_U32 = struct.Struct("<I")
Leaf = list[int] | bytearray
_MAX_LFS_FILESIZE = (1 << 63) - 1


def max_file_size(block_size: int) -> int:
    """The largest file the kernel's ext2 makes on this block size (its ext2_max_size).

    The block tree's reach, or less where a dense file's data and indirect blocks
    would overflow the 32-bit i_blocks (in 512-byte sectors; huge_file is not
    written here): 4 KiB blocks stop near 2 TiB, not the tree's 4 TiB. A file
    past it would read short through the kernel (s_maxbytes).
    """
    bits = block_size.bit_length() - 1
    ppb = 1 << (bits - 2)
    res = 12 + ppb + ppb ** 2 + ppb ** 3
    upper = ((1 << 32) - 1) >> (bits - 9)
    if res + 1 + (1 + ppb) + (1 + ppb + ppb * ppb) > upper:
        res = upper
        upper -= 12 + ppb
        meta = 1  # the single indirect block
        if upper < ppb * ppb:
            meta += 1 + -(-upper // ppb)
        else:
            upper -= ppb * ppb
            meta += 1 + ppb + 1 + -(-upper // ppb) + -(-upper // (ppb * ppb))
        res -= meta
    return min(res << bits, _MAX_LFS_FILESIZE)


class BlockMap:
    """Maps, allocates and frees the blocks of inodes on one file system."""

    def __init__(self, image: Image, alloc: Allocator) -> None:
        self.image, self.alloc = image, alloc
        bs = image.block_size
        self.per = per = bs // 4
        self.sectors = bs // 512
        self.max_blocks = 12 + per + per * per + per * per * per
        self.max_size = max_file_size(bs)  # bytes: EFBIG past it
        self._unpack = struct.Struct(f"<{per}I").unpack_from
        self.extents = ExtentMap(image)

    # --- walking --------------------------------------------------------------

    def _route(self, lblk: int) -> tuple[int, list[int]]:
        """(i_block slot, indexes in each indirect level) for ``lblk``."""
        per = self.per
        if lblk < 12:
            return lblk, []
        lblk -= 12
        if lblk < per:
            return 12, [lblk]
        lblk -= per
        if lblk < per * per:
            return 13, [lblk // per, lblk % per]
        lblk -= per * per
        if lblk < per * per * per:
            return 14, [lblk // (per * per), (lblk // per) % per, lblk % per]
        raise OSError(errno.EFBIG, "file too large for this block size")

    def _leaf(self, inode: Inode, lblk: int, goal: int,
              create: bool) -> tuple[Leaf | None, int, int, int]:
        """(pointer array or None for a hole, its block or 0, index of ``lblk``, entries left)."""
        slot, indexes = self._route(lblk)
        if not indexes:
            return inode.block, 0, slot, 12 - slot
        ptr = inode.block[slot]
        if ptr == 0:
            if not create:
                return None, 0, 0, self.per - indexes[-1]
            ptr = inode.block[slot] = self._new_indirect(inode, goal)
        for idx in indexes[:-1]:
            buf = self.image.block(ptr)
            child = _U32.unpack_from(buf, idx * 4)[0]
            if child == 0:
                if not create:
                    return None, 0, 0, self.per - indexes[-1]
                child = self._new_indirect(inode, goal)
                _U32.pack_into(buf, idx * 4, child)
                self.image.touch(ptr)
            ptr = child
        return self.image.block(ptr), ptr, indexes[-1], self.per - indexes[-1]

    def _new_indirect(self, inode: Inode, goal: int) -> int:
        block, _ = self.alloc.alloc_run(goal, 1)
        self.image.new_block(block)
        inode.blocks += self.sectors
        return block

    # --- reading --------------------------------------------------------------

    def lookup(self, inode: Inode, lblk: int, count: int) -> list[int]:
        """Physical blocks of ``count`` logical blocks from ``lblk`` (0 for a hole)."""
        if inode.flags & EXTENTS_FL:
            return self.extents.lookup(inode, lblk, count)
        out: list[int] = []
        end = min(lblk + count, self.max_blocks)
        while lblk < end:
            leaf, _, idx, avail = self._leaf(inode, lblk, 0, False)
            n = min(avail, end - lblk)
            if leaf is None:
                out.extend([0] * n)
            elif isinstance(leaf, list):
                out.extend(leaf[idx:idx + n])
            else:
                out.extend(self._unpack(leaf)[idx:idx + n])
            lblk += n
        return out

    def runs(self, inode: Inode, lblk: int, count: int) -> list[tuple[int, int]]:
        """(first physical block or 0 for a hole, length) runs covering the range."""
        out: list[tuple[int, int]] = []
        start, length = -1, 0
        for p in self.lookup(inode, lblk, count):
            if length and (p == start + length if start else p == 0):
                length += 1
                continue
            if length:
                out.append((start, length))
            start, length = p, 1
        if length:
            out.append((start, length))
        return out

    # --- allocating -----------------------------------------------------------

    def ensure(self, inode: Inode, lblk: int, count: int, goal: int,
               made: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
        """Allocate the holes among ``count`` blocks from ``lblk``; the new (lblk, n) ranges.

        ``made`` collects them as they are mapped, so a caller can undo a partial ENOSPC.
        """
        if lblk + count > self.max_blocks:
            raise OSError(errno.EFBIG, "file too large for this block size")
        if inode.flags & EXTENTS_FL:
            raise OSError(errno.EROFS, "extent-mapped files are read-only here")
        if made is None:
            made = []
        end = lblk + count
        while lblk < end:
            leaf, leaf_block, idx, avail = self._leaf(inode, lblk, goal, True)
            assert leaf is not None
            n = min(avail, end - lblk)
            current = leaf if isinstance(leaf, list) else self._unpack(leaf)
            i = 0
            while i < n:
                p = current[idx + i]
                if p:
                    goal = p + 1
                    i += 1
                    continue
                gap = 1
                while i + gap < n and not current[idx + i + gap]:
                    gap += 1
                first, got = self.alloc.alloc_run(goal, gap)
                for k in range(got):
                    self._set(leaf, leaf_block, idx + i + k, first + k)
                inode.blocks += got * self.sectors
                made.append((lblk + i, got))
                goal = first + got
                i += got
            lblk += n
        return made

    def _set(self, leaf: Leaf, leaf_block: int, idx: int, value: int) -> None:
        if isinstance(leaf, list):
            leaf[idx] = value
        else:
            _U32.pack_into(leaf, idx * 4, value)
            self.image.touch(leaf_block)

    def unmap(self, inode: Inode, lblk: int) -> None:
        """Free the data block at ``lblk`` (leaving its indirect blocks), if mapped."""
        leaf, leaf_block, idx, _ = self._leaf(inode, lblk, 0, False)
        if leaf is None:
            return
        p = leaf[idx] if isinstance(leaf, list) else _U32.unpack_from(leaf, idx * 4)[0]
        if p:
            self._set(leaf, leaf_block, idx, 0)
            self.alloc.free_block(p)
            inode.blocks -= self.sectors

    # --- freeing --------------------------------------------------------------

    def truncate(self, inode: Inode, keep: int) -> int:
        """Free every block mapping logical blocks >= ``keep``; the count freed."""
        if inode.flags & EXTENTS_FL:
            raise OSError(errno.EROFS, "extent-mapped files are read-only here")
        freed = 0
        for i in range(max(keep, 0), 12):
            if inode.block[i]:
                self.alloc.free_block(inode.block[i])
                inode.block[i] = 0
                freed += 1
        per = self.per
        first = 12
        for slot, depth in ((12, 1), (13, 2), (14, 3)):
            ptr = inode.block[slot]
            if ptr:
                gone, count = self._free_tree(ptr, depth, first, keep)
                freed += count
                if gone:
                    inode.block[slot] = 0
            first += per ** depth
        inode.blocks -= freed * self.sectors
        return freed

    def _free_tree(self, ptr: int, depth: int, first: int, keep: int) -> tuple[bool, int]:
        """Free the part of the subtree under indirect block ``ptr`` past ``keep``."""
        span = self.per ** (depth - 1)  # logical blocks under each pointer of this block
        buf = self.image.block(ptr)
        ptrs = self._unpack(buf)
        freed = 0
        start = max(0, (keep - first) // span)
        for i in range(start, self.per):
            p = ptrs[i]
            sub_first = first + i * span
            if p == 0 or sub_first + span <= keep:
                continue
            if depth == 1:
                gone, count = sub_first >= keep, 1 if sub_first >= keep else 0
                if gone:
                    self.alloc.free_block(p)
            else:
                gone, count = self._free_tree(p, depth - 1, sub_first, keep)
            freed += count
            if gone:
                _U32.pack_into(buf, i * 4, 0)
                self.image.touch(ptr)
        if first >= keep:
            self.alloc.free_block(ptr)
            return True, freed + 1
        return False, freed
