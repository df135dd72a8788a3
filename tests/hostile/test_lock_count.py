"""Byte-range locks a client can pile up (found by the network fuzzer: 8,000 locks on
one file took 12-20 s to take, and each Tlock then held other clients up, as every
one scanned and sorted all the file's locks on the event loop). A connection holds
at most MAX_LOCKS_PER_CONNECTION (4096) ranges; past it Tlock is ENOLCK, what Linux
answers when it cannot allocate a lock. The cost per lock is tested with counts in
tests/vfs/test_locks.py; the latency figures are in bench/README.md (bench/lock_latency.py)."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest

from ninep.wire import messages as m
from tests.conftest import RawPeer
from tests.hostile.serverproc import ServerProcess, serve_process

ROOT, FILE = 1, 2
O_RDWR = 2
WRLCK, RDLCK, UNLCK = 1, 0, 2
LIMIT = 4096  # the documented figure (vfs/locks.py, docs/architecture.md)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serve_process(["--mount", "/=ram"], tmp_path_factory.mktemp("locks")) as running:
        yield running
    log = running.log_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def _open(server: ServerProcess, name: str, create: bool) -> RawPeer:
    peer = RawPeer(server.address)
    assert isinstance(peer.handshake(fid=ROOT), m.Rattach)
    if create:
        assert isinstance(peer.rpc(m.Twalk(ROOT, FILE, [])), m.Rwalk)
        assert isinstance(peer.rpc(m.Tlcreate(FILE, name, O_RDWR, 0o644, 0)), m.Rlcreate)
    else:
        assert isinstance(peer.rpc(m.Twalk(ROOT, FILE, [name])), m.Rwalk)
        assert isinstance(peer.rpc(m.Tlopen(FILE, O_RDWR)), m.Rlopen)
    return peer


def _locks(peer: RawPeer, requests: list[m.Tlock]) -> list[m.Message]:
    """Send ``requests`` pipelined, 256 at a time; their replies in order."""
    replies: list[m.Message] = []
    for first in range(0, len(requests), 256):
        batch = requests[first:first + 256]
        for tag, request in enumerate(batch, start=1):
            peer.send(tag, request)
        got = dict(peer.recv() for _ in batch)
        replies += [got[tag] for tag in range(1, len(batch) + 1)]
    return replies


def _status(reply: m.Message) -> str:
    if isinstance(reply, m.Rlock):
        return {0: "SUCCESS", 1: "BLOCKED"}.get(reply.status, str(reply.status))
    assert isinstance(reply, m.Rlerror), reply
    return errno.errorcode[reply.ecode]


def test_a_connection_past_its_share_of_locks_gets_enolck(server: ServerProcess) -> None:
    greedy = _open(server, "many", create=True)
    # every other byte, each a range of its own; spread over two processes
    requests = [m.Tlock(FILE, WRLCK, 0, 2 * n, 1, n % 2, "greedy") for n in range(LIMIT + 10)]
    statuses = [_status(reply) for reply in _locks(greedy, requests)]
    assert statuses == ["SUCCESS"] * LIMIT + ["ENOLCK"] * 10
    # an unlock that frees a range makes room again; a relock that merges adds none
    assert _status(greedy.rpc(m.Tlock(FILE, UNLCK, 0, 0, 1, 0, "greedy"))) == "SUCCESS"
    assert _status(greedy.rpc(m.Tlock(FILE, RDLCK, 0, 2 * LIMIT, 1, 0, "greedy"))) == "SUCCESS"
    # offset 3 touches 4, which process 0 holds (2 is process 1's): they merge
    assert _status(greedy.rpc(m.Tlock(FILE, WRLCK, 0, 3, 1, 0, "greedy"))) == "SUCCESS"
    assert _status(greedy.rpc(m.Tlock(FILE, WRLCK, 0, 1, 1, 0, "greedy"))) == "ENOLCK"

    # another connection has a share of its own, and sees the greedy one's locks
    other = _open(server, "many", create=False)
    assert _status(other.rpc(m.Tlock(FILE, WRLCK, 0, 2, 1, 7, "other"))) == "BLOCKED"
    assert _status(other.rpc(m.Tlock(FILE, WRLCK, 0, 0, 1, 7, "other"))) == "SUCCESS"
    reply = other.rpc(m.Tgetlock(FILE, WRLCK, 2 * 100, 1, 7, "other"))
    assert isinstance(reply, m.Rgetlock) and reply.client_id == "greedy" and reply.start == 200
    greedy.close()  # its locks go with it
    probe = _open(server, "many", create=False)
    assert _status(probe.rpc(m.Tlock(FILE, WRLCK, 0, 2 * 100, 1, 8, "probe"))) in {
        "SUCCESS", "BLOCKED"}  # the close may still be under way; then it must succeed
    for _ in range(50):
        if _status(probe.rpc(m.Tlock(FILE, WRLCK, 0, 2 * 100, 1, 8, "probe"))) == "SUCCESS":
            break
    else:
        pytest.fail("the greedy connection's locks outlived it")
    probe.close()
    other.close()
