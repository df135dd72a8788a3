"""Directories: linear dirent blocks (htree leaves are the same blocks), with a name index in memory.

A hashed (dir_index) directory is read through its leaf blocks, which hold
ordinary entries; the index blocks look like empty entries spanning a block.
Changing a hashed directory clears its EXT2_INDEX_FL, which leaves a valid
linear directory that e2fsck accepts (and ``e2fsck -D`` can re-index).
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Iterator

from .bmap import BlockMap
from .image import Image
from .inode import EXT2_INDEX_FL, Inode

__all__ = ["Directory", "rec_size"]

_HEAD = struct.Struct("<IHBB")
_HEAD_OLD = struct.Struct("<IHH")  # no filetype feature: a 16-bit name length


def rec_size(name_len: int) -> int:
    """Bytes an entry with a name of ``name_len`` needs (header + name, 4-aligned)."""
    return (8 + name_len + 3) & ~3


class Directory:
    """The entries of one directory inode: name -> (inode, file type, byte offset)."""

    def __init__(self, inode: Inode, image: Image, bmap: BlockMap, filetype: bool,
                 dirty: Callable[[Inode], None]) -> None:
        self.inode, self.image, self.bmap = inode, image, bmap
        self.filetype, self.dirty = filetype, dirty
        self.bs = image.block_size
        self.names: dict[bytes, tuple[int, int, int]] = {}
        # Per block: the largest record that fits, and the entry whose slack offers it
        # (an estimate kept without rescanning: it may only be too small).
        self.free: list[int] = []
        self.slot: list[int] = []
        self.hint = 0  # the block that took the last insert
        for b in range(self.nblocks):
            self.free.append(0)
            self.slot.append(0)
            self._scan_block(b)

    @property
    def nblocks(self) -> int:
        return self.inode.size // self.bs

    def _phys(self, b: int) -> int:
        p = self.bmap.lookup(self.inode, b, 1)[0]
        if not p:
            raise OSError(errno.EIO, f"directory inode {self.inode.ino} has a hole at block {b}")
        return p

    def _parse(self, buf: bytearray, off: int) -> tuple[int, int, int, int]:
        """(inode, rec_len, name_len, file type) of the entry at ``off``."""
        if self.filetype:
            ino, rec_len, name_len, ftype = _HEAD.unpack_from(buf, off)
        else:
            (ino, rec_len, name_len), ftype = _HEAD_OLD.unpack_from(buf, off), 0
        if rec_len < 8 or rec_len & 3 or off + rec_len > self.bs or 8 + name_len > rec_len:
            raise OSError(errno.EIO, f"corrupt entry in directory inode {self.inode.ino}")
        return ino, rec_len, name_len, ftype

    def _entries(self, b: int) -> Iterator[tuple[int, int, int, int, int]]:
        """(offset in block, inode, rec_len, name_len, file type) of every record of block ``b``."""
        buf = self.image.block(self._phys(b))
        off = 0
        while off < self.bs:
            ino, rec_len, name_len, ftype = self._parse(buf, off)
            yield off, ino, rec_len, name_len, ftype
            off += rec_len

    def _scan_block(self, b: int) -> None:
        buf = self.image.block(self._phys(b))
        for off, ino, _, name_len, ftype in self._entries(b):
            if ino:
                name = bytes(buf[off + 8:off + 8 + name_len])
                self.names[name] = (ino, ftype, b * self.bs + off)
        self._rescan_free(b)

    # --- reading --------------------------------------------------------------

    def get(self, name: bytes) -> tuple[int, int] | None:
        hit = self.names.get(name)
        return None if hit is None else (hit[0], hit[1])

    def listing(self, cookie: int) -> Iterator[tuple[bytes, int, int, int]]:
        """(name, inode, file type, cookie) of live entries at byte offsets >= ``cookie``."""
        for b in range(cookie // self.bs, self.nblocks):
            buf = self.image.block(self._phys(b))
            base = b * self.bs
            for off, ino, _, name_len, ftype in self._entries(b):
                if ino and base + off >= cookie:
                    yield bytes(buf[off + 8:off + 8 + name_len]), ino, ftype, base + off + 1

    def is_empty(self) -> bool:
        return all(name in (b".", b"..") for name in self.names)

    # --- changing -------------------------------------------------------------

    def _changed(self, phys: int, added: bool = True) -> None:
        self.image.touch(phys)
        if added:
            self.image.additions.add(phys)
        if self.inode.flags & EXT2_INDEX_FL:
            self.inode.flags &= ~EXT2_INDEX_FL
            self.dirty(self.inode)

    def _write_entry(self, buf: bytearray, off: int, ino: int, rec_len: int, name: bytes,
                     ftype: int) -> None:
        if self.filetype:
            _HEAD.pack_into(buf, off, ino, rec_len, len(name), ftype)
        else:
            _HEAD_OLD.pack_into(buf, off, ino, rec_len, len(name))
        buf[off + 8:off + 8 + len(name)] = name

    def add(self, name: bytes, ino: int, ftype: int, goal: int) -> None:
        """Insert an entry (the name must be new), growing the directory by a block if full."""
        need = rec_size(len(name))
        hint = self.hint if self.hint < len(self.free) else 0
        if self.free and self.free[hint] >= need and self._insert_in(hint, name, ino, ftype, need):
            return
        for b, room in enumerate(self.free):
            if room >= need and self._insert_in(b, name, ino, ftype, need):
                self.hint = b
                return
        b = self.nblocks
        self.bmap.ensure(self.inode, b, 1, goal)
        phys = self._phys(b)
        buf = self.image.new_block(phys)
        self._write_entry(buf, 0, ino, self.bs, name, ftype)
        self.inode.size += self.bs
        self.free.append(self.bs - need)
        self.slot.append(0)
        self.hint = b
        self.names[name] = (ino, ftype, b * self.bs)
        self._changed(phys)
        self.dirty(self.inode)

    def _insert_in(self, b: int, name: bytes, ino: int, ftype: int, need: int) -> bool:
        phys = self._phys(b)
        buf = self.image.block(phys)
        off = self.slot[b]
        e_ino, rec_len, name_len, _ = self._parse(buf, off)
        used = rec_size(name_len) if e_ino else 0
        if rec_len - used < need:
            self._rescan_free(b)  # the estimate was stale
            if self.free[b] < need:
                return False
            off = self.slot[b]
            e_ino, rec_len, name_len, _ = self._parse(buf, off)
            used = rec_size(name_len) if e_ino else 0
        at = off + used
        if e_ino:
            struct.pack_into("<H", buf, off + 4, used)
        self._write_entry(buf, at, ino, rec_len - used, name, ftype)
        self.names[name] = (ino, ftype, b * self.bs + at)
        self._changed(phys)
        self.free[b], self.slot[b] = rec_len - used - need, at
        return True

    def _rescan_free(self, b: int) -> None:
        best, where = 0, 0
        for off, ino, rec_len, name_len, _ in self._entries(b):
            room = rec_len - rec_size(name_len) if ino else rec_len
            if room > best:
                best, where = room, off
        self.free[b], self.slot[b] = best, where

    def remove(self, name: bytes) -> int:
        """Take ``name`` out; its inode number."""
        ino, _, pos = self.names.pop(name)
        b, target = divmod(pos, self.bs)
        phys = self._phys(b)
        buf = self.image.block(phys)
        prev = -1
        for off, _, rec_len, _, _ in self._entries(b):
            if off == target:
                if prev < 0:  # the first record of a block cannot merge backwards
                    struct.pack_into("<I", buf, off, 0)
                    room, at = rec_len, off
                else:
                    _, prev_len, p_name_len, _ = self._parse(buf, prev)
                    struct.pack_into("<H", buf, prev + 4, prev_len + rec_len)
                    room, at = prev_len + rec_len - rec_size(p_name_len), prev
                if room > self.free[b]:
                    self.free[b], self.slot[b] = room, at
                break
            prev = off
        self._changed(phys, added=False)
        self.image.removals.add(phys)  # written after blocks that gained entries
        return ino

    def block_of(self, name: bytes) -> int:
        """The physical block holding the entry ``name``."""
        return self._phys(self.names[name][2] // self.bs)

    def retarget(self, name: bytes, ino: int, ftype: int) -> None:
        """Point the existing entry ``name`` at another inode (rename over it, or '..')."""
        _, _, pos = self.names[name]
        b, off = divmod(pos, self.bs)
        phys = self._phys(b)
        buf = self.image.block(phys)
        struct.pack_into("<I", buf, off, ino)
        if self.filetype:
            buf[off + 7] = ftype
        self.names[name] = (ino, ftype, pos)
        self._changed(phys)

    def init_block(self, self_ino: int, parent_ino: int, dtype: int, goal: int) -> None:
        """Write "." and ".." into the new, empty directory's first block (allocated here)."""
        self.bmap.ensure(self.inode, 0, 1, goal)
        phys = self._phys(0)
        buf = self.image.new_block(phys)
        self._write_entry(buf, 0, self_ino, 12, b".", dtype)
        self._write_entry(buf, 12, parent_ino, self.bs - 12, b"..", dtype)
        self.inode.size = self.bs
        self.free, self.slot, self.hint = [self.bs - 24], [12], 0
        self.names = {b".": (self_ino, dtype, 0), b"..": (parent_ino, dtype, 12)}
