"""Tread replies read into pooled buffers: one is reused only after its reply left
in full, and a reused buffer never shows old bytes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ninep.backends.registry import open_backend
from ninep.vfs import buffers
from ninep.vfs.namespace import Namespace
from ninep.vfs.policy import Policy, Rule
from ninep.wire import messages as m
from ninep.wire.constants import O_RDONLY
from tests.conftest import RawPeer, RunningServer, start_server
from tests.ninep.test_robustness import FakeTransport, connected


@pytest.fixture(autouse=True)
def empty_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(buffers, "_free", {})
    yield


class BusyTransport(FakeTransport):
    """A transport that could not send everything at once (as uvloop holding a view)."""

    def get_write_buffer_size(self) -> int:
        return 1


async def policy_of(kind: str, source: Path) -> Policy:
    backend = await open_backend(kind, str(source), {}, False)
    return Policy([Rule(await Namespace.build([("/", backend, False)]))])


def tree(root: Path) -> Path:
    (root / "tree").mkdir()
    (root / "tree" / "a").write_bytes(os.urandom(65536))
    (root / "tree" / "b").write_bytes(b"ten bytes!")
    return root / "tree"


@pytest.fixture
def source(tmp_path: Path) -> tuple[str, Path]:
    return "passthrough", tree(tmp_path)


def read(conn: object, transport: FakeTransport, name: str, fid: int) -> bytes:
    conn.data_received(m.encode(1, m.Twalk(1, fid, (name,))))  # type: ignore[attr-defined]
    conn.data_received(m.encode(1, m.Tlopen(fid, O_RDONLY)))  # type: ignore[attr-defined]
    conn.data_received(m.encode(2, m.Tread(fid, 0, 65536)))  # type: ignore[attr-defined]
    tag, reply = m.decode(transport.written[-1])
    assert tag == 2 and isinstance(reply, m.Rread), reply
    return bytes(reply.data)


async def test_a_buffer_sent_in_full_is_reused_without_its_old_bytes(
        source: tuple[str, Path]) -> None:
    conn, transport = await connected(await policy_of(*source))
    a = read(conn, transport, "a", 2)
    assert len(a) == 65536 - 11  # msize 65536 less the Rread header
    assert buffers._free, "the buffer of a reply sent in full was not given back"
    pooled = buffers._free[65536][0]
    assert read(conn, transport, "b", 3) == b"ten bytes!"  # not a's bytes after them
    assert buffers._free[65536][0] is pooled  # the same buffer, taken and given again


async def test_a_buffer_still_held_by_the_transport_is_not_reused(
        source: tuple[str, Path]) -> None:
    conn, _ = await connected(await policy_of(*source))
    busy = BusyTransport()
    conn.transport = busy  # type: ignore[assignment]
    assert len(read(conn, busy, "a", 2)) == 65536 - 11
    assert not buffers._free


@pytest.fixture
def export_server(tmp_path: Path) -> Iterator[tuple[RunningServer, bytes]]:
    data = os.urandom(8 << 20)
    (tmp_path / "big").write_bytes(data)

    async def policy() -> Policy:
        return await policy_of("passthrough", tmp_path)
    running = start_server(policy)
    try:
        yield running, data
    finally:
        running.stop()


def test_replies_in_flight_to_a_slow_reader_keep_their_bytes(
        export_server: tuple[RunningServer, bytes]) -> None:
    # The trap of PERFORMANCE.md: uvloop keeps a view it could not send yet; a
    # buffer reused meanwhile would change bytes already promised to the client.
    running, data = export_server
    peer = RawPeer(("127.0.0.1", running.port), timeout=30)
    assert isinstance(peer.handshake(msize=1 << 20), m.Rattach)
    assert isinstance(peer.rpc(m.Twalk(1, 2, ("big",))), m.Rwalk)
    assert isinstance(peer.rpc(m.Tlopen(2, O_RDONLY)), m.Rlopen)
    size = 512 << 10
    for rounds in range(3):
        offsets = {tag: (tag * 7 + rounds) % 16 * size for tag in range(1, 33)}
        for tag, offset in offsets.items():
            peer.send(tag, m.Tread(2, offset, size))
        time.sleep(0.3)  # the socket fills up: most replies wait in the transport
        for _ in offsets:
            tag, reply = peer.recv()
            assert isinstance(reply, m.Rread)
            offset = offsets[tag]
            assert bytes(reply.data) == data[offset:offset + size], f"reply {tag} changed"
