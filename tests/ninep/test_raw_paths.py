"""The transport's raw paths (Twalk of 0-1 names, Tgetattr, Tclunk, Tread) answer exactly
as the general path does: every scenario runs twice, byte for byte compared."""

from __future__ import annotations

import asyncio
import errno
import struct
from collections.abc import Callable

import pytest

from ninep.config.defaults import default_policy
from ninep.server.transport import Connection
from ninep.vfs.policy import Policy
from ninep.wire import messages as m
from ninep.wire.constants import O_RDONLY, O_WRONLY
from tests.ninep.test_robustness import connected

RAW_PATHS = ("_walk_raw", "_clunk_at_once", "_getattr_at_once", "_read_raw")

# (request frame, or a message to encode with tag 5); each scenario starts attached
# as fid 1 at the root of the default namespace (a RAM disk holding README)
SCENARIOS: dict[str, list[m.Message | bytes]] = {
    "clone": [m.Twalk(1, 2, ()), m.Tgetattr(2, 0x3FFF), m.Tclunk(2), m.Tgetattr(2, 0x3FFF)],
    "one name": [m.Twalk(1, 2, ("README",)), m.Tgetattr(2, 0x3FFF), m.Tclunk(2)],
    "onto itself": [m.Twalk(1, 2, ()), m.Twalk(2, 2, ("README",)), m.Tgetattr(2, 0x3FFF)],
    "missing": [m.Twalk(1, 2, ("nope",)), m.Tclunk(2)],
    "unknown fid": [m.Twalk(9, 2, ("README",)), m.Tclunk(9)],
    "newfid in use": [m.Twalk(1, 2, ()), m.Twalk(1, 2, ("README",))],
    "NOFID": [m.Twalk(1, m.NOFID, ("README",))],
    "bad names": [m.Twalk(1, 2, ("a/b",)), m.Twalk(1, 2, ("",)), m.Twalk(1, 2, ("..",)),
                  m.Twalk(1, 3, (".",))],
    "open fid walks itself": [m.Twalk(1, 2, ("README",)), m.Tlopen(2, O_RDONLY),
                              m.Twalk(2, 2, ("x",)), m.Twalk(2, 2, ()), m.Tclunk(2)],
    "walk from a file": [m.Twalk(1, 2, ("README",)), m.Twalk(2, 3, ("x",))],
    "reads": [m.Twalk(1, 2, ("README",)), m.Tread(2, 0, 10), m.Tlopen(2, O_RDONLY),
              m.Tread(2, 0, 10), m.Tread(2, 5, 1 << 20), m.Tread(2, 1 << 40, 10), m.Tread(9, 0, 1),
              m.Tread(1, 0, 10)],
    "read of a write-only fid": [m.Twalk(1, 2, ("README",)), m.Tlopen(2, O_WRONLY),
                                 m.Tread(2, 0, 10)],
    "two names": [m.Twalk(1, 2, ("README", "x")), m.Twalk(1, 3, (".", "README"))],
    # hand-made frames: one name whose length overruns, bytes left over,
    # a name that is not UTF-8
    "overrun": [struct.pack("<IBHIIHH", 19 + 3, m.Twalk.type, 5, 1, 2, 1, 9) + b"abc"],
    "left over": [struct.pack("<IBHIIH", 17 + 2, m.Twalk.type, 5, 1, 2, 0) + b"zz"],
    "name, left over": [struct.pack("<IBHIIHH", 19 + 6, m.Twalk.type, 5, 1, 2, 1, 6)
                        + b"README", struct.pack("<IBHIIHH", 19 + 8, m.Twalk.type, 5, 1, 3, 1, 6)
                        + b"READMEzz"],
    "latin-1 name": [struct.pack("<IBHIIHH", 19 + 1, m.Twalk.type, 5, 1, 2, 1, 1) + b"\xe9"],
    "short clunk": [struct.pack("<IBHH", 9, m.Tclunk.type, 5, 1)],
    "long read": [struct.pack("<IBHIQIB", 24, m.Tread.type, 5, 1, 0, 10, 0)],
}


def _frame(item: m.Message | bytes) -> bytes:
    return item if isinstance(item, bytes) else m.encode(5, item)


async def _replies(policy: Policy, items: list[m.Message | bytes]) -> tuple[list[bytes], bool]:
    conn, transport = await connected(policy)
    first = len(transport.written)
    for item in items:
        conn.data_received(_frame(item))
        await asyncio.sleep(0)
    return transport.written[first:], transport.aborted


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_raw_and_general_paths_answer_alike(name: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[str] = []
    for attr in RAW_PATHS:
        real = getattr(Connection, attr)

        def spy(self: Connection, *args: object, _real: object = real,
                _attr: str = attr) -> bool:
            took = _real(self, *args)  # type: ignore[operator]
            if took:
                taken.append(_attr)
            return took
        monkeypatch.setattr(Connection, attr, spy)
    policy = await default_policy()  # one RAM disk for both runs: the same times
    raw = await _replies(policy, SCENARIOS[name])
    for attr in RAW_PATHS:
        monkeypatch.setattr(Connection, attr, lambda self, *args: False)
    general = await _replies(policy, SCENARIOS[name])
    assert raw == general
    if name in ("clone", "one name", "missing", "unknown fid", "reads"):
        assert taken, "the raw paths were never taken"


async def test_the_raw_paths_are_taken_and_answer_right() -> None:
    conn, transport = await connected(await default_policy())
    conn.data_received(m.encode(5, m.Twalk(1, 2, ("README",))))
    conn.data_received(m.encode(6, m.Tclunk(2)))
    conn.data_received(m.encode(7, m.Tclunk(2)))
    walked, clunked, again = (m.decode(f) for f in transport.written[-3:])
    assert walked[0] == 5 and isinstance(walked[1], m.Rwalk)
    assert len(walked[1].qids) == 1 and walked[1].qids[0].type == 0
    assert clunked == (6, m.Rclunk())
    assert again == (7, m.Rlerror(errno.EBADF))


async def test_clunk_of_an_open_fid_closes_its_handle() -> None:
    conn, transport = await connected(await default_policy())
    conn.data_received(m.encode(5, m.Twalk(1, 2, ("README",))))
    conn.data_received(m.encode(5, m.Tlopen(2, O_RDONLY)))
    assert conn.session is not None
    handle = conn.session.fids[2].handle
    assert handle is not None
    closed: list[bool] = []
    real_close = handle.close

    async def close() -> None:
        closed.append(True)
        await real_close()
    handle.close = close  # type: ignore[method-assign]
    conn.data_received(m.encode(6, m.Tclunk(2)))
    await asyncio.sleep(0)
    assert m.decode(transport.written[-1]) == (6, m.Rclunk())
    assert closed == [True]



async def test_a_callback_getattr_that_cannot_be_packed_is_answered_eio(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a node answering by callback (an import's) whose attributes the wire cannot carry
    # (a size of 2**64): the request is answered EIO, never left without a reply
    from ninep.backends.ram import RamNode
    from ninep.vfs.node import Attr

    def getattr_soon(self: RamNode, done: Callable[[Attr | OSError], None]) -> bool:
        a = self.attr
        bad = Attr(a.ino, a.mode, a.uid, a.gid, a.nlink, 2**64, 0, 0, 0)
        asyncio.get_running_loop().call_soon(done, bad)
        return True

    monkeypatch.setattr(RamNode, "peek_attr", lambda self: None)
    monkeypatch.setattr(RamNode, "getattr_soon", getattr_soon)
    conn, transport = await connected(await default_policy())
    first = len(transport.written)
    conn.data_received(m.encode(7, m.Tgetattr(1, 0x3FFF)))
    for _ in range(100):
        await asyncio.sleep(0)
        if len(transport.written) > first:
            break
    [(tag, reply)] = transport.replies()[first:]
    assert (tag, reply) == (7, m.Rlerror(errno.EIO))
    assert not transport.aborted
