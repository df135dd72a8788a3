"""No input can crash the server: random bytes, handler bugs, and queued requests."""

from __future__ import annotations

import asyncio
import errno
import logging
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ninep.backends.ram import RamBackend
from ninep.config.defaults import default_policy
from ninep.server.session import ServerLimits
from ninep.server.transport import Connection
from ninep.vfs.locks import LockManager
from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Attr, Node
from ninep.vfs.policy import Policy, Rule
from ninep.wire import messages as m
from tests.conftest import RawPeer, start_server


class FakeTransport:
    """Collects what the server writes; records an abort."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        self.written.append(b"".join(bytes(p) for p in parts))

    def get_write_buffer_size(self) -> int:
        return 0  # what it was given is copied at once

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def replies(self) -> list[tuple[int, m.Message]]:
        return [m.decode(frame) for frame in self.written]


async def connected(policy: Policy, limits: ServerLimits | None = None
                    ) -> tuple[Connection, FakeTransport]:
    conn = Connection(policy, LockManager(), limits or ServerLimits())
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(m.encode(m.NOTAG, m.Tversion(65536, "9P2000.L")))
    conn.data_received(m.encode(1, m.Tattach(1, m.NOFID, "", "", 0)))
    for _ in range(3000):  # a uname not yet cached is looked up in passwd on a thread
        if len(transport.written) > 1:
            break
        await asyncio.sleep(0.01)
    assert isinstance(transport.replies()[-1][1], m.Rattach)
    return conn, transport


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.binary(min_size=0, max_size=64), max_size=8),
       typed=st.lists(st.tuples(st.sampled_from([*sorted(m.MESSAGE_TYPES), 0, 6, 255]),
                                st.binary(max_size=40)), max_size=6))
def test_random_input_never_escapes_as_an_exception(chunks: list[bytes],
                                                    typed: list[tuple[int, bytes]]) -> None:
    async def scenario() -> None:
        conn, transport = await connected(await default_policy())
        # well-framed messages of every type with random bodies, then raw garbage
        for mtype, body in typed:
            conn.data_received(struct.pack("<IBH", 7 + len(body), mtype, 3) + body)
        for chunk in chunks:
            conn.data_received(chunk)
        await asyncio.sleep(0)
        for frame in transport.written:
            m.decode(frame)  # every reply the server wrote is well formed
        conn.connection_lost(None)
        await asyncio.sleep(0)
    asyncio.run(scenario())


class BrokenNode(Node):
    """A backend node whose getattr has a bug."""

    async def getattr(self) -> Attr:
        raise RuntimeError("backend bug")


@pytest.mark.asyncio
async def test_a_backend_bug_is_eio_with_a_traceback_in_the_log(
        caplog: pytest.LogCaptureFixture) -> None:
    ram = RamBackend()
    ns = await Namespace.build([("/", ram, False)])
    conn, transport = await connected(Policy([Rule(ns)]))
    conn.data_received(m.encode(2, m.Twalk(1, 2, ())))
    assert conn.session is not None
    conn.session.fids[2].loc = type(conn.session.fids[2].loc)(conn.session.fids[2].loc.mount,
                                                               BrokenNode())
    with caplog.at_level(logging.ERROR):
        conn.data_received(m.encode(3, m.Tgetattr(2, 0x7FF)))
    assert transport.replies()[-1] == (3, m.Rlerror(errno.EIO))
    assert "backend bug" in caplog.text and "Tgetattr failed" in caplog.text
    conn.data_received(m.encode(4, m.Tgetattr(1, 0x7FF)))
    assert isinstance(transport.replies()[-1][1], m.Rgetattr)


def _lock(tag_fid: int, proc: int) -> m.Tlock:
    return m.Tlock(tag_fid, 1, 1, 0, 0, proc, "host")


def test_requests_beyond_the_inflight_limit_wait_their_turn() -> None:
    running = start_server(default_policy, ServerLimits(max_inflight=2))
    try:
        holder = RawPeer(("127.0.0.1", running.port))
        waiter = RawPeer(("127.0.0.1", running.port))
        for peer in (holder, waiter):
            peer.handshake()
            peer.rpc(m.Twalk(1, 2, ()))
            reply = peer.rpc(m.Tlcreate(2, "lockfile", 2, 0o644, 0))
            if isinstance(reply, m.Rlerror):
                peer.rpc(m.Tclunk(2))
                peer.rpc(m.Twalk(1, 2, ("lockfile",)))
                peer.rpc(m.Tlopen(2, 2))
        assert holder.rpc(m.Tlock(2, 1, 0, 0, 0, 1, "host")) == m.Rlock(0)
        waiter.send(10, _lock(2, 2))
        waiter.send(11, _lock(2, 3))  # two requests wait: the limit is reached
        waiter.send(12, m.Tgetattr(1, 0x7FF))  # queued behind them, not answered yet
        waiter.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            waiter.recv()
        waiter.sock.settimeout(10)
        waiter.send(13, m.Tflush(10))  # queued too; it frees a slot when it runs
        holder.rpc(m.Tlock(2, 2, 0, 0, 0, 1, "host"))  # release: one waiter gets the lock
        replies = dict(waiter.recv() for _ in range(3))
        # 10 got the lock, which let the queued getattr and flush run; 11 still waits
        assert replies == {10: m.Rlock(0), 12: replies[12], 13: m.Rflush()}
        assert isinstance(replies[12], m.Rgetattr)
        holder.close()
        waiter.close()
    finally:
        running.stop()
