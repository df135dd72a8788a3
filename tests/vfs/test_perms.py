"""POSIX permission checks: owner, group, other, root."""

from __future__ import annotations

import errno
import stat

import pytest

from vfs.node import Attr, Cred
from vfs.perms import R_OK, W_OK, X_OK, check_access, check_sticky, may_access


def attr(mode: int, uid: int = 1000, gid: int = 100) -> Attr:
    return Attr(ino=2, mode=mode, uid=uid, gid=gid, nlink=1, size=0, atime_ns=0, mtime_ns=0,
                ctime_ns=0)


OWNER, MEMBER, OTHER, ROOT = Cred(1000, 1000), Cred(2000, 2000, frozenset({100})), Cred(3000, 3000), Cred(0, 0)


@pytest.mark.parametrize("cred,want,allowed", [
    (OWNER, R_OK | W_OK, True), (OWNER, X_OK, False),
    (MEMBER, R_OK, True), (MEMBER, W_OK, False),
    (OTHER, R_OK, False), (ROOT, R_OK | W_OK, True),
])
def test_mode_0640(cred: Cred, want: int, allowed: bool) -> None:
    assert may_access(attr(stat.S_IFREG | 0o640), cred, want) is allowed


def test_owner_class_is_used_even_when_group_would_allow() -> None:
    # Linux picks the first matching class: an owner with 0070 cannot read
    assert not may_access(attr(stat.S_IFREG | 0o070, gid=1000), OWNER, R_OK)


def test_root_needs_some_execute_bit_on_files_but_not_directories() -> None:
    assert not may_access(attr(stat.S_IFREG | 0o600), ROOT, X_OK)
    assert may_access(attr(stat.S_IFREG | 0o100), ROOT, X_OK)
    assert may_access(attr(stat.S_IFDIR | 0o000), ROOT, X_OK)


def test_check_access_raises_eacces() -> None:
    with pytest.raises(OSError) as info:
        check_access(attr(stat.S_IFREG | 0o600), OTHER, R_OK)
    assert info.value.errno == errno.EACCES


def test_sticky_directory_protects_other_users_files() -> None:
    tmp = attr(stat.S_IFDIR | 0o1777, uid=0, gid=0)
    theirs = attr(stat.S_IFREG | 0o666, uid=3000)
    with pytest.raises(OSError) as info:
        check_sticky(tmp, theirs, OWNER)
    assert info.value.errno == errno.EPERM
    check_sticky(tmp, theirs, OTHER)  # the file's owner may
    check_sticky(tmp, theirs, ROOT)
