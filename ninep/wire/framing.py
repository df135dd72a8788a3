"""Split a byte stream into whole 9P frames (sans-I/O)."""

from __future__ import annotations

import struct

from ninep.wire.codec import DecodeError
from ninep.wire.constants import HEADER_SIZE

__all__ = ["TVERSION_MAX", "FrameTooLarge", "Framer"]

_SIZE = struct.Struct("<I")

# The largest frame accepted before a session is negotiated: a Tversion is
# size[4] type[1] tag[2] msize[4] version[2+n], 21 bytes for "9P2000.L"; 256
# admits a version string of 243 bytes, and stops a peer that has not
# negotiated from making the server buffer a frame of up to msize.
TVERSION_MAX = 256


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
        if not self._buf and len(data) >= HEADER_SIZE and type(data) is bytes:
            (size,) = _SIZE.unpack_from(data)
            if size == len(data) and size <= self.msize:
                return [data]  # the commonest case: exactly one whole frame
        if self._buf:
            self._buf += data
            source: bytes | bytearray | memoryview = self._buf
        else:
            source = data  # the common case: no partial frame is waiting
        frames: list[bytes] = []
        pos = 0
        end = len(source)
        with memoryview(source) as view:
            while end - pos >= 4:
                (size,) = _SIZE.unpack_from(view, pos)
                if size < HEADER_SIZE:
                    raise DecodeError(f"size field {size} is smaller than a 9P header")
                if size > self.msize:
                    raise FrameTooLarge(f"size field {size} exceeds msize {self.msize}")
                if end - pos < size:
                    break
                frames.append(bytes(view[pos:pos + size]))
                pos += size
        if source is self._buf:
            del self._buf[:pos]
        elif pos < end:
            self._buf += data[pos:] if pos else data
        return frames
