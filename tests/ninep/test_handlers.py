"""Handler details that are not visible through a client: hot-path encodings, number checks."""

from __future__ import annotations

import errno
import stat
from collections.abc import Callable

from ninep.server.handlers import _setattr_changes
from ninep.vfs.node import UTIME_NOW, Attr
from ninep.wire import messages as m
from ninep.wire.constants import (
    SETATTR_ATIME,
    SETATTR_ATIME_SET,
    SETATTR_MTIME,
    SETATTR_MTIME_SET,
    SETATTR_SIZE,
    SETATTR_UID,
)
from ninep.wire.fast import GETATTR_VALID, rgetattr_body, rgetattr_frame


def test_packed_rgetattr_equals_the_generic_encoding() -> None:
    a = Attr(ino=77, mode=stat.S_IFREG | 0o640, uid=1000, gid=100, nlink=3, size=123456789,
             atime_ns=1_700_000_000_123_456_789, mtime_ns=1_600_000_000_000_000_001,
             ctime_ns=5, rdev=0x0801, blocks=241, blksize=4096, btime_ns=2_000_000_000,
             gen=9, data_version=42)
    fast = m.encode(7, m.Encoded(m.Rgetattr.type, rgetattr_body(0x1_0000_0000_004D, a)))
    generic = m.encode(7, m.Rgetattr(
        GETATTR_VALID, m.Qid(0, 0, 0x1_0000_0000_004D), a.mode, a.uid, a.gid, a.nlink, a.rdev,
        a.size, a.blksize, a.blocks, 1_700_000_000, 123_456_789, 1_600_000_000, 1, 0, 5, 2, 0,
        9, 42))
    assert fast == generic
    assert rgetattr_frame(7, 0x1_0000_0000_004D, a) == generic
    assert m.decode(fast)[1] == m.decode(generic)[1]


def _tsetattr(valid: int, size: int = 0, sec: int = 0, nsec: int = 0, uid: int = 0) -> m.Tsetattr:
    return m.Tsetattr(1, valid, 0, uid, 0, size, sec, nsec, sec, nsec)


def _errno(call: Callable[[], object]) -> int | None:
    try:
        call()
    except OSError as exc:
        return exc.errno
    return None


def test_setattr_numbers_are_checked_as_linux_checks_them() -> None:
    size, uid = SETATTR_SIZE, SETATTR_UID
    times = SETATTR_ATIME | SETATTR_ATIME_SET | SETATTR_MTIME | SETATTR_MTIME_SET
    # ftruncate with a negative length; utimensat with tv_nsec >= 10**9; chown to (uid_t)-1
    assert _errno(lambda: _setattr_changes(_tsetattr(size, size=2**63))) == errno.EINVAL
    assert _errno(lambda: _setattr_changes(_tsetattr(size, size=2**64 - 1))) == errno.EINVAL
    assert _setattr_changes(_tsetattr(size, size=2**63 - 1)).size == 2**63 - 1
    assert _errno(lambda: _setattr_changes(_tsetattr(times, nsec=10**9))) == errno.EINVAL
    assert _errno(lambda: _setattr_changes(_tsetattr(uid, uid=2**32 - 1))) == errno.EINVAL
    # seconds are the client's time64_t (the codec decodes them signed)
    sent = m.encode(1, _tsetattr(times, sec=-1, nsec=999_999_999))
    before_1970 = _setattr_changes(m.decode(sent)[1])  # type: ignore[arg-type]
    assert before_1970.atime_ns == before_1970.mtime_ns == -1
    now = _setattr_changes(_tsetattr(SETATTR_ATIME, nsec=10**9))  # no _SET bit: "now"
    assert now.atime_ns == UTIME_NOW
