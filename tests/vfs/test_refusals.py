"""vfs/refusals.py: refusal warnings rate-limited per peer, with a bounded memory."""

from __future__ import annotations

import logging

import pytest

from ninep.vfs.policy import Peer
from ninep.vfs.refusals import RefusalLog, peer_key


def test_a_few_lines_per_interval_then_a_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    refusals = RefusalLog(shown=3, interval=60.0, clock=lambda: now[0])
    peer = Peer("tcp", "192.0.2.1:4000")
    with caplog.at_level(logging.WARNING, logger="ninep.vfs.refusals"):
        assert [refusals.allow(peer) for _ in range(5)] == [True, True, True, False, False]
        # another connection of the same host counts against the same budget
        assert not refusals.allow(Peer("tcp", "192.0.2.1:4001"))
        assert refusals.allow(Peer("tcp", "192.0.2.2:4000"))  # another host has its own
        now[0] = 61.0
        assert refusals.allow(peer)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["192.0.2.1: more than 3 refusals within 60 s: the next ones are "
                        "counted, not logged",
                        "192.0.2.1: 3 more refusals were not logged in the last 61 s"]


def test_peers_remembered_are_bounded() -> None:
    refusals = RefusalLog(shown=1, max_peers=100)
    for i in range(10_000):
        refusals.allow(Peer("tcp", f"10.0.{i // 256}.{i % 256}:1"))
    assert len(refusals) == 100


def test_whom_a_refusal_counts_against() -> None:
    assert peer_key(Peer("tls", "[2001:db8::1]:564")) == "2001:db8::1"
    assert peer_key(Peer("unix", "local", uid=1000, gid=100, pid=7)) == "unix uid 1000"
