"""A directory a host process moves out of a passthrough export lends a client nothing
outside it through fids walked before the move, on a real server, in every security
model: creates, mkdir, symlinks, FIFOs, walks and reads answer ENOENT."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from ninep.wire import messages as m
from tests.conftest import RawPeer
from tests.hostile.serverproc import serve_process

ROOT, HELD, PROBE, LISTER = 1, 2, 3, 4
O_RDONLY, O_RDWR = 0, 2
SECRET = b"outside the export\n"


def enoent(reply: m.Message) -> None:
    assert isinstance(reply, m.Rlerror) and reply.ecode == errno.ENOENT, reply


@pytest.mark.parametrize("model", ["passthrough", "mapped-xattr", "none"])
def test_a_directory_moved_out_of_the_export_stays_outside_reach(
        tmp_path: Path, model: str) -> None:
    export, outside = tmp_path / "export", tmp_path / "outside"
    (export / "d").mkdir(parents=True)
    outside.mkdir()
    mount = f"/=passthrough:{export},security_model={model}"
    with serve_process(["--mount", mount], tmp_path) as server:
        peer = RawPeer(server.address)
        try:
            assert isinstance(peer.handshake(fid=ROOT), m.Rattach)
            assert isinstance(peer.rpc(m.Twalk(ROOT, HELD, ("d",))), m.Rwalk)
            made = peer.rpc(m.Tmkdir(HELD, "before", 0o755, 0))  # proven inside once
            assert isinstance(made, m.Rmkdir), made
            assert isinstance(peer.rpc(m.Twalk(HELD, LISTER, ())), m.Rwalk)
            assert isinstance(peer.rpc(m.Tlopen(LISTER, O_RDONLY)), m.Rlopen)
            os.rename(export / "d", outside / "d")  # by a host process
            (outside / "d" / "secret").write_bytes(SECRET)
            enoent(peer.rpc(m.Tmkdir(HELD, "dir", 0o755, 0)))
            enoent(peer.rpc(m.Tsymlink(HELD, "link", "/", 0)))
            enoent(peer.rpc(m.Tmknod(HELD, "fifo", stat.S_IFIFO | 0o644, 0, 0, 0)))
            enoent(peer.rpc(m.Twalk(HELD, PROBE, ("secret",))))
            enoent(peer.rpc(m.Twalk(HELD, PROBE, ("before",))))
            assert isinstance(peer.rpc(m.Twalk(HELD, PROBE, ())), m.Rwalk)  # a clone
            enoent(peer.rpc(m.Tlcreate(PROBE, "file", O_RDWR, 0o644, 0)))
            enoent(peer.rpc(m.Tlopen(HELD, O_RDONLY)))
            enoent(peer.rpc(m.Treaddir(LISTER, 0, 4096)))  # opened before the move
        finally:
            peer.close()
        assert sorted(os.listdir(outside / "d")) == ["before", "secret"]
        assert "Traceback" not in server.log_text()
