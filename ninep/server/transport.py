"""One asyncio Protocol per connection: framing, backpressure, the tag table, Tversion, Tflush.

A request whose handler finishes without waiting is answered inline, with no
Task (most RAM operations); one that waits is driven on by a Task from the
point where it first waited. Replies go out in completion order.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
from collections import deque
from typing import Any, Callable, Coroutine

from ninep.server import handlers as _handlers  # noqa: F401 - fills the handler table
from ninep.server import metrics
from ninep.server.admission import Admission, Ticket
from ninep.server.handlers import read_fid, walk_fid
from ninep.server.inflight import CallbackRequest, WaitingRequest, payload_of, run_as_task
from ninep.server.peers import peer_of
from ninep.server.session import HANDLERS, Fid, Reply, ServerLimits, Session
from ninep.vfs.budget import ConnectionAccount
from ninep.vfs.buffers import give
from ninep.vfs.locks import LockManager
from ninep.vfs.node import Attr
from ninep.vfs.policy import ConnectionContext, Peer, Policy
from ninep.vfs.request import ConnectionScope, enter, leave
from ninep.wire import messages as m
from ninep.wire.constants import MIN_MSIZE
from ninep.wire.fast import (
    TCLUNK_SIZE,
    TFLUSH_SIZE,
    TGETATTR_SIZE,
    TREAD_SIZE,
    decode_short_twalk,
    rclunk_frame,
    rgetattr_frame,
    unpack_header,
    unpack_tclunk,
    unpack_tflush,
    unpack_tgetattr,
    unpack_tread,
)
from ninep.wire.framing import TVERSION_MAX, Framer, FrameTooLarge
from ninep.wire.messages import DecodeError

__all__ = ["Connection"]

log = logging.getLogger(__name__)

_TGETATTR, _TWRITE, _TWALK, _TCLUNK = m.Tgetattr.type, m.Twrite.type, m.Twalk.type, m.Tclunk.type
_TREAD, _TFLUSH = m.Tread.type, m.Tflush.type
_RAW_TYPES = frozenset({_TGETATTR, _TWALK, _TCLUNK, _TREAD})
_conn_ids = itertools.count(1)
_background: set[asyncio.Task[None]] = set()
# What requests that wait may hold, per connection, in the server's msize: a cold
# read's buffer, a Twrite's data. 16 lets a 1 MiB client keep every thread of a
# passthrough pool busy; below 64 KiB max_inflight (256) is the tighter limit.
WAITING_MSIZES = 16


class Connection(asyncio.Protocol):
    """The server side of one 9P connection."""

    def __init__(self, policy: Policy | Callable[[], Policy], locks: LockManager,
                 limits: ServerLimits, kind: str = "tcp", admission: Admission | None = None,
                 ticket: Ticket | None = None) -> None:
        # a callable gives the server's policy of the moment: a reload serves new attaches
        self._policy = policy
        # the connection's place among the server's (admission.py): taken at
        # connection_made unless the listener took it at accept (TLS), given back once
        # everything it held is released
        self._admission = admission
        self._ticket = ticket
        self._locks = locks
        self._limits = limits
        self._kind = kind
        self._framer = Framer(TVERSION_MAX)  # msize applies once a Tversion negotiated it
        self._inflight: dict[int, WaitingRequest | CallbackRequest] = {}
        self._queued: deque[bytes] = deque()
        self._generation = 0
        self._paused_by_requests = False
        self._paused_by_writes = False
        # no request is started while _held: the write buffer is over its mark, or
        # the requests that wait hold _waiting_budget bytes
        self._held = False
        self._waiting_bytes = 0
        self._waiting_budget = WAITING_MSIZES * limits.max_msize
        self._closing = False
        self._lost = False
        self._early: list[bytes] = []  # data that came before connection_made (TLS, pipes)
        self._version_timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.context = ConnectionContext()
        self.account = ConnectionAccount("unknown peer")  # what its requests hold (vfs.budget)
        self.scope = ConnectionScope(self.account)  # what backends see of it (vfs.request)
        self.stats = metrics.ConnectionStats()  # what operators see of it (ninep/server/metrics.py)
        self._counts = self.stats.counts  # requests received, by type: the hot path's one cost
        self._loop = asyncio.get_event_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()

    def finished(self) -> asyncio.Future[None]:
        """Done once the connection has closed and everything it held is released."""
        return self._done

    # --- asyncio callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's are not subclasses
        if self._ticket is None and self._admission is not None:
            self._ticket = self._admission.admit(transport.get_extra_info("peername"),
                                                 self._kind)
            if self._ticket is None:  # over a limit: closed before any 9P is read
                self._closing = self._lost = True
                self._done.set_result(None)
                transport.abort()  # type: ignore[attr-defined] # every transport served has one
                return
        peer = peer_of(transport, self._kind)
        self.session = self._new_session(peer, next(_conn_ids))
        self.account.peer = peer
        metrics.opened(self.stats, self, peer, self.session.conn_id)
        transport.set_write_buffer_limits(high=4 * self._limits.max_msize)  # type: ignore[attr-defined]
        log.debug("connection from %s", peer)
        self._arm_version_timer()
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)

    def _new_session(self, peer: Peer, conn_id: int) -> Session:
        return Session(self._policy, self._locks, peer, conn_id, self._limits, self.context)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self.session is None:
            self._early.append(bytes(data))
            return
        try:
            frames = self._framer.feed(data)
        except FrameTooLarge as exc:
            before = "" if self.session.versioned else "before Tversion: "
            self._protocol_error(f"{before}{exc}")
            return
        except DecodeError as exc:
            self._protocol_error(str(exc))
            return
        for frame in frames:
            if self._closing:
                return
            # While the write buffer is over its high-water mark no request is
            # started, even one that would answer inline (RAM reads): the rest of
            # the chunk waits here as frames, and reading is paused.
            if (self._queued or self._held
                    or len(self._inflight) >= self.session.limits.max_inflight):
                if self._flushes_a_waiting_request(frame):
                    self._frame_received(frame)
                    continue
                self._queued.append(frame)
                self._pause(requests=True)
            else:
                self._frame_received(frame)

    def _flushes_a_waiting_request(self, frame: bytes) -> bool:
        """A Tflush of a request in flight is never held back: the requests that
        wait (a read of an empty FIFO, a blocked Tlock) may be what holds the rest."""
        return (frame[4] == _TFLUSH and len(frame) == TFLUSH_SIZE
                and unpack_tflush(frame)[0] in self._inflight)

    def waiting_and_queued(self) -> tuple[int, int]:
        """Requests waiting and frames received but not started, for the metrics."""
        return len(self._inflight), len(self._queued)

    def pause_writing(self) -> None:
        self._paused_by_writes = self._held = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._paused_by_writes = False
        self._held = self._waiting_bytes >= self._waiting_budget
        if self._queued:
            self._drain_queue()
        self._update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return  # stdio: both pipes report it
        self._lost = True
        self._closing = True
        self._cancel_version_timer()
        self._generation += 1
        for request in list(self._inflight.values()):
            request.abandon()
        self._inflight.clear()
        self._waiting_bytes = 0
        self._queued.clear()
        task = self._loop.create_task(self._release())
        _background.add(task)  # the loop holds tasks weakly
        task.add_done_callback(_background.discard)
        metrics.closed(self.stats)
        if self.session is not None:
            log.debug("connection from %s closed", self.session.peer)

    async def _release(self) -> None:
        """Clunk every fid, then close what only this connection used."""
        try:
            if self.session is not None:
                await self.session.clunk_all()
            await self.context.close()
        finally:
            if self._ticket is not None:
                self._ticket.release()
            if not self._done.done():
                self._done.set_result(None)

    # --- requests ----------------------------------------------------------

    def _frame_received(self, frame: bytes) -> None:
        assert self.session is not None
        size, mtype, tag = unpack_header(frame)
        self._counts[mtype] += 1
        raw = mtype in _RAW_TYPES and tag not in self._inflight
        if raw and self._raw(mtype, frame, size, tag):
            return
        if mtype == m.Tversion.type:
            self._version(frame, size, tag)
            return
        if tag in self._inflight:
            self._protocol_error(f"tag {tag} is already in flight")
            return
        if mtype not in m.MESSAGE_TYPES or mtype % 2:  # R-types are odd
            self._send(tag, m.Rlerror(errno.EOPNOTSUPP))
            return
        try:
            # a Twrite's data stays a view of its (immutable) frame: no copy
            body = memoryview(frame) if mtype == _TWRITE else frame
            msg = m.decode_body(mtype, body, m.HEADER_SIZE, size)
        except DecodeError as exc:
            self._protocol_error(f"malformed {m.MESSAGE_TYPES[mtype].__name__}: {exc}")
            return
        if not self.session.versioned:
            self._send(tag, m.Rlerror(errno.EPROTO))
            return
        if mtype == m.Tflush.type:
            self._flush(tag, msg.oldtag)  # type: ignore[attr-defined]
            return
        self._start(tag, msg)

    # Raw paths: the requests a listing sends per entry (Twalk of one name,
    # Tgetattr, Tclunk), and Tread, skip the message objects. Each answers
    # True when it took the request; False sends it down the general path,
    # which also gives the replies to malformed frames. Twalk and Tread run
    # the general path's own routine (walk_fid, read_fid), errors included.

    def _raw(self, mtype: int, frame: bytes, size: int, tag: int) -> bool:
        if mtype == _TGETATTR:
            return size == TGETATTR_SIZE and self._getattr_at_once(frame, tag)
        if mtype == _TWALK:
            return self._walk_raw(frame, size, tag)
        if mtype == _TREAD:
            return size == TREAD_SIZE and self._read_raw(frame, tag)
        return size == TCLUNK_SIZE and self._clunk_at_once(frame, tag)

    def _getattr_at_once(self, frame: bytes, tag: int) -> bool:
        """Tgetattr of a node whose attributes are at hand."""
        assert self.session is not None
        fid = self.session.fids.get(unpack_tgetattr(frame)[0])
        if fid is None:
            return False
        loc = fid.loc
        attr = loc.node.peek_attr()
        if attr is None:
            return self._getattr_soon(fid, tag)
        attr = fid.ns.client_attr(attr)
        self._write(rgetattr_frame(tag, loc.mount.qid_path(attr.ino), attr))
        return True

    def _getattr_soon(self, fid: Fid, tag: int) -> bool:
        """Tgetattr of a node that answers by a callback (an import): no Task."""
        request = CallbackRequest(tag, self._generation, self._soon_dropped)

        def done(attr: Attr | OSError) -> None:
            if self._inflight.get(tag) is not request or request.generation != self._generation:
                return  # flushed, or a Tversion reset or a closed connection dropped it
            del self._inflight[tag]
            self.stats.waited(_TGETATTR, request.started)
            if isinstance(attr, OSError):
                self._send(tag, m.Rlerror(attr.errno or errno.EIO))
            else:
                try:
                    attr = fid.ns.client_attr(attr)
                    frame = rgetattr_frame(tag, fid.loc.mount.qid_path(attr.ino), attr)
                except Exception as exc:  # what the wire cannot carry: answered, not lost
                    assert self.session is not None
                    self._send(tag, self.session.error_reply(exc, m.Tgetattr))
                else:
                    self._write(frame)
            if self._queued or self._paused_by_requests:
                self._drain_queue()

        self._inflight[tag] = request
        if fid.loc.node.getattr_soon(done):
            return True
        del self._inflight[tag]
        return False

    def _soon_dropped(self, request: CallbackRequest) -> None:
        if request.generation != self._generation or self._inflight.get(request.tag) is not request:
            return  # a Tversion reset or a closed connection: no reply at all
        del self._inflight[request.tag]
        for flush_tag in request.flushes:
            self._send(flush_tag, m.Rflush())
        self._drain_queue()

    def _clunk_at_once(self, frame: bytes, tag: int) -> bool:
        """Tclunk of a fid that holds nothing to close or apply."""
        assert self.session is not None
        fids = self.session.fids
        number = unpack_tclunk(frame)[0]
        fid = fids.get(number)
        if fid is None or fid.handle is not None or fid.xattr_write is not None:
            return False
        del fids[number]
        self._write(rclunk_frame(tag))
        return True

    def _walk_raw(self, frame: bytes, size: int, tag: int) -> bool:
        """Twalk of no name (a clone) or one name: decoded here, run like any handler."""
        assert self.session is not None
        if not self.session.versioned:
            return False
        walk = decode_short_twalk(frame, size)
        if walk is None:
            return False
        number, newfid, names = walk
        self._run(tag, walk_fid(self.session, number, newfid, names), m.Twalk)
        return True

    def _read_raw(self, frame: bytes, tag: int) -> bool:
        """Tread: decoded here, run like any handler."""
        session = self.session
        assert session is not None
        if not session.versioned:
            return False
        number, offset, count = unpack_tread(frame)
        self._run(tag, read_fid(session, number, offset, count), m.Tread, count)
        return True

    def _start(self, tag: int, msg: m.Message) -> None:
        """Run the handler inline; only if it waits does it get a Task."""
        session = self.session
        assert session is not None
        handler = HANDLERS.get(type(msg))
        if handler is None:
            self._send(tag, m.Rlerror(errno.EOPNOTSUPP))
            return
        self._run(tag, handler(session, msg), msg)

    def _run(self, tag: int, coro: Coroutine[Any, Any, Reply],
             msg: m.Message | type[m.Message], holds: int = 0) -> None:
        """Drive a request's coroutine inline until it waits, then by a Task.
        ``holds``: the payload it may keep (a raw Tread's count), else from ``msg``."""
        session = self.session
        assert session is not None
        scope = self.scope
        token = enter(scope)  # backends see the connection; the Task inherits it
        scope.inline = True
        try:
            first = coro.send(None)
        except StopIteration as stop:
            self._send(tag, stop.value)
            return
        except Exception as exc:
            self._send(tag, session.error_reply(exc, msg))
            return
        else:
            task = self._loop.create_task(run_as_task(coro, first, session, msg))
        finally:
            scope.inline = False
            leave(token)
        holds = min(holds or payload_of(msg), session.msize)
        request = WaitingRequest(tag, task, self._generation, scope, holds, msg.type)
        self._inflight[tag] = request
        if holds:
            self._waiting_bytes += holds
            self._held = self._held or self._waiting_bytes >= self._waiting_budget
        task.add_done_callback(lambda _t, r=request: self._finished(r))  # type: ignore[misc]

    def _finished(self, request: WaitingRequest) -> None:
        self.scope.doomed.discard(request.task)
        if request.generation != self._generation:
            return  # a Tversion reset or a closed connection dropped it
        if self._inflight.get(request.tag) is request:
            del self._inflight[request.tag]  # the tag is free again before its reply leaves
        if request.holds:
            self._waiting_bytes -= request.holds
            self._held = self._paused_by_writes or self._waiting_bytes >= self._waiting_budget
        task = request.task
        self.stats.waited(request.mtype, request.started)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:  # pragma: no cover - dispatch answers every Exception
                log.error("request %d failed: %r", request.tag, exc)
                self._send(request.tag, m.Rlerror(errno.EIO))
            else:
                self._send(request.tag, task.result())
        for flush_tag in request.flushes:
            self._send(flush_tag, m.Rflush())
        self._drain_queue()

    def _flush(self, tag: int, oldtag: int) -> None:
        """Rflush goes out after the flushed reply was sent or suppressed, never an error."""
        request = self._inflight.get(oldtag)
        if request is None:
            self._send(tag, m.Rflush())
            return
        request.flushes.append(tag)
        request.abandon()

    def _version(self, frame: bytes, size: int, tag: int) -> None:
        assert self.session is not None
        try:
            msg = m.decode_body(m.Tversion.type, frame, m.HEADER_SIZE, size)
        except DecodeError as exc:
            self._protocol_error(f"malformed Tversion: {exc}")
            return
        assert isinstance(msg, m.Tversion)
        self._reset_session()
        if msg.msize < MIN_MSIZE:
            log.warning("%s: Tversion msize %d below %d refused", self.session.peer,
                        msg.msize, MIN_MSIZE)
            self._send(tag, m.Rlerror(errno.EINVAL))
            return
        msize = min(msg.msize, self.session.policy.msize_cap(self.session.peer,
                                                             self._limits.max_msize))
        if not msg.version.startswith(m.VERSION_9P2000L):
            log.info("%s: version %r refused", self.session.peer, msg.version)
            self._send(tag, m.Rversion(msize, m.VERSION_UNKNOWN))
            return
        self.session.msize = msize
        self.session.versioned = True
        self._framer.msize = msize
        self._cancel_version_timer()  # a mounted client may then idle for hours
        self._send(tag, m.Rversion(msize, m.VERSION_9P2000L))

    def _reset_session(self) -> None:
        """A Tversion aborts outstanding requests (their replies are dropped) and clunks all fids."""
        assert self.session is not None
        self._generation += 1
        for request in self._inflight.values():
            request.abandon()
        self._inflight.clear()
        self._waiting_bytes = 0
        self._held = self._paused_by_writes
        self.session.versioned = False
        self._framer.msize = TVERSION_MAX
        self._arm_version_timer()
        if self.session.fids:
            old = self.session
            self.session = self._new_session(old.peer, old.conn_id)
            self.session.auth_proofs = old.auth_proofs  # the kernel's Tversion after ninep mount
            task = self._loop.create_task(old.clunk_all())
            _background.add(task)  # the loop holds tasks weakly
            task.add_done_callback(_background.discard)

    # --- output and flow control -------------------------------------------

    def _send(self, tag: int, reply: Reply) -> None:
        transport = self.transport
        if transport is None or self._closing:
            return
        if type(reply) is m.Rread:
            # header and payload leave in one writev, without joining them
            data = reply.data
            transport.writelines((m.rread_header(tag, len(data)), data))
            if not transport.get_write_buffer_size():
                give(data)  # sent in full: nobody holds the buffer any more
            return
        transport.write(self._encoded(tag, reply))

    def _encoded(self, tag: int, reply: Reply) -> bytes:
        """The frame of ``reply``; an Rlerror (through Session.error_reply) when the wire
        cannot carry it (a string over 65535 bytes) or the client could not take it (a
        frame over the msize, which Linux's client treats as a broken connection)."""
        session = self.session
        assert session is not None
        try:
            frame = m.encode(tag, reply)
            if len(frame) > session.msize:
                raise m.EncodeError(f"{len(frame)} bytes, over the msize of {session.msize}")
        except m.EncodeError as exc:
            kind = m.MESSAGE_TYPES[reply.type] if isinstance(reply, m.Encoded) else type(reply)
            return m.encode(tag, session.error_reply(exc, kind))
        return frame

    def _write(self, frame: bytes) -> None:
        """A whole reply frame, unless the connection is gone or closing."""
        transport = self.transport
        if transport is not None and not self._closing:
            transport.write(frame)

    def _protocol_error(self, reason: str) -> None:
        peer = self.session.peer if self.session else "unknown peer"
        log.warning("%s: protocol error, closing the connection: %s", peer, reason)
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def _pause(self, requests: bool) -> None:
        self._paused_by_requests = requests
        self._update_reading()

    def _drain_queue(self) -> None:
        assert self.session is not None
        limit = self.session.limits.max_inflight
        while self._queued and len(self._inflight) < limit and not self._held:
            if self._closing:
                return
            self._frame_received(self._queued.popleft())
        if not self._queued and len(self._inflight) <= limit // 2:
            self._pause(requests=False)

    def _arm_version_timer(self) -> None:
        """Until a Tversion opens a session the connection has handshake_timeout
        seconds: an unnegotiated peer holds a socket and buffers for nothing."""
        if self._version_timer is None and not self._closing:
            self._version_timer = self._loop.call_later(self._limits.handshake_timeout,
                                                        self._version_timed_out)

    def _cancel_version_timer(self) -> None:
        if self._version_timer is not None:
            self._version_timer.cancel()
            self._version_timer = None

    def _version_timed_out(self) -> None:
        self._version_timer = None
        if self._closing or self.transport is None:
            return
        peer = self.session.peer if self.session else "unknown peer"
        log.warning("%s: no Tversion within %g s, closing the connection", peer,
                    self._limits.handshake_timeout)
        self._closing = True
        self.transport.abort()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self._closing:
            return
        if self._paused_by_requests or self._paused_by_writes:
            if transport.is_reading():
                transport.pause_reading()
        elif not transport.is_reading():
            transport.resume_reading()
