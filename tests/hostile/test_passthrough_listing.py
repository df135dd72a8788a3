"""A passthrough listing ends while a client creates entries between its batches (the
probe that found it: Treaddir count 400, two Tlcreate per batch), on a real server."""

from __future__ import annotations

import os
from pathlib import Path

from ninep.clients.wire import parse_dirents
from ninep.wire import messages as m
from tests.conftest import RawPeer
from tests.hostile.serverproc import serve_process

ROOT, DIR, NEW = 1, 2, 3
O_RDONLY, O_RDWR = 0, 2
START = 300  # names before the listing begins: many batches of count 400


def test_a_listing_ends_while_two_files_are_created_per_batch(tmp_path: Path) -> None:
    export = tmp_path / "export"
    (export / "d").mkdir(parents=True)
    for i in range(START):
        (export / "d" / f"old{i:04d}").write_bytes(b"")
    with serve_process(["--mount", f"/=passthrough:{export}"], tmp_path) as server:
        peer = RawPeer(server.address)
        try:
            assert isinstance(peer.handshake(fid=ROOT), m.Rattach)
            assert isinstance(peer.rpc(m.Twalk(ROOT, DIR, ("d",))), m.Rwalk)
            assert isinstance(peer.rpc(m.Tlopen(DIR, O_RDONLY)), m.Rlopen)
            seen: list[str] = []
            offset, made = 0, 0
            while True:
                reply = peer.rpc(m.Treaddir(DIR, offset, 400))
                assert isinstance(reply, m.Rreaddir), reply
                entries = parse_dirents(reply.data)
                if not entries:
                    break
                seen += [e.name for e in entries if e.name not in (".", "..")]
                offset = entries[-1].offset
                for _ in range(2):  # each on a fid of its own, as a shell's `touch` would
                    assert isinstance(peer.rpc(m.Twalk(ROOT, NEW, ("d",))), m.Rwalk)
                    created = peer.rpc(m.Tlcreate(NEW, f"new{made:05d}", O_RDWR, 0o644, 0))
                    assert isinstance(created, m.Rlcreate), created
                    assert isinstance(peer.rpc(m.Tclunk(NEW)), m.Rclunk)
                    made += 1
                # today's listing found the two newest entries in every batch, for ever
                assert made < 2 * START, f"the listing did not end ({len(seen)} names)"
        finally:
            peer.close()
        assert len(seen) == len(set(seen)), "an entry was listed twice"
        assert {f"old{i:04d}" for i in range(START)} <= set(seen)
        assert len(os.listdir(export / "d")) == START + made
        assert "Traceback" not in server.log_text()
