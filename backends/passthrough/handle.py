"""Open files: a host descriptor read and written off the event loop when it might block,
FIFOs waited on by the event loop, and FIFO opens that wait for the other end."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from ninep.vfs.budget import BUDGET
from ninep.vfs.buffers import take
from ninep.vfs.node import Handle
from ninep.vfs.request import cancellable, current_account

from .fsident import carry
from .hostcalls import NOWAIT, open_noatime, proc_path
from .ofd_locks import OfdLocks

if TYPE_CHECKING:
    from .backend import PassthroughBackend
    from .node import PassthroughNode

__all__ = ["DirHandle", "FifoOpens", "FileHandle", "check_open"]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: FIFO opens that may wait for their other end at once: per backend, per connection
FIFO_WAITS = 16
FIFO_WAITS_PER_CONNECTION = 4


def check_open() -> None:
    """Before a host file is opened for the request being served: EMFILE or ENFILE
    when its connection's share, or the server's total, is spent (vfs.budget)."""
    BUDGET.check_open(current_account())


class DirHandle(Handle):
    """An opened directory: listings go through the node, so it holds no descriptor."""

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        raise OSError(errno.EISDIR, "is a directory")


class FileHandle(Handle):
    """A host descriptor opened for a client; never closed by the descriptor budget.

    Cached data is read inline with RWF_NOWAIT; whatever would wait (cold data,
    writes, fsync) runs in the backend's thread pool. A descriptor in use by a
    thread is closed only when the last such use ends. A FIFO's descriptor is
    made non-blocking and waited on by the event loop, so that a reader waiting
    for data holds no thread and a Tflush cancels its wait.
    """

    def __init__(self, fs: PassthroughBackend, node: PassthroughNode, fd: int, accmode: int,
                 seekable: bool) -> None:
        self.fs = fs
        self.node = node
        node.pins += 1  # an open file's node keeps its descriptor (getattr after unlink)
        self.fd = fd
        self.readable = accmode in (os.O_RDONLY, os.O_RDWR)
        self.writable = accmode in (os.O_WRONLY, os.O_RDWR)
        self.seekable = seekable
        self._busy = 0
        self._closing = False
        self._account = current_account()  # checked by check_open before the open
        BUDGET.opened(self._account)
        fs.fds.opened_other()
        self.nonblocking = False  # the client's O_NONBLOCK: EAGAIN instead of a wait
        self._ready_locks: tuple[asyncio.Lock, asyncio.Lock] | None = None
        self._pipe_waits: set[asyncio.Future[None]] = set()  # woken by close()
        if not seekable:
            self.nonblocking = not os.get_blocking(fd)
            os.set_blocking(fd, False)
            self._ready_locks = (asyncio.Lock(), asyncio.Lock())

    def _check(self, allowed: bool, what: str) -> None:
        if self._closing:
            raise OSError(errno.EBADF, "handle is closed")
        if not allowed:
            raise OSError(errno.EBADF, f"not open for {what}")

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        self._check(self.readable, "reading")
        if offset < 0 or size < 0:
            raise OSError(errno.EINVAL, "negative offset or size")
        buf = take(size)  # given back by the transport once the reply left in full
        if not self.seekable:
            got = await self._pipe_io(True, os.readv, [buf]) if buf else 0
            return buf[:got] if got < size else buf
        got = self._read_cached(buf, offset)
        if got < 0:
            got = await self._in_thread(self._read_blocking, buf, 0, offset)
        elif got < size and not self._at_eof(offset + got):
            got += await self._in_thread(self._read_blocking, buf, got, offset)
        return buf[:got] if got < size else buf

    def _read_cached(self, buf: memoryview, offset: int) -> int:
        """What the page cache holds at ``offset`` (0 only at end of file), or -1."""
        if not buf:
            return 0
        if not self.fs.nowait_reads:
            return -1
        try:
            return os.preadv(self.fd, [buf], offset, NOWAIT)
        except BlockingIOError:
            return -1  # not cached: read in a thread
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                self.fs.nowait_reads = False  # a filesystem without RWF_NOWAIT
                return -1
            raise

    def _at_eof(self, end: int) -> bool:
        return end >= os.fstat(self.fd).st_size

    def _read_blocking(self, buf: memoryview, start: int, offset: int) -> int:
        view = buf[start:]
        done = 0
        while done < len(view):
            got = os.preadv(self.fd, [view[done:]], offset + start + done)
            if got == 0:
                break
            done += got
        return done

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        self._check(self.writable, "writing")
        if offset < 0:
            raise OSError(errno.EINVAL, "negative offset")
        if not data:
            return 0
        if not self.seekable:  # a short count past the pipe's room: the client writes on
            return await self._pipe_io(False, os.writev, [data])
        # buffered writes have no RWF_NOWAIT on ext4 (EOPNOTSUPP): always a thread.
        # On an O_APPEND descriptor Linux pwrite appends, whatever the offset.
        return await self._in_thread(os.pwritev, self.fd, [data], offset)

    async def fsync(self, datasync: bool) -> None:
        self._check(True, "fsync")
        if not self.seekable:
            os.fsync(self.fd)  # a FIFO: EINVAL at once, as fsync(2) on a pipe
            return
        await self._in_thread(os.fdatasync if datasync else os.fsync, self.fd)

    async def _in_thread(self, func: Callable[..., T], *args: object) -> T:
        self._busy += 1
        try:
            return await self.fs.in_thread(func, *args)
        finally:
            self._done_with_fd()

    async def _pipe_io(self, reading: bool, func: Callable[..., int], *args: object) -> int:
        """A FIFO read or write, tried at once and again each time the event loop sees
        the descriptor ready. Nothing is consumed until the call succeeds (pipe(7)), so
        the wait is safe to cancel."""
        self._busy += 1
        try:
            while True:
                try:
                    return func(self.fd, *args)
                except BlockingIOError:
                    if self.nonblocking:
                        raise
                await cancellable(self._ready(reading))
                if self._closing:  # clunked while it waited: as a read on a closed fd
                    raise OSError(errno.EBADF, "handle is closed")
        finally:
            self._done_with_fd()

    async def _ready(self, reading: bool) -> None:
        assert self._ready_locks is not None
        loop = asyncio.get_running_loop()
        # the loop keeps one reader and one writer callback per descriptor
        async with self._ready_locks[reading]:
            ready: asyncio.Future[None] = loop.create_future()
            self._pipe_waits.add(ready)
            if reading:
                loop.add_reader(self.fd, _set_done, ready)
            else:
                loop.add_writer(self.fd, _set_done, ready)
            try:
                await ready
            finally:
                self._pipe_waits.discard(ready)
                if reading:
                    loop.remove_reader(self.fd)
                else:
                    loop.remove_writer(self.fd)

    def host_locks(self) -> OfdLocks:
        """Clients' byte-range locks on this file, held on the host through this
        handle (ofd_locks.py), so that they conflict across worker processes and with
        the host's programs."""
        return OfdLocks(lambda: (self.fd, self.readable, self.writable))

    def _done_with_fd(self) -> None:
        self._busy -= 1
        if self._closing and not self._busy:
            self._release()

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        for ready in self._pipe_waits:  # a FIFO read or write waiting ends with EBADF
            _set_done(ready)
        if not self._busy:
            self._release()

    def _release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.fs.fds.closed_other()
            BUDGET.closed(self._account)
            self.node.pins -= 1
            if self._account is not None:  # its node may be closable now: look again
                self._account.reclaim_floor = 0


def _set_done(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


class FifoOpens:
    """open(2) of FIFOs that wait for their other end (fifo(7)).

    Only an open that must wait takes a thread: O_RDWR and O_NONBLOCK never wait,
    and a writer finds out without waiting whether a reader is there (O_NONBLOCK,
    ENXIO). A reader cannot: Linux tells a reader nothing of a writer's arrival
    (poll reports data, and POLLHUP only after a writer left), so it waits in
    open(2), in a daemon thread of its own: a stuck one holds up neither a pool
    nor the interpreter's exit. At most FIFO_WAITS such opens per backend and
    FIFO_WAITS_PER_CONNECTION per connection wait at once; more get EAGAIN.

    A wait is cancelled by Tflush, by its connection closing, and by the backend
    closing. The thread is then woken by the server opening the other end with
    O_NONBLOCK for an instant: every opener waiting on that FIFO sees a peer that
    came and went (a reader reads end of file, a writer gets EPIPE), which any
    peer may do at any time.
    """

    WAKE_TRIES = 500  # 10 ms apart: a thread reaches open(2) long before

    def __init__(self, limit: int = FIFO_WAITS) -> None:
        self.limit = limit
        self.closed = False
        self._waiting: dict[Future[int], tuple[PassthroughNode, str, int]] = {}
        self._wakers: set[asyncio.Task[None]] = set()

    async def open(self, node: PassthroughNode, flags: int) -> int:
        path = proc_path(node.fd())  # the very object walked to, even if moved since
        accmode = flags & os.O_ACCMODE
        if flags & os.O_NONBLOCK or accmode == os.O_RDWR:
            return open_noatime(path, flags)
        if accmode == os.O_WRONLY:
            try:
                fd = open_noatime(path, flags | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
            else:
                os.set_blocking(fd, True)  # as the client asked
                return fd
        return await self._wait(node, path, flags)

    async def _wait(self, node: PassthroughNode, path: str, flags: int) -> int:
        account = current_account()
        if account is not None and account.fifo_waits >= FIFO_WAITS_PER_CONNECTION:
            account.log_once("fifo", "%d FIFO opens waiting, the most for one connection: "
                             "more refused with EAGAIN", account.fifo_waits)
            raise OSError(errno.EAGAIN, "too many FIFO opens waiting on this connection")
        if len(self._waiting) >= self.limit or self.closed:
            if account is not None:
                account.log_once("fifos", "%d FIFO opens waiting on the export: more "
                                 "refused with EAGAIN", len(self._waiting))
            raise OSError(errno.EAGAIN, "too many FIFO opens waiting")
        done: Future[int] = Future()
        node.pins += 1  # its descriptor names the FIFO until the thread is back
        self._waiting[done] = (node, path, flags & os.O_ACCMODE)
        threading.Thread(target=carry(_open_in_thread), args=(done, path, flags),
                         name="passthrough-fifo-open", daemon=True).start()
        if account is not None:
            account.fifo_waits += 1
        try:
            fd = await cancellable(asyncio.wrap_future(done))
        except asyncio.CancelledError:
            self._abandon(done)
            raise
        except BaseException:
            self._forget(done)
            raise
        finally:
            if account is not None:
                account.fifo_waits -= 1
        self._forget(done)
        if self.closed:
            os.close(fd)
            raise OSError(errno.EBADF, "the backend is closed")
        return fd

    def _forget(self, done: Future[int]) -> None:
        entry = self._waiting.pop(done, None)
        if entry is not None:
            entry[0].pins -= 1

    def _abandon(self, done: Future[int]) -> None:
        """The open's request is gone: wake the thread, close what it opened."""
        if not done.done():
            self._background(self._wake_and_discard(done))
            return
        _close_result(done)
        self._forget(done)

    async def _wake_and_discard(self, done: Future[int]) -> None:
        await self._wake(done)
        if done.done():
            _close_result(done)
            self._forget(done)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._wakers.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self._wakers.discard)

    async def _wake(self, done: Future[int]) -> None:
        """Be the other end for an instant, until the thread is out of open(2)."""
        entry = self._waiting.get(done)
        if entry is None:
            return
        _node, path, accmode = entry
        other = os.O_WRONLY if accmode == os.O_RDONLY else os.O_RDONLY
        peer = -1
        try:
            for _ in range(self.WAKE_TRIES):
                if done.done():
                    return
                if peer < 0:
                    try:
                        peer = os.open(path, other | os.O_NONBLOCK | os.O_CLOEXEC)
                    except OSError:
                        pass  # ENXIO: the thread is not in open(2) yet
                await asyncio.sleep(0.01)
            log.warning("a FIFO open could not be woken: %s", path)  # pragma: no cover
        finally:
            if peer >= 0:
                os.close(peer)

    async def close(self) -> None:
        """Wake every open still waiting (before the nodes' descriptors close): their
        requests then close what they opened."""
        self.closed = True
        woken = [self._wake(done) for done in self._waiting if not done.done()]
        await asyncio.gather(*woken, *self._wakers, return_exceptions=True)


def _open_in_thread(done: Future[int], path: str, flags: int) -> None:
    if not done.set_running_or_notify_cancel():
        return  # cancelled before it began
    try:
        fd = open_noatime(path, flags)
    except BaseException as exc:
        done.set_exception(exc)
    else:
        done.set_result(fd)


def _close_result(done: Future[int]) -> None:
    if not done.cancelled() and done.exception() is None:
        os.close(done.result())
