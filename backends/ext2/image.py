"""The image file: positioned reads and writes, and a write-back cache of metadata blocks."""

from __future__ import annotations

import errno

from ..image_file import HostImageFile, ImageFile

__all__ = ["BITMAP", "META", "DirtyBlocks", "Image"]

BITMAP, META = 0, 1  # dirty classes, written in this order at a checkpoint
# dirty blocks and their classes, removals, additions, moves
DirtyBlocks = tuple[dict[int, int], set[int], set[int], list[int]]
_CACHE_BYTES = 64 << 20  # metadata cached before clean blocks are dropped


class Image:
    """An open image file of ``block_size`` blocks.

    Metadata blocks (bitmaps, indirect, directory and xattr blocks) go through
    ``block``: cached, changed in memory, written back by ``write_dirty``. File
    data never enters the cache: it is read and written with ``file.pread/pwrite``.
    """

    def __init__(self, file: ImageFile, block_size: int, blocks_count: int) -> None:
        self.file = file
        self.fd = file.fd if isinstance(file, HostImageFile) else -1  # a host image's
        self.block_size = block_size
        self.blocks_count = blocks_count
        self.cache: dict[int, bytearray] = {}
        self.dirty: dict[int, int] = {}  # block -> dirty class
        self.removals: set[int] = set()  # dirty directory blocks that lost an entry
        self.additions: set[int] = set()  # ... and those that gained one
        self.moves: list[int] = []  # blocks of directory renames, to write back to back

    def pread(self, offset: int, size: int, nowait: bool = False) -> bytes:
        data = self.file.pread(offset, size, nowait)
        if len(data) != size:
            raise OSError(errno.EIO, f"short read of the image at {offset}")
        return data

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self.file.pwrite(offset, data)

    def check_block(self, n: int) -> None:
        if not 0 < n < self.blocks_count:
            raise OSError(errno.EIO, f"block number {n} outside the file system")

    def block(self, n: int) -> bytearray:
        """Metadata block ``n``, cached; mark it with ``touch`` after changing it."""
        buf = self.cache.get(n)
        if buf is None:
            self.check_block(n)
            buf = self.cache[n] = bytearray(self.pread(n * self.block_size, self.block_size))
        return buf

    def new_block(self, n: int, kind: int = META) -> bytearray:
        """A freshly allocated metadata block: zeros, cached, dirty."""
        buf = self.cache[n] = bytearray(self.block_size)
        self.dirty[n] = kind
        return buf

    def touch(self, n: int, kind: int = META) -> None:
        self.dirty[n] = min(kind, self.dirty.get(n, kind))

    def forget(self, n: int) -> None:
        """Block ``n`` was freed: whatever it held need never be written."""
        self.cache.pop(n, None)
        self.dirty.pop(n, None)
        self.removals.discard(n)
        self.additions.discard(n)

    def trim(self) -> None:
        """Drop clean blocks when the cache is over its size; only between operations,
        since callers hold block buffers across calls."""
        if len(self.cache) * self.block_size >= _CACHE_BYTES:
            for n in [n for n in self.cache if n not in self.dirty]:
                del self.cache[n]

    def dirty_state(self) -> DirtyBlocks:
        """What is dirty now, to put back with ``keep_dirty`` if a write-back fails."""
        return dict(self.dirty), set(self.removals), set(self.additions), self.moves

    def keep_dirty(self, saved: DirtyBlocks) -> None:
        """After a failed write-back: every block dirty before it is dirty again (those
        it did write are written again next time; the cache still holds them all)."""
        dirty, removals, additions, moves = saved
        for n, kind in dirty.items():
            self.touch(n, kind)
        self.removals |= removals
        self.additions |= additions
        if not self.moves:  # write_moves took them; nothing was noted since
            self.moves = moves

    def write_dirty(self, kind: int, removals: bool | None = None,
                    additions: bool | None = None) -> int:
        """Write the dirty blocks of class ``kind`` in block order, merging neighbours.

        ``removals`` / ``additions`` True or False: only the directory blocks that
        did or did not lose / gain an entry since the last checkpoint.
        """
        moving = set(self.moves)
        todo = sorted(n for n, k in self.dirty.items() if k == kind and n not in moving
                      and (removals is None or (n in self.removals) == removals)
                      and (additions is None or (n in self.additions) == additions))
        self.removals.difference_update(todo)
        self.additions.difference_update(todo)
        bs = self.block_size
        i = 0
        while i < len(todo):
            j = i + 1
            while j < len(todo) and todo[j] == todo[j - 1] + 1 and j - i < 256:
                j += 1
            parts = [self.cache[n] for n in todo[i:j]]
            self.pwrite(todo[i] * bs, b"".join(parts) if len(parts) > 1 else parts[0])
            i = j
        for n in todo:
            del self.dirty[n]
        return len(todo)

    def write_moves(self) -> None:
        """Write the blocks of directory renames in the order they were noted."""
        moves, self.moves = self.moves, []
        for n in moves:
            if n in self.dirty:
                self.pwrite(n * self.block_size, self.cache[n])
                del self.dirty[n]
                self.removals.discard(n)
                self.additions.discard(n)
