"""An open file of the 9p backend: I/O split to the back server's iounit, read-ahead for
sequential readers, forwarded locks."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ninep.clients import Fid
from ninep.vfs.node import Handle, OpenFlags
from ninep.vfs.request import cancellable

from .link import remote_errors
from .locks import HandleLocks

if TYPE_CHECKING:
    from .nodes import RemoteNode

__all__ = ["READAHEAD_AGE", "READAHEAD_BLOCK", "READAHEAD_BLOCKS", "READAHEAD_BUDGET",
           "RemoteHandle", "gather_all"]

T = TypeVar("T")
#: A sequential reader's next bytes are asked for in blocks of up to this size (less
#: when the back server's iounit is smaller), READAHEAD_BLOCKS of them ahead: a client
#: reading 64 KiB at a time (diodcat, cat over v9fs) is answered from memory for most
#: reads, and never waits for two hops.
READAHEAD_BLOCK = 1 << 20
READAHEAD_BLOCKS = 2
#: Data read ahead is used only this many seconds after it was asked for, and never after
#: a change made through this mount: past that, the read goes to the back server again.
READAHEAD_AGE = 0.05
#: Bytes one mount may hold read ahead over all its open files (a client opening many
#: files cannot make it hold more); past it, reads are not read ahead.
READAHEAD_BUDGET = 64 << 20


@dataclass(slots=True)
class _Block:
    start: int
    length: int
    task: asyncio.Task[bytes]
    asked: float
    changes: int  # the link's count of changes when it was asked for

    @property
    def end(self) -> int:
        return self.start + self.length


class RemoteHandle(Handle):
    """An open fid of the back server. Reads and writes larger than its iounit go as
    several requests at once; after a reconnect the handle answers EIO until closed."""

    forwards_locks = True

    def __init__(self, node: RemoteNode, fid: Fid, generation: int, flags: OpenFlags,
                 readahead: bool = True) -> None:
        self.node = node
        self.fid = fid
        self.generation = generation
        self.append = flags.appends
        # only a reader's data can be read ahead: a writer through this fid changes it
        self.readahead = readahead and flags.read_only_access
        self.locks: HandleLocks | None = None  # owners that locked through this handle
        self._closed = False
        self._next = -1  # where a sequential reader reads next
        self._blocks: list[_Block] = []  # read ahead, in file order

    def live(self) -> Fid:
        link = self.node.conn
        if self.generation != link.generation or not link.up:
            raise OSError(errno.EIO, "stale: the back server restarted while this file "
                          "was open")
        return self.fid

    # --- reading --------------------------------------------------------

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        fid = self.live()
        data: bytes | memoryview | None = None
        if self._blocks:
            data = await self._from_blocks(offset, size)
        if data is None:
            with remote_errors(self.node.conn):
                data = await _flushable(self._read(fid, offset, size))
        if self.readahead:
            sequential = offset == self._next
            self._next = offset + len(data)
            if sequential and len(data) == size and size:
                self._ask_ahead(fid, self._next, size)
        return data

    async def _from_blocks(self, offset: int, size: int) -> memoryview | None:
        """The bytes read ahead for this read while they are fresh; None: ask the server."""
        link = self.node.conn
        now = asyncio.get_running_loop().time()
        while self._blocks and self._blocks[0].end <= offset:  # read past: not needed
            self._drop(self._blocks.pop(0))
        block = self._blocks[0] if self._blocks else None
        if block is None or block.start > offset or offset + size > block.end or \
                block.changes != link.changes or now - block.asked > READAHEAD_AGE:
            self._drop_blocks()  # not the reader we guessed, or stale
            return None
        try:
            payload = await asyncio.shield(block.task)
        except (OSError, ConnectionError):
            self._drop_blocks()
            return None  # read it again: the answer (or error) comes from a fresh request
        at = offset - block.start
        return memoryview(payload)[at:at + size]  # bytes never change: a view is safe

    def _ask_ahead(self, fid: Fid, start: int, size: int) -> None:
        link = self.node.conn
        per_block = max(size, min(fid.io_size, READAHEAD_BLOCK) // size * size)
        at = self._blocks[-1].end if self._blocks and self._blocks[-1].end >= start else start
        now = asyncio.get_running_loop().time()
        while len(self._blocks) < READAHEAD_BLOCKS and \
                link.ahead_bytes + per_block <= READAHEAD_BUDGET:
            task = asyncio.ensure_future(self._read(fid, at, per_block))
            task.add_done_callback(_consume)
            self._blocks.append(_Block(at, per_block, task, now, link.changes))
            link.ahead_bytes += per_block
            at += per_block

    def _drop(self, block: _Block) -> None:
        block.task.cancel()
        self.node.conn.ahead_bytes -= block.length

    def _drop_blocks(self) -> None:
        blocks, self._blocks = self._blocks, []
        for block in blocks:
            self._drop(block)

    @staticmethod
    async def _read(fid: Fid, offset: int, size: int) -> bytes:
        step = fid.io_size
        if size <= step:
            return await fid.read(offset, size)
        spans = [(at, min(step, offset + size - at)) for at in range(offset, offset + size, step)]
        pieces = await gather_all([fid.read(at, n) for at, n in spans])
        out = []
        for piece, (_, n) in zip(pieces, spans, strict=True):
            out.append(piece)
            if len(piece) < n:  # end of file: what follows read nothing more
                break
        return b"".join(out)

    # --- writing --------------------------------------------------------

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        fid = self.live()
        self.node.conn.changed()
        step = fid.io_size
        view = memoryview(data)
        with remote_errors(self.node.conn):
            if len(view) <= step:
                return await fid.write(offset, view)
            if self.append:  # each lands at the end as it arrives: one at a time, in order
                done = 0
                while done < len(view):
                    wrote = await fid.write(offset + done, view[done:done + step])
                    if wrote <= 0:
                        break
                    done += wrote
                return done
            spans = [(at, view[at - offset:at - offset + step])
                     for at in range(offset, offset + len(view), step)]
            counts = await gather_all([fid.write(at, chunk) for at, chunk in spans])
        done = 0
        for count, (_, chunk) in zip(counts, spans, strict=True):
            done += count
            if count < len(chunk):
                break
        return done

    async def fsync(self, datasync: bool) -> None:
        fid = self.live()
        with remote_errors(self.node.conn):
            await fid.fsync(datasync)

    # --- locks ----------------------------------------------------------

    async def lock(self, lock_type: int, flags: int, start: int, length: int,
                   owner: tuple[int, str, int]) -> int:
        fid = self.live()
        if self.locks is None:
            self.locks = HandleLocks()
        with remote_errors(self.node.conn):
            return await self.locks.lock(fid, lock_type, flags, start, length, owner)

    async def getlock(self, lock_type: int, start: int, length: int,
                      owner: tuple[int, str, int]) -> tuple[int, int, int, int, str]:
        fid = self.live()
        with remote_errors(self.node.conn):
            return await HandleLocks().getlock(fid, lock_type, start, length, owner)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._drop_blocks()
        link = self.node.conn
        if self.generation != link.generation or not link.up:
            return  # the fid (and its locks) went with the old connection
        if self.locks is not None:
            await self.locks.release_all(self.fid)
        try:
            with remote_errors(link):
                await self.fid.clunk()
        except OSError:
            pass  # a clunk forgets the fid whatever the server answers


async def _flushable(read: Coroutine[Any, Any, bytes]) -> bytes:
    """A read that a Tflush of ours abandons at once, however stalled the back server:
    it runs as its own Task, which the client library then flushes there in the
    background (waiting for that Rflush is its business, not our client's). A read
    changes nothing, so it may be cancelled (vfs.request.cancellable)."""
    inner = asyncio.ensure_future(read)
    try:
        return await cancellable(asyncio.shield(inner))
    except asyncio.CancelledError:
        inner.cancel()
        inner.add_done_callback(_consume)
        raise


def _consume(task: asyncio.Task[bytes]) -> None:
    """A read-ahead nobody awaited: retrieve its error so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


async def gather_all(jobs: list[Awaitable[T]]) -> list[T]:
    """Await every job at once; the first error is raised once all have ended."""
    results = await asyncio.gather(*jobs, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]  # no exception left
