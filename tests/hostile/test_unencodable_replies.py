"""A reply the wire cannot carry (found by the network fuzzer: a 65,536-byte
Rreadlink raised in the transport, and asyncio dropped the whole connection with
"Fatal error on transport"). Such a reply becomes an Rlerror through
Session.error_reply, logged once per connection, and the connection lives on; a
reply over the connection's msize, which Linux's client takes for a broken
connection, is refused the same way."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator

import pytest

from ninep.server.session import HANDLERS, Session
from ninep.wire import messages as m
from tests.conftest import RawPeer, RunningServer
from tests.hostile.serverproc import ServerProcess, serve_process

ROOT = 1
WRLCK, RDLCK = 1, 0
O_RDWR = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("unencodable")
    with serve_process(["--mount", "/=ram"], tmp) as running:
        yield running
    log = running.log_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def _peer(server: ServerProcess, msize: int) -> RawPeer:
    peer = RawPeer(server.address)
    assert isinstance(peer.handshake(msize=msize, fid=ROOT), m.Rattach)
    return peer


def _alive(peer: RawPeer) -> None:
    assert isinstance(peer.rpc(m.Tgetattr(ROOT, 0x7FF)), m.Rgetattr)


def test_an_rreadlink_over_the_msize_is_enametoolong(server: ServerProcess) -> None:
    """A 4,095-byte target (the longest symlink(2) stores) makes a 4,104-byte
    Rreadlink: more than a connection of msize 4096 can take."""
    maker = _peer(server, 65536)
    assert isinstance(maker.rpc(m.Tsymlink(ROOT, "longest", "t" * 4095, 0)), m.Rsymlink)
    small = _peer(server, 4096)
    assert isinstance(small.rpc(m.Twalk(ROOT, 2, ["longest"])), m.Rwalk)
    reply = small.rpc(m.Treadlink(2))
    assert isinstance(reply, m.Rlerror) and reply.ecode == errno.ENAMETOOLONG, reply
    _alive(small)
    assert isinstance(maker.rpc(m.Twalk(ROOT, 2, ["longest"])), m.Rwalk)
    reply = maker.rpc(m.Treadlink(2))
    assert isinstance(reply, m.Rreadlink) and len(reply.target) == 4095
    maker.close()
    small.close()
    assert "a Rreadlink cannot be sent" in server.log_text()


def test_an_rgetlock_over_the_msize_is_an_error_and_the_connection_lives(
        server: ServerProcess) -> None:
    """The holder's client_id came from a connection of a larger msize."""
    holder = _peer(server, 65536)
    assert isinstance(holder.rpc(m.Tlcreate(ROOT, "locked", O_RDWR, 0o644, 0)), m.Rlcreate)
    reply = holder.rpc(m.Tlock(ROOT, WRLCK, 0, 0, 0, 7, "c" * 8000))
    assert isinstance(reply, m.Rlock) and reply.status == 0, reply
    asker = _peer(server, 4096)
    assert isinstance(asker.rpc(m.Twalk(ROOT, 2, ["locked"])), m.Rwalk)
    for _ in range(3):  # each answered; the log says it once for the connection
        reply = asker.rpc(m.Tgetlock(2, RDLCK, 0, 0, 1, "asker"))
        assert isinstance(reply, m.Rlerror) and reply.ecode == errno.EIO, reply
    _alive(asker)
    assert server.log_text().count("a Rgetlock cannot be sent") == 1
    holder.close()
    asker.close()


def test_a_string_the_wire_cannot_carry_is_an_error_not_a_dead_connection(
        ninep_server: RunningServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Whatever a backend or handler might produce: a reply that fails to encode
    (a string over 65,535 bytes, at an msize where the frame would fit)."""

    async def huge(session: Session, msg: m.Treadlink) -> m.Message:
        return m.Rreadlink("x" * 70000)

    monkeypatch.setitem(HANDLERS, m.Treadlink, huge)
    caplog.set_level(logging.DEBUG)
    peer = RawPeer(("127.0.0.1", ninep_server.port))
    assert isinstance(peer.handshake(msize=1 << 20, fid=ROOT), m.Rattach)
    for _ in range(2):
        reply = peer.rpc(m.Treadlink(ROOT))
        assert isinstance(reply, m.Rlerror) and reply.ecode == errno.ENAMETOOLONG, reply
    _alive(peer)
    peer.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
    warnings = [r for r in caplog.records if "cannot be sent" in r.getMessage()
                and r.levelno == logging.WARNING]
    assert len(warnings) == 1
