"""vfs/setid.py: Linux's set-id rules, and what the write guard costs per write."""

from __future__ import annotations

import stat

import pytest

from ninep.backends.ram import RamBackend
from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Attr, Cred, SetAttr
from ninep.vfs.setid import WriteGuard, killed_by_write, mode_change_only_kills

ROOT, USER = Cred(0, 0), Cred(2000, 2000)
O_WRONLY = 1


@pytest.mark.parametrize("mode,member,killed", [
    (0o104777, False, stat.S_ISUID), (0o102777, True, stat.S_ISGID),
    (0o102767, True, 0), (0o102767, False, stat.S_ISGID), (0o106777, True, 0o6000),
    (0o100777, False, 0), (0o044777, False, 0),  # a directory: never
])
def test_killed_by_write(mode: int, member: bool, killed: int) -> None:
    assert killed_by_write(mode, member) == killed


def test_a_kill_only_mode_change_is_not_a_chmod() -> None:
    attr = Attr(ino=2, mode=0o106755, uid=1, gid=1, nlink=1, size=0, atime_ns=0, mtime_ns=0,
                ctime_ns=0)
    assert mode_change_only_kills(attr, 0o2755)
    assert mode_change_only_kills(attr, 0o755)
    assert not mode_change_only_kills(attr, 0o6755)  # nothing cleared
    assert not mode_change_only_kills(attr, 0o4777)  # another bit set


async def test_writes_to_a_file_without_set_id_bits_ask_the_backend_nothing() -> None:
    """The write path's cost: no getattr per write while no file of the backend gets a
    set-id bit; one after a chmod that gives some file one."""
    ram = RamBackend()
    ns = await Namespace.build([("/", ram, False)])
    await ns.setattr(ns.root(), SetAttr(mode=0o777), ROOT)
    loc, handle = await ns.create(ns.root(), "f", O_WRONLY, 0o666, 2000, USER)
    assert isinstance(handle, WriteGuard)
    asked = 0
    real = loc.node.getattr

    async def counted() -> Attr:
        nonlocal asked
        asked += 1
        return await real()

    loc.node.getattr = counted  # type: ignore[method-assign]
    for i in range(100):
        await handle.write(i, b"x")
    assert asked == 0
    other, h2 = await ns.create(ns.root(), "g", O_WRONLY, 0o644, 0, ROOT)
    await h2.close()
    await ns.setattr(other, SetAttr(mode=0o4755), ROOT)  # another file gets set-user-id
    for i in range(100):
        await handle.write(i, b"y")
    assert asked == 1
    await handle.close()
