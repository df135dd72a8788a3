"""Open remote files: binary and text, with several Tread/Twrite in flight."""

from __future__ import annotations

import asyncio
import codecs
import errno
import os
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

from .errors import with_path
from .fid import Fid
from .results import LockInfo, StatResult
from .wire import (
    LOCK_BLOCKED,
    LOCK_FLAG_BLOCK,
    LOCK_SUCCESS,
    LOCK_UNLCK,
    SETATTR_SIZE,
    OpenMode,
)

__all__ = ["DEFAULT_WINDOW", "RemoteFile", "TextFile"]

T = TypeVar("T")
DEFAULT_WINDOW = 16  # Tread/Twrite requests in flight per transfer


async def run_bounded(limit: int, jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run jobs, at most ``limit`` at once, started in order; results in order.

    ``limit`` workers pull the next job as they finish one, so a transfer of any
    size keeps ``limit`` requests in flight with only ``limit`` tasks. The first
    error cancels the rest (each in-flight request is flushed) and is raised.
    """
    if len(jobs) <= 1:
        return [await job() for job in jobs]
    results: list[T | None] = [None] * len(jobs)
    queue = iter(enumerate(jobs))

    async def worker() -> None:
        for index, job in queue:
            results[index] = await job()

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(limit, len(jobs))):
                group.create_task(worker())
    except BaseExceptionGroup as failure:
        raise failure.exceptions[0] from None
    return results  # type: ignore[return-value]  # every slot was filled


async def _cancel_all(ahead: deque[tuple[int, asyncio.Task[bytes]]]) -> None:
    """Cancel read-ahead tasks (each flushes its Tread) and wait for them to settle."""
    tasks = [task for _, task in ahead]
    ahead.clear()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class RemoteFile:
    """A file opened on the server; position kept by the client, I/O in chunks."""

    def __init__(self, fid: Fid, path: str, mode: OpenMode, *, lock_owner: tuple[int, str],
                 window: int = DEFAULT_WINDOW) -> None:
        self.fid = fid
        self.path = path
        self.mode = mode
        self.window = window
        self._lock_owner = lock_owner
        self._pos = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<RemoteFile {self.path!r} fid={self.fid.fid}>"

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self._closed

    async def __aenter__(self) -> RemoteFile:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check(self, *, reading: bool = False, writing: bool = False) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file")
        if reading and not self.mode.readable:
            raise OSError(errno.EBADF, "file not open for reading", self.path)
        if writing and not self.mode.writable:
            raise OSError(errno.EBADF, "file not open for writing", self.path)

    async def close(self) -> None:
        """Tclunk the open fid."""
        if not self._closed:
            self._closed = True
            await self.fid.clunk()

    # --- positioned I/O -------------------------------------------------

    async def pread(self, offset: int, count: int) -> bytes:
        """Up to ``count`` bytes at ``offset``; fewer only at end of file."""
        self._check(reading=True)
        with with_path(self.path):
            return await self._stream(offset, count)

    async def _stream(self, offset: int, count: int | None) -> bytes:
        """Read [offset, offset+count) (to end of file if None), a window of Treads in flight.

        Reads are issued ahead and consumed in order. A short reply ends the run: the
        rest in flight is discarded and reading resumes after the data received, until
        a reply of 0 bytes (end of file) or ``count`` bytes. With no count the window
        starts at one request and doubles per full reply, so small files stay cheap.
        """
        size = self.fid.io_size
        end = None if count is None else offset + count
        window = 1 if count is None else self.window
        pieces: list[bytes] = []
        ahead: deque[tuple[int, asyncio.Task[bytes]]] = deque()
        issued = offset
        try:
            while True:
                while len(ahead) < window and (end is None or issued < end):
                    n = size if end is None else min(size, end - issued)
                    ahead.append((n, asyncio.ensure_future(self.fid.read(issued, n))))
                    issued += n
                if not ahead:
                    break
                n, task = ahead.popleft()
                data = await task
                pieces.append(data)
                offset += len(data)
                if not data:
                    break
                if len(data) < n:  # drop what was read ahead past a short reply
                    stale = [t for _, t in ahead]
                    ahead.clear()
                    await asyncio.gather(*stale, return_exceptions=True)
                    issued = offset
                else:
                    window = min(window * 2, self.window)
        finally:
            await _cancel_all(ahead)
        return b"".join(pieces)

    async def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Write all of ``data`` at ``offset`` (several Twrites in flight); returns its length."""
        self._check(writing=True)
        view = memoryview(data).cast("B")
        size = self.fid.io_size
        jobs = [partial(self._write_fully, offset + i, view[i:i + size])
                for i in range(0, len(view), size)]
        with with_path(self.path):
            if self.mode.append:  # an O_APPEND server write ignores offsets: keep order
                for job in jobs:
                    await job()
            else:
                await run_bounded(self.window, jobs)
        return len(view)

    async def _write_fully(self, offset: int, view: memoryview) -> None:
        while view:
            written = await self.fid.write(offset, view)
            if written <= 0:
                raise OSError(errno.EIO, "server accepted no bytes of a Twrite")
            offset += written
            view = view[written:]

    # --- stream I/O -----------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """Read ``n`` bytes (all to end of file when negative) from the position."""
        self._check(reading=True)
        if n < 0:
            with with_path(self.path):
                data = await self._stream(self._pos, None)
        else:
            data = await self.pread(self._pos, n)
        self._pos += len(data)
        return data

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write all of ``data`` at the position (at the end in append mode)."""
        self._check(writing=True)
        if self.mode.append:
            self._pos = (await self.stat()).st_size
        written = await self.pwrite(self._pos, data)
        self._pos += written
        return written

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position like io.IOBase.seek; SEEK_END asks the server for the size."""
        self._check()
        if whence == os.SEEK_SET:
            base = 0
        elif whence == os.SEEK_CUR:
            base = self._pos
        elif whence == os.SEEK_END:
            base = (await self.stat()).st_size
        else:
            raise ValueError(f"invalid whence ({whence})")
        if base + offset < 0:
            raise OSError(errno.EINVAL, "negative seek position", self.path)
        self._pos = base + offset
        return self._pos

    async def tell(self) -> int:
        """The current position."""
        self._check()
        return self._pos

    # --- metadata, sync, locks ------------------------------------------

    async def stat(self) -> StatResult:
        """Tgetattr on the open fid (works after the name is unlinked)."""
        self._check()
        with with_path(self.path):
            return StatResult.from_rgetattr(await self.fid.getattr())

    async def truncate(self, size: int | None = None) -> int:
        """Tsetattr(size) on the open fid; default size is the position."""
        self._check(writing=True)
        size = self._pos if size is None else size
        with with_path(self.path):
            await self.fid.setattr(SETATTR_SIZE, size=size)
        return size

    async def fsync(self, datasync: bool = False) -> None:
        """Tfsync."""
        self._check()
        with with_path(self.path):
            await self.fid.fsync(datasync)

    async def flush(self) -> None:
        """Nothing is buffered on the client; present for file-like code."""
        self._check()

    async def lock(self, lock_type: int, start: int = 0, length: int = 0, *, block: bool = False,
                   proc_id: int | None = None, poll: float = 0.1) -> None:
        """Tlock a byte range (length 0: to end of file); LOCK_UNLCK releases.

        Not blocking, a conflict raises BlockingIOError (EAGAIN). Blocking, the
        request carries the BLOCK flag; a server answering BLOCKED anyway is
        polled, as the Linux client does (with a shorter interval).
        """
        self._check()
        owner, client_id = self._lock_owner
        proc = owner if proc_id is None else proc_id
        flags = LOCK_FLAG_BLOCK if block and lock_type != LOCK_UNLCK else 0
        with with_path(self.path):
            while True:
                status = await self.fid.lock(lock_type, flags, start, length, proc, client_id)
                if status == LOCK_SUCCESS:
                    return
                if status != LOCK_BLOCKED:
                    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
                if not block:
                    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
                await asyncio.sleep(poll)
                poll = min(poll * 2, 2.0)

    async def getlock(self, lock_type: int, start: int = 0, length: int = 0, *,
                      proc_id: int | None = None) -> LockInfo:
        """Tgetlock: the first lock that would conflict, or type LOCK_UNLCK if none."""
        self._check()
        owner, client_id = self._lock_owner
        proc = owner if proc_id is None else proc_id
        with with_path(self.path):
            reply = await self.fid.getlock(lock_type, start, length, proc, client_id)
        return LockInfo.from_rgetlock(reply)


class TextFile:
    """Text-mode view of a RemoteFile (str in and out; positions are byte offsets)."""

    def __init__(self, raw: RemoteFile, encoding: str = "utf-8", errors: str = "strict") -> None:
        self.raw = raw
        self.encoding = encoding
        self.errors = errors
        self._decoder = codecs.getincrementaldecoder(encoding)(errors)
        self._chars = ""

    @property
    def path(self) -> str:
        """The path the file was opened with."""
        return self.raw.path

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self.raw.closed

    async def __aenter__(self) -> TextFile:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def read(self, n: int = -1) -> str:
        """Read ``n`` characters, or everything to end of file when negative."""
        if n < 0:
            text = self._chars + self._decoder.decode(await self.raw.read(), final=True)
            self._chars = ""
            return text
        while len(self._chars) < n:
            data = await self.raw.read(max(n, 8192))
            self._chars += self._decoder.decode(data, final=not data)
            if not data:
                break
        text, self._chars = self._chars[:n], self._chars[n:]
        return text

    async def write(self, text: str) -> int:
        """Encode and write ``text``; returns the number of characters."""
        await self._discard_readahead()
        await self.raw.write(text.encode(self.encoding, self.errors))
        return len(text)

    async def _discard_readahead(self) -> None:
        if self._chars or self._decoder.getstate()[0]:
            await self.raw.seek(await self.tell())
            self._chars = ""
            self._decoder.reset()

    async def tell(self) -> int:
        """The byte offset of the next character to be read."""
        unread = len(self._chars.encode(self.encoding, self.errors))
        return await self.raw.tell() - unread - len(self._decoder.getstate()[0])

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Seek to a byte offset (like raw.seek); drops decoded read-ahead."""
        if whence == os.SEEK_CUR:
            offset, whence = offset + await self.tell(), os.SEEK_SET
        self._chars = ""
        self._decoder.reset()
        return await self.raw.seek(offset, whence)

    async def close(self) -> None:
        """Close the underlying file."""
        await self.raw.close()
