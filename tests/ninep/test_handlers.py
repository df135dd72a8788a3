"""Handler details that are not visible through a client: hot-path encodings."""

from __future__ import annotations

import stat

from ninep import messages as m
from ninep.handlers import GETATTR_VALID, rgetattr_body, rgetattr_frame
from vfs.node import Attr


def test_packed_rgetattr_equals_the_generic_encoding() -> None:
    a = Attr(ino=77, mode=stat.S_IFREG | 0o640, uid=1000, gid=100, nlink=3, size=123456789,
             atime_ns=1_700_000_000_123_456_789, mtime_ns=1_600_000_000_000_000_001,
             ctime_ns=5, rdev=0x0801, blocks=241, blksize=4096, btime_ns=2_000_000_000,
             gen=9, data_version=42)
    fast = m.encode(7, m.Encoded(m.Rgetattr.type, rgetattr_body(0, 0x1_0000_0000_004D, a)))
    generic = m.encode(7, m.Rgetattr(
        GETATTR_VALID, m.Qid(0, 0, 0x1_0000_0000_004D), a.mode, a.uid, a.gid, a.nlink, a.rdev,
        a.size, a.blksize, a.blocks, 1_700_000_000, 123_456_789, 1_600_000_000, 1, 0, 5, 2, 0,
        9, 42))
    assert fast == generic
    assert rgetattr_frame(7, 0, 0x1_0000_0000_004D, a) == generic
    assert m.decode(fast)[1] == m.decode(generic)[1]
