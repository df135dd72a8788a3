"""The page store of a RAM file: a dict of page index to a bytearray, holes read as zeros.

Pages hold at most PAGE_SIZE bytes and grow in BLOCK steps; every stored byte
past the file size is zero, so extending a file never has to clear anything.
The functions here do the byte arithmetic; the file (backends/ram.py) keeps the
size, the times and the space accounting.
"""

from __future__ import annotations

__all__ = ["BLOCK", "PAGE_SIZE", "Pages", "blocks_for", "growth", "read_pages", "shrink_pages",
           "write_pages"]

PAGE_SIZE = 64 * 1024  # a file is a dict of pages; a missing page is a hole of zeros
BLOCK = 4096  # pages grow in BLOCK steps; space is counted in BLOCK units
Pages = dict[int, bytearray]


def blocks_for(nbytes: int) -> int:
    """``nbytes`` rounded up to whole BLOCKs."""
    return -(-nbytes // BLOCK) * BLOCK


def read_pages(pages: Pages, offset: int, end: int) -> bytes:
    """Bytes ``offset`` up to ``end`` (within the file): one copy, never a view into
    the pages, with zeros for holes and for page tails not stored."""
    first, last = offset // PAGE_SIZE, (end - 1) // PAGE_SIZE
    parts: list[bytes | memoryview] = []
    for index in range(first, last + 1):
        base = index * PAGE_SIZE
        start, stop = max(offset - base, 0), min(end - base, PAGE_SIZE)
        page = pages.get(index)
        have = 0
        if page is not None:
            have = len(page)
            if have > start:
                parts.append(memoryview(page)[start:min(stop, have)])
        if stop > have:
            parts.append(bytes(stop - max(start, have)))
    return b"".join(parts)


def growth(pages: Pages, offset: int, end: int) -> int:
    """Bytes the pages would grow by to hold ``offset`` up to ``end``: counted before
    writing, so ENOSPC leaves nothing half-written."""
    grow = 0
    for index in range(offset // PAGE_SIZE, (end - 1) // PAGE_SIZE + 1):
        page = pages.get(index)
        need = blocks_for(min(end - index * PAGE_SIZE, PAGE_SIZE))
        grow += max(need - (0 if page is None else len(page)), 0)
    return grow


def write_pages(pages: Pages, offset: int, view: memoryview) -> None:
    """Store ``view`` (bytes) at ``offset``, growing pages in BLOCK steps."""
    end = offset + len(view)
    pos = 0
    for index in range(offset // PAGE_SIZE, (end - 1) // PAGE_SIZE + 1):
        base = index * PAGE_SIZE
        start, stop = offset + pos - base, min(end - base, PAGE_SIZE)
        chunk = view[pos:pos + stop - start]
        page = pages.get(index)
        if page is None:
            page = pages[index] = bytearray(start)
            page += chunk
        else:
            if len(page) < start:
                page.extend(bytes(start - len(page)))
            page[start:stop] = chunk
        if len(page) % BLOCK:
            page.extend(bytes(BLOCK - len(page) % BLOCK))
        pos += stop - start


def shrink_pages(pages: Pages, size: int) -> int:
    """Drop what lies past ``size`` (a shorter file), zeroing the kept page's tail;
    returns the bytes freed."""
    freed = 0
    keep = -(-size // PAGE_SIZE)
    for index in [i for i in pages if i >= keep]:
        freed += len(pages.pop(index))
    tail = size % PAGE_SIZE
    page = pages.get(size // PAGE_SIZE) if tail else None
    if page is not None and len(page) > tail:
        new_len = blocks_for(tail)
        freed += len(page) - new_len
        del page[new_len:]
        page[tail:] = bytes(new_len - tail)
    return freed
