"""Reading ext4 extent trees (read-only mounts of ext4 images)."""

from __future__ import annotations

import bisect
import errno
import struct
from collections import OrderedDict

from .image import Image
from .inode import Inode

__all__ = ["EXTENTS_FL", "ExtentMap"]

EXTENTS_FL = 0x80000
_MAGIC = 0xF30A
_HEADER = struct.Struct("<HHHH4x")  # magic, entries, max, depth
_LEAF = struct.Struct("<IHHI")  # first logical block, length, start hi, start lo
_INDEX = struct.Struct("<IIH2x")  # first logical block, child lo, child hi
_INIT_MAX_LEN = 32768  # longer lengths mark unwritten extents (read as zeros)
_CACHED = 4096  # inodes whose extents are kept

Extent = tuple[int, int, int]  # first logical block, length, first physical block (0: zeros)


class ExtentMap:
    """The extents of inodes, flattened and cached (the image is not written)."""

    def __init__(self, image: Image) -> None:
        self.image = image
        self.cache: OrderedDict[int, tuple[Inode, list[Extent], list[int]]] = OrderedDict()

    def _extents(self, inode: Inode) -> tuple[list[Extent], list[int]]:
        hit = self.cache.get(inode.ino)
        if hit is None or hit[0] is not inode:
            root = struct.pack("<15I", *inode.block)
            found: list[Extent] = []
            self._walk(root, found, 0)
            found.sort()
            hit = self.cache[inode.ino] = (inode, found, [e[0] for e in found])
            if len(self.cache) > _CACHED:
                self.cache.popitem(last=False)
        return hit[1], hit[2]

    def _walk(self, node: bytes | bytearray, out: list[Extent], level: int) -> None:
        magic, entries, _, depth = _HEADER.unpack_from(node, 0)
        if magic != _MAGIC or level > 5 or 12 + entries * 12 > len(node):
            raise OSError(errno.EIO, "corrupt extent tree")
        for i in range(entries):
            off = 12 + i * 12
            if depth == 0:
                first, length, hi, lo = _LEAF.unpack_from(node, off)
                if length > _INIT_MAX_LEN:
                    out.append((first, length - _INIT_MAX_LEN, 0))
                else:
                    out.append((first, length, lo | hi << 32))
            else:
                _, lo, hi = _INDEX.unpack_from(node, off)
                self._walk(self.image.block(lo | hi << 32), out, level + 1)

    def lookup(self, inode: Inode, lblk: int, count: int) -> list[int]:
        """Physical blocks of ``count`` logical blocks from ``lblk`` (0 for holes)."""
        extents, starts = self._extents(inode)
        out: list[int] = []
        end = lblk + count
        i = max(bisect.bisect_right(starts, lblk) - 1, 0)
        while lblk < end:
            if i < len(extents) and extents[i][0] <= lblk < extents[i][0] + extents[i][1]:
                first, length, phys = extents[i]
                n = min(end, first + length) - lblk
                out.extend(range(phys + lblk - first, phys + lblk - first + n) if phys
                           else [0] * n)
                lblk += n
                i += 1
                continue
            nxt = extents[i][0] if i < len(extents) and extents[i][0] > lblk else end
            if i < len(extents) and extents[i][0] <= lblk:
                i += 1
                continue
            n = min(nxt, end) - lblk
            out.extend([0] * n)
            lblk += n
        return out
