"""Split a byte stream into whole 9P frames (sans-I/O)."""

from __future__ import annotations

import struct

from .messages import HEADER_SIZE, DecodeError

__all__ = ["Framer", "FrameTooLarge"]

_SIZE = struct.Struct("<I")


class FrameTooLarge(DecodeError):
    """A frame whose size field exceeds the negotiated msize."""


class Framer:
    """Accumulates bytes and yields complete frames.

    The size field is checked as soon as the 4 bytes of it have arrived, so an
    oversize frame is refused before its body is buffered.
    """

    __slots__ = ("_buf", "msize")

    def __init__(self, msize: int) -> None:
        self._buf = bytearray()
        self.msize = msize

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data``; return every frame now complete, in order."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (size,) = _SIZE.unpack_from(buf, pos)
            if size < HEADER_SIZE:
                raise DecodeError(f"size field {size} is smaller than a 9P header")
            if size > self.msize:
                raise FrameTooLarge(f"size field {size} exceeds msize {self.msize}")
            if end - pos < size:
                break
            frames.append(bytes(buf[pos:pos + size]))
            pos += size
        if pos:
            del buf[:pos]
        return frames
