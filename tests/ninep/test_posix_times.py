"""Nanosecond timestamps on the wire (issue 10): a Tsetattr's nanoseconds come back in
Rgetattr from every writable backend, through a real ``ninep serve`` process.

(Linux's v9fs client sends none: tests/kernel/scenarios/posix.sh shows that limit.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ninep.wire import messages as m
from ninep.wire.constants import (
    GETATTR_ALL,
    SETATTR_ATIME,
    SETATTR_ATIME_SET,
    SETATTR_MTIME,
    SETATTR_MTIME_SET,
)
from tests.conftest import RawPeer
from tests.hostile.serverproc import serve_process

_O_RDWR = 2


@pytest.fixture
def mounts(tmp_path: Path) -> list[str]:
    (tmp_path / "export").mkdir()
    image = tmp_path / "fs.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", "1024", "-I", "256", str(image),
                    "8M"], check=True, capture_output=True)
    return ["--mount", "/=ram", "--mount", f"/pt=passthrough:{tmp_path / 'export'}",
            "--mount", f"/ext2=ext2:{image}", "--mount", "/ovl=overlay,lower=ram,upper=ram"]


@pytest.mark.parametrize("where", ["", "pt", "ext2", "ovl"])
def test_tsetattr_nanoseconds_come_back_in_rgetattr(tmp_path: Path, mounts: list[str],
                                                    where: str) -> None:
    with serve_process(mounts, tmp_path) as server:
        peer = RawPeer(server.address)
        try:
            peer.handshake()
            assert isinstance(peer.rpc(m.Twalk(1, 2, (where,) if where else ())), m.Rwalk)
            reply = peer.rpc(m.Tlcreate(2, "f", _O_RDWR, 0o644, 0))
            assert isinstance(reply, m.Rlcreate), reply
            valid = SETATTR_ATIME | SETATTR_ATIME_SET | SETATTR_MTIME | SETATTR_MTIME_SET
            reply = peer.rpc(m.Tsetattr(2, valid, 0, 0, 0, 0, 1_234_567_890, 123_456_789,
                                        1_234_567_891, 987_654_321))
            assert isinstance(reply, m.Rsetattr), reply
            attr = peer.rpc(m.Tgetattr(2, GETATTR_ALL))
            assert isinstance(attr, m.Rgetattr), attr
            assert (attr.atime_sec, attr.atime_nsec) == (1_234_567_890, 123_456_789)
            assert (attr.mtime_sec, attr.mtime_nsec) == (1_234_567_891, 987_654_321)
        finally:
            peer.close()
