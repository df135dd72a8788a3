"""Reusable read buffers: a backend reads file data into one, the transport sends
it and gives it back.

A fresh ``bytearray`` per Tread costs a malloc and a memset of the whole size,
so a backend that must read into a buffer (passthrough: ``os.preadv`` with
RWF_NOWAIT) takes one here. (``os.pread`` returns bytes that were never
zeroed: tar reads that way, and gains nothing from the pool.) The transport gives it back only when the reply left
in full at once (the transport's write buffer is empty right after the
write): uvloop keeps a reference to a view it could not send yet, and reusing
such a buffer would change the bytes in flight. A buffer not given back is
simply freed.
"""

from __future__ import annotations

__all__ = ["KEEP", "MIN_SIZE", "ReadBuffer", "give", "take"]

MIN_SIZE = 4096
KEEP = 4  # free buffers kept per size: replies in flight at once are few
_free: dict[int, list[ReadBuffer]] = {}


class ReadBuffer(bytearray):
    """A buffer of this pool (``give`` takes back nothing else)."""

    __slots__ = ()


def take(size: int) -> memoryview:
    """A writable view of ``size`` bytes of a pooled buffer (contents undefined)."""
    capacity = MIN_SIZE if size <= MIN_SIZE else 1 << (size - 1).bit_length()
    free = _free.get(capacity)
    buf = free.pop() if free else ReadBuffer(capacity)
    return memoryview(buf)[:size]


def give(data: object) -> None:
    """Take back the buffer under ``data`` (a view from ``take``), once its bytes are
    no longer needed by anyone; anything else is ignored."""
    if type(data) is not memoryview:
        return
    buf = data.obj
    if type(buf) is not ReadBuffer:
        return
    free = _free.setdefault(len(buf), [])
    if len(free) < KEEP and all(b is not buf for b in free):
        free.append(buf)
