"""The server over real sockets, at the level of raw frames: sessions, walks, flush, bad input."""

from __future__ import annotations

import asyncio
import errno
import logging
import struct
from collections.abc import Callable, Iterator

import pytest

from ninep.config.defaults import default_policy
from ninep.server.session import ServerLimits
from ninep.server.transport import Connection
from ninep.vfs.locks import LockManager
from ninep.wire import messages as m
from ninep.wire.framing import TVERSION_MAX
from tests.conftest import RawPeer, RunningServer, start_server

O_RDONLY, O_RDWR, O_CREAT = 0, 2, 0o100
Connect = Callable[..., RawPeer]


def lerror(reply: m.Message) -> int:
    assert isinstance(reply, m.Rlerror), reply
    return reply.ecode


# --- Tversion ---------------------------------------------------------------

def test_version_negotiates_the_smaller_msize(raw_peer: Connect) -> None:
    peer = raw_peer()
    assert peer.rpc(m.Tversion(8192, "9P2000.L"), m.NOTAG) == m.Rversion(8192, "9P2000.L")
    assert peer.rpc(m.Tversion(1 << 24, "9P2000.L"), m.NOTAG) == m.Rversion(1 << 20, "9P2000.L")


def test_other_versions_are_answered_unknown(raw_peer: Connect) -> None:
    peer = raw_peer()
    for version in ("9P2000.u", "9P2000", "9P3000"):
        reply = peer.rpc(m.Tversion(65536, version), m.NOTAG)
        assert isinstance(reply, m.Rversion) and reply.version == "unknown"
    # the session is not open: an attach is refused, the connection lives on
    assert lerror(peer.rpc(m.Tattach(1, m.NOFID, "", "", 0))) == errno.EPROTO
    peer.handshake()


def test_msize_below_4096_is_refused(raw_peer: Connect) -> None:
    peer = raw_peer()
    assert lerror(peer.rpc(m.Tversion(2048, "9P2000.L"), m.NOTAG)) == errno.EINVAL
    peer.handshake()


def test_tversion_mid_session_clunks_every_fid(raw_peer: Connect) -> None:
    peer = raw_peer()
    peer.handshake(fid=7)
    assert isinstance(peer.rpc(m.Tgetattr(7, 0x7FF)), m.Rgetattr)
    peer.handshake(fid=8)
    assert lerror(peer.rpc(m.Tgetattr(7, 0x7FF))) == errno.EBADF
    assert isinstance(peer.rpc(m.Tgetattr(8, 0x7FF)), m.Rgetattr)


# --- Tattach ----------------------------------------------------------------

def test_many_attaches_per_connection(raw_peer: Connect) -> None:
    peer = raw_peer()
    peer.handshake(fid=1, n_uname=0)
    for fid, uid in ((2, 1000), (3, 1001), (4, m.NONUNAME)):
        assert isinstance(peer.rpc(m.Tattach(fid, m.NOFID, "nobody", "", uid)), m.Rattach)
    assert lerror(peer.rpc(m.Tattach(2, m.NOFID, "", "", 0))) == errno.EBADF


def test_auth_answers_not_required(raw_peer: Connect) -> None:
    peer = raw_peer()
    peer.rpc(m.Tversion(65536, "9P2000.L"), m.NOTAG)
    assert lerror(peer.rpc(m.Tauth(5, "root", "", 0))) == errno.ENOENT
    assert lerror(peer.rpc(m.Tattach(1, 5, "root", "", 0))) == errno.EACCES


# --- Twalk ------------------------------------------------------------------

def _mkdirs(peer: RawPeer, names: list[str]) -> None:
    peer.rpc(m.Twalk(1, 50, ()))
    for name in names:
        assert isinstance(peer.rpc(m.Tmkdir(50, name, 0o755, 0)), m.Rmkdir)
        assert isinstance(peer.rpc(m.Twalk(50, 50, (name,))), m.Rwalk)
    peer.rpc(m.Tclunk(50))


def test_walk_clone_partial_and_limits(raw_peer: Connect) -> None:
    peer = raw_peer()
    peer.handshake()
    _mkdirs(peer, ["a", "b"])
    clone = peer.rpc(m.Twalk(1, 2, ()))
    assert clone == m.Rwalk(())
    walked = peer.rpc(m.Twalk(1, 3, ("a", "b")))
    assert isinstance(walked, m.Rwalk) and len(walked.qids) == 2
    assert all(q.type == 0x80 for q in walked.qids)
    partial = peer.rpc(m.Twalk(1, 4, ("a", "missing", "x")))
    assert isinstance(partial, m.Rwalk) and len(partial.qids) == 1
    assert lerror(peer.rpc(m.Tgetattr(4, 0x7FF))) == errno.EBADF  # newfid not bound
    assert lerror(peer.rpc(m.Twalk(1, 4, ("missing",)))) == errno.ENOENT
    assert lerror(peer.rpc(m.Twalk(1, 4, ("a",) * 17))) == errno.EINVAL
    assert lerror(peer.rpc(m.Twalk(1, 3, ()))) == errno.EBADF  # newfid in use


def test_dotdot_stops_at_the_root(raw_peer: Connect) -> None:
    peer = raw_peer()
    root = peer.handshake()
    assert isinstance(root, m.Rattach)
    up = peer.rpc(m.Twalk(1, 2, ("..", "..", "..")))
    assert isinstance(up, m.Rwalk) and up.qids[-1] == root.qid


def test_walk_from_an_open_fid(raw_peer: Connect) -> None:
    peer = raw_peer()
    peer.handshake()
    _mkdirs(peer, ["d"])
    peer.rpc(m.Twalk(1, 2, ("d",)))
    assert isinstance(peer.rpc(m.Tlopen(2, O_RDONLY)), m.Rlopen)
    assert isinstance(peer.rpc(m.Twalk(2, 3, ("..",))), m.Rwalk)
    assert lerror(peer.rpc(m.Tlopen(2, O_RDONLY))) == errno.EBADF  # opened once


# --- unknown, malformed and hostile input -------------------------------------

def _still_serving(connect: Connect) -> None:
    other = connect()
    assert isinstance(other.handshake(), m.Rattach)
    assert isinstance(other.rpc(m.Tgetattr(1, 0x7FF)), m.Rgetattr)


def test_unknown_type_is_eopnotsupp_and_the_connection_lives(raw_peer: Connect) -> None:
    peer = raw_peer()
    peer.handshake()
    for mtype in (6, 200, m.Rgetattr.type):
        peer.send_raw(struct.pack("<IBH", 7, mtype, 9) )
        assert peer.recv() == (9, m.Rlerror(errno.EOPNOTSUPP))
    assert isinstance(peer.rpc(m.Tgetattr(1, 0x7FF)), m.Rgetattr)


@pytest.mark.parametrize("garbage", [
    b"\xff" * 64,                                   # size far over msize
    struct.pack("<IBH", 3, 100, 0),                 # size smaller than a header
    struct.pack("<IBHI", 11, m.Tclunk.type, 1, 1)[:9] + b"\0\0" + b"\0" * 4,  # trailing bytes
    struct.pack("<IBHH", 9, m.Twalk.type, 1, 0),    # truncated body
])
def test_malformed_frames_close_only_that_connection(raw_peer: Connect, garbage: bytes,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    peer = raw_peer(timeout=5)
    peer.handshake()
    with caplog.at_level(logging.WARNING, logger="ninep.server.transport"):
        peer.send_raw(garbage)
        assert peer.closed_by_server()
    local = f"127.0.0.1:{peer.sock.getsockname()[1]}"
    assert any("protocol error" in r.message and local in r.message for r in caplog.records)
    _still_serving(raw_peer)


def test_frame_over_negotiated_msize_is_refused_from_the_header(raw_peer: Connect) -> None:
    peer = raw_peer(timeout=5)
    peer.handshake(msize=8192)
    peer.send_raw(struct.pack("<IBH", 8193, m.Twrite.type, 1))  # the body never comes
    assert peer.closed_by_server()
    _still_serving(raw_peer)


def test_garbage_before_version_closes(raw_peer: Connect) -> None:
    peer = raw_peer(timeout=5)
    peer.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert peer.closed_by_server()
    _still_serving(raw_peer)


def _lock(fid: int, lock_type: int, flags: int = 0, proc: int = 1) -> m.Tlock:
    return m.Tlock(fid, lock_type, flags, 0, 0, proc, "host")


def _open_new_file(peer: RawPeer, fid: int, name: str) -> None:
    peer.rpc(m.Twalk(1, fid, ()))
    reply = peer.rpc(m.Tlcreate(fid, name, O_RDWR, 0o644, 0))
    if isinstance(reply, m.Rlerror):
        peer.rpc(m.Tclunk(fid))
    if isinstance(reply, m.Rlerror):  # exists: open it instead
        assert reply.ecode == errno.EEXIST
        assert isinstance(peer.rpc(m.Twalk(1, fid, (name,))), m.Rwalk)
        assert isinstance(peer.rpc(m.Tlopen(fid, O_RDWR)), m.Rlopen)


def test_duplicate_inflight_tag_closes_the_connection(raw_peer: Connect) -> None:
    holder, waiter = raw_peer(), raw_peer(timeout=5)
    holder.handshake()
    waiter.handshake()
    _open_new_file(holder, 2, "locked")
    _open_new_file(waiter, 2, "locked")
    assert holder.rpc(_lock(2, 1)) == m.Rlock(0)
    waiter.send(5, _lock(2, 1, flags=1, proc=2))  # blocks: tag 5 stays in flight
    waiter.send(5, m.Tgetattr(1, 0x7FF))
    assert waiter.closed_by_server()
    _still_serving(raw_peer)


def test_fid_exhaustion_is_emfile() -> None:
    running = start_server(default_policy, ServerLimits(max_fids=8))
    try:
        peer = RawPeer(("127.0.0.1", running.port))
        peer.handshake()
        for fid in range(2, 9):
            assert isinstance(peer.rpc(m.Twalk(1, fid, ())), m.Rwalk)
        assert lerror(peer.rpc(m.Twalk(1, 100, ()))) == errno.EMFILE
        peer.rpc(m.Tclunk(8))
        assert isinstance(peer.rpc(m.Twalk(1, 100, ())), m.Rwalk)
        peer.close()
    finally:
        running.stop()


# --- Tflush and locks -------------------------------------------------------

def test_flush_of_unknown_tag_is_answered(raw_peer: Connect) -> None:
    peer = raw_peer()
    peer.handshake()
    assert peer.rpc(m.Tflush(1234), tag=3) == m.Rflush()


def test_blocked_lock_is_cancelled_by_flush(raw_peer: Connect) -> None:
    holder, waiter = raw_peer(), raw_peer()
    holder.handshake()
    waiter.handshake()
    _open_new_file(holder, 2, "f")
    _open_new_file(waiter, 2, "f")
    assert holder.rpc(_lock(2, 1)) == m.Rlock(0)
    waiter.send(7, _lock(2, 1, flags=1, proc=9))
    waiter.send(8, m.Tflush(7))
    assert waiter.recv() == (8, m.Rflush())  # and no Rlock for tag 7
    assert holder.rpc(_lock(2, 2)) == m.Rlock(0)
    # the flushed request took nothing: a third owner gets the lock at once
    assert waiter.rpc(_lock(2, 1, proc=10), tag=9) == m.Rlock(0)


def test_blocked_lock_is_granted_on_release(raw_peer: Connect) -> None:
    holder, waiter = raw_peer(), raw_peer()
    holder.handshake()
    waiter.handshake()
    _open_new_file(holder, 2, "g")
    _open_new_file(waiter, 2, "g")
    assert holder.rpc(_lock(2, 1)) == m.Rlock(0)
    assert waiter.rpc(_lock(2, 1, proc=3)) == m.Rlock(1)  # non-blocking: BLOCKED
    waiter.send(4, _lock(2, 1, flags=1, proc=3))
    holder.rpc(m.Tgetattr(1, 0x7FF))  # the waiter is still waiting meanwhile
    holder.close()  # closing the connection releases its locks
    assert waiter.recv() == (4, m.Rlock(0))
    got = waiter.rpc(m.Tgetlock(2, 1, 0, 0, 99, "other"))
    assert isinstance(got, m.Rgetlock) and got.lock_type == 1 and got.proc_id == 3


@pytest.fixture
def many_peers(raw_peer: Connect) -> Iterator[list[RawPeer]]:
    yield [raw_peer() for _ in range(3)]


def test_replies_out_of_order_while_one_waits(many_peers: list[RawPeer]) -> None:
    holder, waiter, _ = many_peers
    holder.handshake()
    waiter.handshake()
    _open_new_file(holder, 2, "h")
    _open_new_file(waiter, 2, "h")
    holder.rpc(_lock(2, 1))
    waiter.send(10, _lock(2, 1, flags=1, proc=4))
    waiter.send(11, m.Tgetattr(1, 0x7FF))
    tag, reply = waiter.recv()
    assert tag == 11 and isinstance(reply, m.Rgetattr)
    holder.rpc(_lock(2, 2))
    assert waiter.recv() == (10, m.Rlock(0))


def test_unix_socket_listener(raw_peer: Connect, ninep_server: RunningServer) -> None:
    peer = raw_peer(unix=True)
    assert isinstance(peer.handshake(), m.Rattach)


# --- flow control: replies never pile up past the write buffer's mark ---------

class _SlowTransport:
    """A transport whose peer reads nothing until ``drain``: like asyncio's, it calls
    pause_writing as soon as a write takes it over ``high`` bytes."""

    def __init__(self, high: int) -> None:
        self.high = high
        self.buffered = 0
        self.replies: list[bytes] = []
        self.paused = False
        self.reading = True
        self.protocol: Connection | None = None

    def write(self, data: bytes) -> None:
        self.replies.append(bytes(data))
        self.buffered += len(data)
        if self.buffered > self.high and not self.paused:
            self.paused = True
            assert self.protocol is not None
            self.protocol.pause_writing()

    def writelines(self, parts: list[bytes]) -> None:
        self.write(b"".join(bytes(p) for p in parts))

    def drain(self) -> None:
        self.buffered = 0
        if self.paused:
            self.paused = False
            assert self.protocol is not None
            self.protocol.resume_writing()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, key: str, default: object = None) -> object:
        return default

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def abort(self) -> None:
        raise AssertionError("the connection was closed")


async def _burst_while_the_peer_reads_nothing() -> None:
    policy = await default_policy()
    conn = Connection(policy, LockManager(), ServerLimits())
    transport = _SlowTransport(high=2000)
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(m.encode(m.NOTAG, m.Tversion(8192, "9P2000.L"))
                       + m.encode(1, m.Tattach(1, m.NOFID, "root", "", 0)))
    assert isinstance(m.decode(transport.replies[-1])[1], m.Rattach)
    transport.drain()
    transport.replies.clear()
    # 200 getattrs in one chunk, each answered inline (RAM): only as many replies
    # as take the buffer over its mark are made; the rest wait, reading paused
    conn.data_received(b"".join(m.encode(tag, m.Tgetattr(1, 0x7FF)) for tag in range(200)))
    first = len(transport.replies)
    assert 0 < first < 30 and not transport.reading
    assert transport.buffered < transport.high + 200  # one reply over the mark at most
    while transport.paused:
        transport.drain()  # the peer reads: the queued requests are started, in order
    assert [m.decode(r)[0] for r in transport.replies] == list(range(200))
    assert transport.reading
    conn.connection_lost(None)
    await conn.finished()
    await policy.close()


def test_a_full_write_buffer_stops_requests_that_answer_inline() -> None:
    asyncio.run(_burst_while_the_peer_reads_nothing())


def test_a_frame_bigger_than_a_tversion_before_one_closes(
        raw_peer: Connect, caplog: pytest.LogCaptureFixture) -> None:
    peer = raw_peer(timeout=5)
    with caplog.at_level(logging.WARNING, logger="ninep.server.transport"):
        peer.send_raw(struct.pack("<IBH", TVERSION_MAX + 1, m.Tversion.type, m.NOTAG))
        assert peer.closed_by_server()  # the body never came: refused from the size field
    assert any("before Tversion" in r.message for r in caplog.records)
    _still_serving(raw_peer)


def test_the_largest_tversion_is_accepted_and_msize_applies_after(raw_peer: Connect) -> None:
    peer = raw_peer()
    version = "9P2000.L" + "x" * (TVERSION_MAX - 21)  # 243 bytes
    frame = m.encode(m.NOTAG, m.Tversion(8192, version))
    assert len(frame) == TVERSION_MAX
    peer.send_raw(frame)
    assert peer.recv() == (m.NOTAG, m.Rversion(8192, "9P2000.L"))
    assert isinstance(peer.rpc(m.Tattach(1, m.NOFID, "root", "", 0)), m.Rattach)
    assert isinstance(peer.rpc(m.Twalk(1, 2, ("x" * 255,))), m.Rlerror)  # 282 bytes: fine
    # a refused Tversion leaves the session unnegotiated: the small bound again
    assert lerror(peer.rpc(m.Tversion(2048, "9P2000.L"), m.NOTAG)) == errno.EINVAL
    peer.send_raw(m.encode(1, m.Twalk(1, 2, ("x" * 255,))))
    assert peer.closed_by_server()
