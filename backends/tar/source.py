"""The archive's bytes: the file itself, or its decompressed copy in an unlinked temporary file.

Compression is recognised by magic bytes, never by the name. A compressed
archive is decompressed once, at mount; reads are then ``os.pread`` on the
copy, as for a plain archive. The archive (an ImageFile: a host file, or a file
of another mount) stays open for the life of the mount. A change to a host
archive (replaced, rewritten, truncated) is noticed here; a file of a mount is
kept from changing by the namespace (vfs/image_claims.py).
"""

from __future__ import annotations

import bz2
import logging
import lzma
import os
import stat
import tempfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from ..image_file import FileStamp, HostImageFile, ImageFile

__all__ = ["ArchiveSource", "SourceError", "detect_compression"]

log = logging.getLogger(__name__)

_MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"LZIP", "lzip"),
)
_Decompressor = Any  # zlib's Decompress, bz2.BZ2Decompressor, lzma.LZMADecompressor
_DECOMPRESSORS: dict[str, Callable[[], _Decompressor]] = {
    "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    "bzip2": bz2.BZ2Decompressor,
    "xz": lzma.LZMADecompressor,
}
_CHUNK = 1 << 18
_OUT_LIMIT = 1 << 22  # bounds the memory one compressed chunk may expand to
_WINDOW = 1 << 16  # the header reader's read-ahead


class SourceError(Exception):
    """The archive cannot be opened or decompressed; the text says why."""

    def __init__(self, what: str) -> None:
        super().__init__(what)


def detect_compression(head: bytes) -> str | None:
    """"gzip", "bzip2", "xz", "zstd", "lzip" from the first bytes, or None (plain tar)."""
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    return None


class ArchiveSource:
    """One open archive: ``read(offset, size)`` of the tar bytes, and change detection.

    ``inline``: reads are host preads, cheap on the event loop from the page cache;
    otherwise (a plain archive in another mount) they are made in a thread.
    """

    def __init__(self, archive: str | ImageFile, tmpdir: str | None = None) -> None:
        self.compression: str | None = None
        self.stale = False
        self.damage: str | None = None  # why decompression stopped early, if it did
        if isinstance(archive, str):
            try:
                archive = HostImageFile(os.path.abspath(archive), False)
            except OSError as exc:
                raise SourceError(f"cannot open: {exc.strerror}") from None
        self.archive = archive
        # a host path is checked again later, whatever the cwd is then
        self.path = archive.name
        self.data_fd = -1  # the decompressed copy, if any
        try:
            if isinstance(archive, HostImageFile) \
                    and not stat.S_ISREG(os.fstat(archive.fd).st_mode):
                raise SourceError("not a regular file")
            self.identity = archive.stamp
            self.compression = detect_compression(archive.pread(0, 8))
            if self.compression is not None:
                self.data_fd = self._decompress(tmpdir)
                self.length = os.fstat(self.data_fd).st_size
            else:
                self.length = archive.size()
        except BaseException:
            self.close()
            raise
        self.inline = archive.host or self.data_fd >= 0
        self._window_start, self._window = 0, b""

    def _decompress(self, tmpdir: str | None) -> int:
        """Decompress into an unlinked temporary file; its fd.

        Damage stops the copy and is recorded in ``damage``; what came before it
        is kept for a lenient mount.
        """
        make = _DECOMPRESSORS.get(self.compression or "")
        if make is None:
            raise SourceError(f"{self.compression} compression is not supported "
                              f"(gzip, bzip2 and xz are)")
        try:
            fd, name = tempfile.mkstemp(prefix="ninep-tar-", dir=tmpdir)
            os.unlink(name)  # gone from the directory at once; freed when the mount closes
        except OSError as exc:
            raise SourceError(f"cannot make a temporary file in {tmpdir or tempfile.gettempdir()}"
                              f" to decompress into: {exc.strerror}") from None
        try:
            written = self._inflate(make, fd)
        except BaseException:
            os.close(fd)
            raise
        if self.damage is None:
            log.info("%s: %s archive decompressed to %d bytes", self.path, self.compression,
                     written)
        return fd

    def _inflate(self, make: Callable[[], _Decompressor], fd: int) -> int:
        """Copy every concatenated stream (gzip members, bzip2/xz streams) into ``fd``."""
        pos = written = 0
        stream, fresh = make(), True
        while chunk := self.archive.pread(pos, _CHUNK):
            start, pos = pos, pos + len(chunk)
            while chunk:
                if fresh and not chunk.strip(b"\0"):
                    break  # zero padding after the last stream (tape blocking): ignored
                fresh = False
                try:
                    for out in _drain(stream, chunk):
                        _write_all(fd, out)
                        written += len(out)
                except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
                    if isinstance(exc, OSError) and exc.errno is not None:
                        raise SourceError(f"cannot write the decompressed copy: "
                                          f"{exc.strerror}") from None
                    self.damage = (f"{self.compression} stream damaged near compressed byte "
                                   f"offset {start}, after {written} decompressed bytes ({exc})")
                    return written
                chunk = stream.unused_data if stream.eof else b""
                if stream.eof:
                    stream, fresh = make(), True
        if not fresh:
            self.damage = (f"{self.compression} stream truncated at compressed byte offset "
                           f"{pos}, after {written} decompressed bytes")
        return written

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (short only at the end)."""
        if self.data_fd >= 0:
            return os.pread(self.data_fd, size, offset)
        return self.archive.pread(offset, size)

    def read_headers(self, offset: int, size: int) -> bytes:
        """``read`` through a read-ahead window: headers of small members share one pread."""
        start = offset - self._window_start
        if start >= 0 and start + size <= len(self._window):
            return self._window[start:start + size]
        if size >= _WINDOW:
            return self.read(offset, size)
        self._window_start, self._window = offset, self.read(offset, _WINDOW)
        return self._window[:size]

    def drop_window(self) -> None:
        self._window_start, self._window = 0, b""

    def check(self) -> None:
        """Raise EIO (and log once) if a host archive changed on disk since the mount."""
        if self.stale:
            raise OSError(5, "the archive changed on disk since it was mounted")
        if not isinstance(self.archive, HostImageFile):
            return
        try:
            now = FileStamp.of(os.fstat(self.archive.fd))
            by_path = FileStamp.of(os.stat(self.path))
        except OSError as exc:
            self._gone(f"cannot stat it any more ({exc.strerror})")
        else:
            if now != self.identity:
                self._gone(f"it was modified in place (size {self.identity.size} -> {now.size}, "
                           f"mtime {self.identity.mtime_ns} -> {now.mtime_ns})")
            elif by_path != self.identity:
                self._gone("the path now names another file (replaced)")

    def check_in_place(self) -> None:
        """The cheap check for each read: one fstat of the open archive."""
        if self.stale:
            raise OSError(5, "the archive changed on disk since it was mounted")
        if isinstance(self.archive, HostImageFile) \
                and FileStamp.of(os.fstat(self.archive.fd)) != self.identity:
            self._gone("it was modified in place")

    def _gone(self, why: str) -> None:
        self.stale = True
        log.error("%s: archive changed while mounted: %s; its files now answer EIO",
                  self.path, why)
        raise OSError(5, "the archive changed on disk since it was mounted")

    def close(self) -> None:
        """Close the copy and the archive (an archive in a mount: call it in a thread)."""
        if self.data_fd >= 0:
            os.close(self.data_fd)
            self.data_fd = -1
        self.archive.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _drain(stream: _Decompressor, data: bytes) -> Iterator[bytes]:
    """Decompress ``data`` in pieces of at most _OUT_LIMIT bytes, up to the stream's end."""
    if isinstance(stream, (bz2.BZ2Decompressor, lzma.LZMADecompressor)):
        yield stream.decompress(data, _OUT_LIMIT)
        while not stream.eof and not stream.needs_input:
            yield stream.decompress(b"", _OUT_LIMIT)
        return
    while True:  # zlib keeps unread input in unconsumed_tail instead
        out = stream.decompress(data, _OUT_LIMIT)
        yield out
        data = stream.unconsumed_tail
        if stream.eof or (not data and len(out) < _OUT_LIMIT):
            return
