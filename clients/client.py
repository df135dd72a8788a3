"""The async 9P2000.L client connection: version, tags, fids, replies by tag, Tflush."""

from __future__ import annotations

import asyncio
import errno
import heapq
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar, cast

from ninep.wire.constants import MIN_MSIZE
from ninep.wire.framing import Framer
from ninep.wire.messages import (
    NOFID,
    NONUNAME,
    NOTAG,
    VERSION_9P2000L,
    DecodeError,
    Message,
    Rattach,
    Rerror,
    Rflush,
    Rlerror,
    Rversion,
    Tattach,
    Tclunk,
    Tflush,
    Tversion,
    decode,
    encode,
)

from .address import parse_address, parse_server_url
from .auth import KeyLike, authenticate
from .errors import ProtocolError, TLSError, VersionError, lerror
from .fid import Fid
from .tls import explain_tls_error
from .tree import Tree

__all__ = [
    "DEFAULT_MSIZE",
    "Client",
    "ProtocolError",
    "Trace",
    "VersionError",
    "parse_server_url",
]

log = logging.getLogger(__name__)

DEFAULT_MSIZE: Final = 1048576
MAX_TAG: Final = NOTAG - 1

R = TypeVar("R", bound=Message)
Trace = Callable[[str, int, Message], None]
Abandon = Callable[[Message | None], None]
# rpc_soon's answer: the whole reply frame, or the error that ended the connection
RawDone = Callable[[bytes | OSError], None]


class _NumberPool:
    """Hands out the lowest free number below ``limit``, like the Linux idr."""

    __slots__ = ("_free", "_limit", "_next")

    def __init__(self, limit: int) -> None:
        self._free: list[int] = []
        self._next = 0
        self._limit = limit

    def take(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        if self._next >= self._limit:
            raise OSError(errno.EMFILE, "no free 9P numbers left on this connection")
        self._next += 1
        return self._next - 1

    def give(self, number: int) -> None:
        heapq.heappush(self._free, number)


class _Protocol(asyncio.Protocol):
    """Feeds received bytes to the client; tracks write pause/resume."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        # kept: asyncio.get_running_loop() makes a getpid() system call each time,
        # and the request paths would pay it for every request
        self.loop = asyncio.get_running_loop()
        self.closed = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.client._data_received(data)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()
        self.client._connection_lost(exc)
        if not self.closed.done():
            self.closed.set_result(None)


class Client:
    """One 9P2000.L connection; many requests in flight, many attaches.

    Create with ``await Client.connect(url)``. ``rpc`` is the raw request
    primitive; ``attach`` returns a :class:`Tree`, the path-based API.
    """

    def __init__(self, msize: int, *, max_inflight: int = 1024, trace: Trace | None = None) -> None:
        self.msize = msize
        self.version = ""
        self.url = ""
        self.trace = trace
        self._framer = Framer(msize)
        self._protocol: _Protocol | None = None
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._soon: dict[int, RawDone] = {}  # rpc_soon's requests in flight, by tag
        self._max_inflight = max_inflight
        self._tags = _NumberPool(MAX_TAG + 1)
        self._fids = _NumberPool(NOFID)
        self._slots = asyncio.Semaphore(max_inflight)
        self._background: set[asyncio.Task[None]] = set()
        self._error: ConnectionError | None = None
        self._server_name: str | None = None
        self._outbox: list[bytes] = []
        self._received = False  # any byte from the server yet (see connect)

    # --- connecting -----------------------------------------------------

    @classmethod
    async def connect(cls, url: str, msize: int = DEFAULT_MSIZE, *, max_inflight: int = 1024,
                      trace: Trace | None = None, tls: ssl.SSLContext | None = None,
                      server_hostname: str | None = None) -> Client:
        """Connect to a server (``tcp://HOST:PORT``, ``tls://HOST:PORT``, ``unix:///path``,
        ``HOST:PORT``: clients.address) and negotiate 9P2000.L.

        ``tls://`` or a ``tls`` context makes the connection TLS (the server is verified
        as ``tls`` says, by default against the system's CAs; ``server_hostname``
        defaults to the URL's host, and is needed for unix://). A server certificate we
        refuse raises ssl.SSLError (clients.tls.explain_tls_error says why in words); a
        server that refuses us raises :class:`TLSError`.
        """
        address = parse_address(url)
        if address.scheme == "tls" and tls is None:
            tls = ssl.create_default_context()
        client = cls(msize, max_inflight=max_inflight, trace=trace)
        client.url = url
        loop = asyncio.get_running_loop()
        name = server_hostname or (address.host if address.scheme != "unix" else None)
        client._server_name = name
        if address.scheme == "unix":
            _, protocol = await loop.create_unix_connection(
                lambda: _Protocol(client), address.host, ssl=tls,
                server_hostname=name if tls else None)
        else:
            _, protocol = await loop.create_connection(
                lambda: _Protocol(client), address.host, address.port, ssl=tls,
                server_hostname=name if tls else None)
        client._protocol = protocol
        try:
            await client._negotiate(msize)
        except ProtocolError as exc:
            await client.close()
            if tls is not None and not client._received and type(exc) is ProtocolError:
                # TLS 1.3: our side of the handshake is done before the server has
                # checked our certificate; a server that refuses it just closes (an
                # asyncio server sends no alert), so the first read finds the end.
                raise TLSError("TLS: the server closed the connection right after the "
                               "handshake: it refused our client certificate, or wants one "
                               "(its log says which)") from None
            raise
        except BaseException:
            await client.close()
            raise
        return client

    @classmethod
    async def over_socket(cls, sock: socket.socket, msize: int = DEFAULT_MSIZE, *,
                          url: str = "") -> Client:
        """Negotiate 9P2000.L over a connected stream socket, which the client owns from
        then on (``close`` closes it, with no shutdown: a dup of it stays connected, as
        the mount helper's does for the kernel). ``url`` only names it in errors."""
        client = cls(msize)
        client.url = url or "a connected socket"
        loop = asyncio.get_running_loop()
        if sock.family == socket.AF_UNIX:
            _, protocol = await loop.create_unix_connection(lambda: _Protocol(client), sock=sock)
        else:
            _, protocol = await loop.create_connection(lambda: _Protocol(client), sock=sock)
        client._protocol = protocol
        try:
            await client._negotiate(msize)
        except BaseException:
            await client.close()
            raise
        return client

    async def _negotiate(self, msize: int) -> None:
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[NOTAG] = future
        self._send(NOTAG, Tversion(msize, VERSION_9P2000L))
        reply = await future
        if isinstance(reply, Rlerror | Rerror):
            detail = reply.ename if isinstance(reply, Rerror) else lerror(reply.ecode).strerror
            raise VersionError(f"server refused 9P2000.L: {detail}")
        if not isinstance(reply, Rversion):
            raise ProtocolError(f"server answered Tversion with {type(reply).__name__}")
        if reply.version != VERSION_9P2000L:
            raise VersionError(f"server speaks {reply.version!r}, not {VERSION_9P2000L!r}")
        if not MIN_MSIZE <= reply.msize <= msize:
            raise ProtocolError(f"server answered msize {reply.msize} to a request of {msize}")
        self.msize = reply.msize
        self.version = reply.version
        self._framer.msize = reply.msize

    async def attach(self, uname: str = "", aname: str = "", n_uname: int = NONUNAME, *,
                     afid: int = NOFID, gid: int | None = None, proc_id: int | None = None,
                     key: KeyLike | None = None) -> Tree:
        """Tattach a new root fid; returns the path-based API rooted there.

        With ``key`` (an Ed25519 private key or its file), Tauth proves it first
        (docs/auth.md); a refused key raises OSError(EACCES).
        """
        if key is not None and afid == NOFID:
            afid = await authenticate(self, key, uname, aname, n_uname)
            if afid != NOFID:
                try:
                    return await self.attach(uname, aname, n_uname, afid=afid, gid=gid,
                                             proc_id=proc_id)
                finally:
                    self.spawn_clunk(afid)  # the attach holds the proof now
        number, reply = await self.call_with_newfid(
            lambda fid: Tattach(fid, afid, uname, aname, n_uname),
            bound=lambda r: isinstance(r, Rattach))
        assert isinstance(reply, Rattach)
        root = Fid(self, number, reply.qid)
        return Tree(root, aname=aname, gid=gid, proc_id=proc_id)

    # --- closing --------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection is closed or lost."""
        return self._error is not None

    async def wait_closed(self) -> None:
        """Return once the connection is closed or lost (at once if it already is): a
        caller that keeps one connection (the 9p backend) learns of a lost server here
        without sending anything."""
        protocol = self._protocol
        if protocol is not None and self._error is None:
            await asyncio.shield(protocol.closed)

    @property
    def pending(self) -> int:
        """Requests sent and not yet answered (flushed ones until their Rflush)."""
        return len(self._pending) + len(self._soon)

    async def close(self) -> None:
        """Close the connection; the server clunks every fid of it."""
        # Closed first: background clunks still queued must not write to a closing
        # transport (asyncio logs "socket.send() raised exception." for each).
        if self._error is None:
            self._flush_outbox()  # what was sent before close() leaves
            self._error = ProtocolError(f"connection to {self.url or 'server'} closed")
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            await protocol.closed
        self._connection_lost(None)
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- fids -----------------------------------------------------------

    def take_fid(self) -> int:
        """Reserve a fid number (returned to the pool by ``give_fid``)."""
        return self._fids.take()

    def give_fid(self, number: int) -> None:
        """Return a fid number that the server no longer knows."""
        self._fids.give(number)

    async def call_with_newfid(self, make: Callable[[int], Message],
                               bound: Callable[[Message], bool]) -> tuple[int, Message]:
        """Send ``make(newfid)``; keep newfid if the reply bound it, else free it.

        ``bound(reply)`` says whether the server now knows newfid. If the caller is
        cancelled and the reply still arrives before Rflush, a bound fid is clunked.
        """
        number = self._fids.take()

        def abandon(reply: Message | None) -> None:
            if reply is not None and bound(reply):
                self.spawn_clunk(number)
            else:
                self._fids.give(number)

        try:
            reply = await self.rpc(make(number), on_abandon=abandon)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._fids.give(number)
            raise
        if not bound(reply):
            self._fids.give(number)
        return number, reply

    def spawn_clunk(self, number: int) -> None:
        """Clunk fid ``number`` in the background, then free the number."""
        async def clunk() -> None:
            try:
                await self.rpc(Tclunk(number))
            except (OSError, ConnectionError):
                pass
            finally:
                self._fids.give(number)

        if not self.closed:
            self.spawn(clunk())

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a coroutine in the background, cancelled by close()."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # --- requests -------------------------------------------------------

    async def call(self, msg: Message, expect: type[R]) -> R:
        """Send ``msg``, return its reply of type ``expect``; OSError on Rlerror."""
        reply = await self.rpc(msg)
        if not isinstance(reply, expect):
            raise ProtocolError(f"{type(msg).__name__} was answered by {type(reply).__name__}")
        return reply

    async def rpc(self, msg: Message, *, on_abandon: Abandon | None = None) -> Message:
        """Send one T-message and await its reply; raise OSError for Rlerror.

        If the awaiting task is cancelled, Tflush(oldtag) is sent and the tag is
        kept until Rflush; ``on_abandon`` then receives the reply that arrived
        before Rflush, or None, so state changes of a flushed request are undone.
        """
        if self._error is not None:
            raise self._error
        async with self._slots:
            tag = self._tags.take()
            protocol = self._protocol
            future: asyncio.Future[Message] = (
                protocol.loop if protocol is not None else asyncio.get_running_loop()
            ).create_future()
            self._pending[tag] = future
            try:
                self._send(tag, msg)
                await self._drain()
                reply = await asyncio.shield(future)
            except asyncio.CancelledError:
                await self._abandon(tag, future, on_abandon)
                raise
            except BaseException:
                self._pending.pop(tag, None)
                self._tags.give(tag)
                raise
            self._tags.give(tag)
        return self._check(msg, reply)

    def break_off(self, error: ProtocolError) -> ProtocolError:
        """The server broke the protocol (a reply that cannot be decoded, or that does not
        answer the request of its tag): log it, close the connection, return ``error``
        for the caller to raise. After such a reply the server's view of tags and fids
        may differ from ours, so nothing more on this connection can be trusted."""
        if self._error is None:
            log.error("%s: %s; closing the connection", self.url or "server", error)
        self._fail(error)
        return error

    def rpc_soon(self, pack: Callable[[int], bytes], done: RawDone) -> bool:
        """Send the T-frame ``pack(tag)``; ``done`` gets its whole reply frame, undecoded,
        or the OSError (a ConnectionError) that ended the connection first.

        The hot path of a caller that parses its own reply (Fid.getattr_soon, for the 9p
        backend's getattr): no Task, no future, no message objects, and never a wait.
        False, with nothing sent, where rpc() would have to wait or do more: the
        requests in flight at max_inflight, a full write buffer, a trace, a closed
        connection. ``done`` is called from the event loop, never from inside this call,
        and must not raise. Such a request is never flushed; its reply is delivered
        whenever it comes.
        """
        protocol = self._protocol
        if (self._error is not None or self.trace is not None or protocol is None
                or not protocol.writable.is_set()
                or len(self._pending) + len(self._soon) >= self._max_inflight):
            return False
        try:
            tag = self._tags.take()
        except OSError:  # every tag in flight
            return False
        self._soon[tag] = done
        if not self._outbox:
            protocol.loop.call_soon(self._flush_outbox)
        self._outbox.append(pack(tag))
        return True

    def _check(self, msg: Message, reply: Message) -> Message:
        if reply.type == msg.type + 1:
            return reply
        if isinstance(reply, Rlerror):
            raise lerror(reply.ecode)
        if isinstance(reply, Rerror):
            raise OSError(errno.EIO, reply.ename)
        raise self.break_off(ProtocolError(
            f"{type(msg).__name__} was answered by {type(reply).__name__}"))

    async def _abandon(self, tag: int, future: asyncio.Future[Message],
                       on_abandon: Abandon | None) -> None:
        """Flush a cancelled request; wait for Rflush unless cancelled again."""
        if future.done():  # the reply won the race with the cancellation
            self._tags.give(tag)
            if on_abandon is not None:
                on_abandon(None if future.exception() else future.result())
            return
        flush = self.spawn(self._flush(tag, future, on_abandon))
        try:
            await asyncio.shield(flush)
        except asyncio.CancelledError:
            pass

    async def _flush(self, oldtag: int, old: asyncio.Future[Message],
                     on_abandon: Abandon | None) -> None:
        # flush(5): only after Rflush may oldtag be reused; a reply that arrives
        # before Rflush must be honoured as if the request had not been flushed.
        tag = self._tags.take()
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[tag] = future
        try:
            self._send(tag, Tflush(oldtag))
            reply = await future
            if not isinstance(reply, Rflush):
                log.warning("%s answered Tflush with %s", self.url, type(reply).__name__)
        except ConnectionError:
            pass
        finally:
            self._pending.pop(tag, None)
            self._pending.pop(oldtag, None)
            self._tags.give(tag)
            self._tags.give(oldtag)
            late = old.result() if old.done() and not old.exception() else None
            if on_abandon is not None and not self.closed:
                on_abandon(late)

    def _send(self, tag: int, msg: Message) -> None:
        protocol = self._protocol
        if self._error is not None:
            raise self._error
        assert protocol is not None and protocol.transport is not None
        if self.trace is not None:
            self.trace("->", tag, msg)
        # Requests made in one turn of the loop leave in one send(): ls -l's thousands
        # of walks and getattrs cost one system call per batch, not one each.
        if not self._outbox:
            protocol.loop.call_soon(self._flush_outbox)
        self._outbox.append(encode(tag, msg))

    def _flush_outbox(self) -> None:
        frames, self._outbox = self._outbox, []
        protocol = self._protocol
        if frames and self._error is None and protocol is not None \
                and protocol.transport is not None:
            protocol.transport.write(b"".join(frames))

    async def _drain(self) -> None:
        protocol = self._protocol
        if protocol is not None and not protocol.writable.is_set():
            await protocol.writable.wait()
            if self._error is not None:
                raise self._error

    # --- receiving ------------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        self._received = True
        try:
            frames = self._framer.feed(data)
            soon = self._soon
            for frame in frames:
                if self._error is not None:  # a reply broke the protocol: the rest is moot
                    return
                if soon:
                    tag = frame[5] | frame[6] << 8  # the header's tag, little-endian
                    done = soon.pop(tag, None)
                    if done is not None:
                        self._tags.give(tag)
                        self._answer_soon(done, frame)
                        continue
                tag, msg = decode(frame)
                self._dispatch(tag, msg)
        except DecodeError as exc:
            self.break_off(ProtocolError(f"bad reply from server: {exc}"))

    @staticmethod
    def _answer_soon(done: RawDone, answer: bytes | OSError) -> None:
        try:
            done(answer)
        except Exception:  # a caller's bug: the connection and other requests go on
            log.exception("a reply's callback failed")

    def _dispatch(self, tag: int, msg: Message) -> None:
        if self.trace is not None:
            self.trace("<-", tag, msg)
        future = self._pending.pop(tag, None)
        if future is None:
            # flush(5): no reply may follow Rflush, so a tag not in flight is a reply
            # to nothing, or a second reply; the next request given that tag could
            # take it for its own answer (Linux v9fs also closes: "unexpected tag")
            self.break_off(ProtocolError(
                f"reply {type(msg).__name__} to tag {tag}, which is not in flight"))
            return
        if not future.done():
            future.set_result(msg)

    def _fail(self, error: ConnectionError) -> None:
        if self._error is None:
            self._error = error
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()
        self._connection_lost(None)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._error is None and isinstance(exc, ssl.SSLError):
            # TLS 1.3: the server checks our certificate after our side of the handshake
            # is done, so its refusal arrives as an alert on the first read.
            self._error = TLSError(explain_tls_error(exc, self._server_name))
        elif self._error is None:
            reason = f": {exc}" if exc else ""
            self._error = ProtocolError(f"connection to {self.url or 'server'} closed{reason}")
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(self._error)
                future.exception()  # mark retrieved: the waiter may be gone (flushed)
        error, waiting = self._error, list(self._soon.values())
        self._soon.clear()  # in place: a reply loop in _data_received may hold the dict
        for done in waiting:
            self._answer_soon(done, error)
