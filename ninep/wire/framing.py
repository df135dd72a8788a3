"""Split a byte stream into whole 9P frames (sans-I/O)."""

from __future__ import annotations

import struct

from ninep.wire.codec import DecodeError
from ninep.wire.constants import HEADER_SIZE

__all__ = ["LARGE_FRAME", "TVERSION_MAX", "FrameTooLarge", "Framer"]

_SIZE = struct.Struct("<I")

# The largest frame accepted before a session is negotiated: a Tversion is
# size[4] type[1] tag[2] msize[4] version[2+n], 21 bytes for "9P2000.L"; 256
# admits a version string of 243 bytes, and stops a peer that has not
# negotiated from making the server buffer a frame of up to msize.
TVERSION_MAX = 256

# A frame at least this large that arrives in pieces (a Twrite at msize 1 MiB comes
# in reads of up to 256 KiB) is gathered as a list of the pieces and joined once
# when complete: one copy and one allocation, where growing a buffer copied it up
# to four times and touched fresh pages at each growth.
LARGE_FRAME = 1 << 16


class FrameTooLarge(DecodeError):
    """A frame whose size field exceeds the negotiated msize."""


class Framer:
    """Accumulates bytes and yields complete frames.

    The size field is checked as soon as the 4 bytes of it have arrived, so an
    oversize frame is refused before its body is buffered.
    """

    __slots__ = ("_buf", "_gathered", "_missing", "_parts", "msize")

    def __init__(self, msize: int) -> None:
        self._buf = bytearray()
        self._parts: list[bytes | memoryview] = []  # the pieces of a large frame
        self._gathered = 0  # their bytes
        self._missing = 0  # the bytes the large frame still lacks (0: none is pending)
        self.msize = msize

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf) + self._gathered

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data``; return every frame now complete, in order."""
        if self._missing:
            return self._gather(data)
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
                    if size >= LARGE_FRAME:
                        self._start_gathering(bytes(view[pos:end]), size)
                        pos = end
                    break
                frames.append(bytes(view[pos:pos + size]))
                pos += size
        if source is self._buf:
            del self._buf[:pos]
        elif pos < end:
            self._buf += data[pos:] if pos else data
        return frames

    def _start_gathering(self, first: bytes, size: int) -> None:
        self._parts = [first]
        self._gathered = len(first)
        self._missing = size - len(first)

    def _gather(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """The next piece of a large frame; the frame once complete, then what follows."""
        missing = self._missing
        piece: bytes | memoryview = data if type(data) is bytes else bytes(data)
        if len(piece) < missing:
            self._parts.append(piece)
            self._gathered += len(piece)
            self._missing -= len(piece)
            return []
        rest: bytes | memoryview = b""
        if len(piece) > missing:
            view = memoryview(piece)
            piece, rest = view[:missing], view[missing:]
        self._parts.append(piece)
        frame = b"".join(self._parts)
        self._parts = []
        self._gathered = self._missing = 0
        return [frame, *self.feed(rest)] if rest else [frame]
