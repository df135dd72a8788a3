"""GNU sparse files: the map of stored segments, in the old GNU and the PAX 0.0/0.1/1.0 forms."""

from __future__ import annotations

import bisect
from collections.abc import Callable

from .fields import BLOCK, TarFormatError, padded, parse_number

__all__ = ["SparseMap", "gnu_old_map", "pax_v0_map", "pax_v1_map"]


class SparseMap:
    """Stored segments (logical offset, length) of a file of ``size`` bytes; the rest is holes.

    ``physical[i]`` is where segment i starts among the stored bytes (their running sum).
    """

    __slots__ = ("lengths", "offsets", "physical", "size")

    def __init__(self, segments: list[tuple[int, int]], size: int, where: int) -> None:
        self.offsets: list[int] = []
        self.lengths: list[int] = []
        self.physical: list[int] = []
        stored, last_end = 0, 0
        for offset, length in segments:
            if offset < last_end or length < 0 or offset + length > size:
                raise TarFormatError(where, f"bad sparse map (segment {offset}+{length} "
                                            f"in a file of {size} bytes)")
            if length:
                self.offsets.append(offset)
                self.lengths.append(length)
                self.physical.append(stored)
                stored += length
            last_end = offset + length
        self.size = size

    @property
    def stored(self) -> int:
        return self.physical[-1] + self.lengths[-1] if self.lengths else 0

    def pieces(self, offset: int, size: int) -> list[tuple[int, int, int]]:
        """(logical start, length, stored position or -1 for a hole) covering the range."""
        end = min(offset + size, self.size)
        out: list[tuple[int, int, int]] = []
        i = max(bisect.bisect_right(self.offsets, offset) - 1, 0)
        pos = offset
        while pos < end:
            if i < len(self.offsets) and self.offsets[i] + self.lengths[i] <= pos:
                i += 1
                continue
            if i >= len(self.offsets) or self.offsets[i] >= end:
                out.append((pos, end - pos, -1))
                break
            seg = self.offsets[i]
            if seg > pos:
                out.append((pos, seg - pos, -1))
                pos = seg
            stop = min(seg + self.lengths[i], end)
            out.append((pos, stop - pos, self.physical[i] + pos - seg))
            pos = stop
            i += 1
        return out


def _entries(raw: bytes, count: int, where: int) -> list[tuple[int, int]]:
    out = []
    for i in range(count):
        entry = raw[i * 24:(i + 1) * 24]
        if not entry[0]:  # an empty slot ends the map
            break
        out.append((parse_number(entry[:12], where, "sparse offset"),
                    parse_number(entry[12:], where, "sparse numbytes")))
    return out


def gnu_old_map(header: bytes, extensions: list[bytes], size: int, where: int) -> SparseMap:
    """The 'S' header's four slots at byte 386, then 21 per extension block."""
    segments = _entries(header[386:482], 4, where)
    for block in extensions:
        segments += _entries(block[:504], 21, where)
    return SparseMap(segments, size, where)


def pax_v0_map(pax: dict[str, bytes], records: list[tuple[str, bytes]], size: int,
               where: int) -> SparseMap:
    """PAX 0.1 (``GNU.sparse.map``) or 0.0 (repeated offset/numbytes records)."""
    numbers: list[bytes]
    if "GNU.sparse.map" in pax:
        numbers = pax["GNU.sparse.map"].split(b",") if pax["GNU.sparse.map"] else []
    else:
        numbers = [v for k, v in records if k in ("GNU.sparse.offset", "GNU.sparse.numbytes")]
    if len(numbers) % 2 or not all(n.isdigit() for n in numbers):
        raise TarFormatError(where, "bad PAX record: sparse map")
    values = [int(n) for n in numbers]
    return SparseMap(list(zip(values[::2], values[1::2], strict=True)), size, where)


def pax_v1_map(read: Callable[[int, int], bytes], stored: int, size: int,
               where: int) -> tuple[SparseMap, int]:
    """PAX 1.0: decimal lines at the start of the data (count, then offset/length pairs),
    padded to a block. Returns the map and the bytes it takes."""
    text = b""
    numbers: list[int] = []
    needed, used = 1, 0
    while len(numbers) < needed:
        newline = text.find(b"\n", used)
        if newline < 0:
            chunk = read(len(text), BLOCK) if len(text) < stored else b""
            if len(chunk) < BLOCK:
                raise TarFormatError(where, "truncated sparse map")
            text += chunk
            continue
        line = text[used:newline]
        if not line.isdigit():
            raise TarFormatError(where, f"bad sparse map in the data ({line[:20]!r})")
        numbers.append(int(line))
        used = newline + 1
        if len(numbers) == 1:
            needed = 1 + 2 * numbers[0]
    pairs = numbers[1:]
    return SparseMap(list(zip(pairs[::2], pairs[1::2], strict=True)), size, where), padded(used)
