"""Passthrough host calls under the attaching user's fsuid/fsgid/groups (fsident.py): with
vfs/'s Python checks taken away, the kernel still refuses what the user may not do."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ninep.backends.passthrough import PassthroughBackend
from ninep.backends.passthrough.ownership import PassthroughOwnership
from ninep.backends.registry import open_backend
from ninep.vfs import namespace
from ninep.vfs.namespace import Location, Namespace
from ninep.vfs.node import UTIME_NOW, Cred, SetAttr
from ninep.wire import messages as m
from tests.conftest import RawPeer
from tests.hostile.serverproc import serve_process

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching identity needs root")

USER = Cred(1000, 1000, frozenset({1000}))
OTHER = 2000
O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
_libc = ctypes.CDLL(None, use_errno=True)


def thread_fsuid() -> int:
    return int(_libc.setfsuid(0xFFFFFFFF))  # -1 changes nothing and answers the current


@pytest.fixture
def export(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    root.mkdir()
    os.chmod(root, 0o755)
    private = root / "private"
    private.write_bytes(b"not yours\n")
    os.chown(private, OTHER, OTHER)
    os.chmod(private, 0o600)
    closed = root / "closed"
    closed.mkdir()
    (closed / "inside").write_bytes(b"behind a closed door\n")
    os.chown(closed, OTHER, OTHER)
    os.chmod(closed, 0o700)
    public = root / "public"
    public.write_bytes(b"0123456789")
    os.chown(public, OTHER, OTHER)
    os.chmod(public, 0o644)
    shared = root / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    return root


@pytest.fixture
async def ns(export: Path) -> AsyncIterator[Namespace]:
    backend = await open_backend("passthrough", str(export),
                                 {"security_model": "passthrough"}, False)
    assert isinstance(backend, PassthroughBackend) and backend.host_identity
    yield await Namespace.build([("/", backend, False)])
    await backend.close()


@pytest.fixture
def no_python_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug above the kernel: vfs/ lets everything through."""
    monkeypatch.setattr(namespace, "check_access", lambda *args, **kwargs: None)
    monkeypatch.setattr(namespace, "check_owner", lambda *args, **kwargs: None)


async def at(ns: Namespace, *names: str, cred: Cred = USER) -> Location:
    loc = ns.root()
    for name in names:
        loc = await ns.walk(loc, name, cred)
    return loc


async def refused(coro: object, code: int) -> None:
    with pytest.raises(OSError) as exc:
        await coro  # type: ignore[misc]
    assert exc.value.errno == code, exc.value
    assert thread_fsuid() == 0, "the event loop's thread was left under the user's fsuid"


@pytest.mark.usefixtures("no_python_checks")
async def test_the_kernel_refuses_another_users_0600_file(ns: Namespace) -> None:
    loc = await at(ns, "private")
    await refused(ns.open(loc, O_RDONLY, USER), errno.EACCES)
    await refused(ns.open(await at(ns, "public"), O_WRONLY, USER), errno.EACCES)
    await refused(ns.walk(await at(ns, "closed"), "inside", USER), errno.EACCES)
    await refused(ns.open(await at(ns, "closed"), O_RDONLY, USER), errno.EACCES)
    await refused(ns.setattr(loc, SetAttr(mode=0o666), USER), errno.EPERM)
    await refused(ns.unlink(ns.root(), "private", False, USER), errno.EACCES)
    await refused(ns.mkdir(ns.root(), "mine", 0o755, 1000, USER), errno.EACCES)
    os.setxattr(ns.root().node.fs.path + "/private", "user.note", b"x")  # type: ignore[attr-defined]
    await refused(ns.xattr_get(loc, "user.note", USER), errno.EACCES)  # needs read access
    # a truncate goes to a pool thread, which takes the identity of the request that sent
    # it: a thread that served root serves the user as the user, and root as root again
    root = Cred(0, 0)
    await ns.setattr(await at(ns, "private", cred=root), SetAttr(size=3), root)
    await refused(ns.setattr(await at(ns, "public"), SetAttr(size=0), USER), errno.EACCES)
    await ns.setattr(await at(ns, "private", cred=root), SetAttr(size=2), root)
    export = Path(ns.root().node.fs.path)  # type: ignore[attr-defined]
    assert (export / "public").stat().st_size == 10
    assert (export / "private").read_bytes() == b"no"
    # root keeps root's rights
    handle = await ns.open(await at(ns, "private", cred=Cred(0, 0)), O_RDONLY, Cred(0, 0))
    assert bytes(await handle.read(0, 100)) == b"no"
    await handle.close()


async def test_files_are_made_with_the_users_ids_by_the_kernel(
        ns: Namespace, export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # nothing chowns afterwards: what the files get, the kernel gave them
    monkeypatch.setattr(PassthroughOwnership, "own_new", lambda *args, **kwargs: None)
    shared = await at(ns, "shared")
    _, handle = await ns.create(shared, "file", O_RDWR, 0o644, 1000, USER)
    await handle.close()
    await ns.mkdir(shared, "dir", 0o755, 1000, USER)
    await ns.symlink(shared, "link", "file", 1000, USER)
    for name in ("file", "dir", "link"):
        st = os.lstat(export / "shared" / name)
        assert (st.st_uid, st.st_gid) == (1000, 1000), name
    assert thread_fsuid() == 0


async def test_a_group_the_user_is_not_in_is_refused_by_the_kernel(
        ns: Namespace, export: Path) -> None:
    shared = await at(ns, "shared")
    await refused(ns.create(shared, "wheel", O_RDWR, 0o644, 0, USER), errno.EPERM)
    assert not os.path.exists(export / "shared" / "wheel")


async def test_a_write_by_a_user_clears_the_setuid_bit(ns: Namespace, export: Path) -> None:
    path = export / "shared" / "suid"
    path.write_bytes(b"#!/bin/sh\n")
    os.chmod(path, 0o4777)  # owned by root; anybody may write
    handle = await ns.open(await at(ns, "shared", "suid"), O_WRONLY, USER)
    assert await handle.write(0, b"#!/bin/true") == 11
    await handle.close()
    assert not os.stat(path).st_mode & stat.S_ISUID  # file_remove_privs: no CAP_FSETID
    assert thread_fsuid() == 0


@pytest.mark.parametrize("model", ["mapped-xattr", "none"])
async def test_other_models_keep_the_servers_identity(export: Path, model: str) -> None:
    backend = await open_backend("passthrough", str(export), {"security_model": model}, False)
    assert isinstance(backend, PassthroughBackend)
    assert not backend.host_identity
    await backend.close()


async def test_a_server_not_running_as_root_switches_nothing(
        export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    backend = await open_backend("passthrough", str(export), {"security_model": "none"}, False)
    assert isinstance(backend, PassthroughBackend)
    assert not backend.host_identity
    await backend.close()


def test_a_real_server_creates_as_the_attaching_user(export: Path, tmp_path: Path) -> None:
    with serve_process(["--mount", f"/=passthrough:{export}"], tmp_path) as server:
        peer = RawPeer(server.address)
        try:
            assert isinstance(peer.handshake(fid=1, n_uname=1000), m.Rattach)
            assert isinstance(peer.rpc(m.Twalk(1, 2, ("shared",))), m.Rwalk)
            made = peer.rpc(m.Tlcreate(2, "made", O_RDWR, 0o644, 1000))
            assert isinstance(made, m.Rlcreate), made
            assert isinstance(peer.rpc(m.Twalk(1, 3, ("shared",))), m.Rwalk)
            wheel = peer.rpc(m.Tlcreate(3, "wheel", O_RDWR, 0o644, 0))
            assert isinstance(wheel, m.Rlerror) and wheel.ecode == errno.EPERM, wheel
        finally:
            peer.close()
        st = os.stat(export / "shared" / "made")
        assert (st.st_uid, st.st_gid) == (1000, 1000)
        assert not os.path.exists(export / "shared" / "wheel")
        assert "Traceback" not in server.log_text()


@pytest.mark.usefixtures("no_python_checks")
async def test_a_search_grant_ends_when_the_directory_changes(
        ns: Namespace, export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ninep.backends.passthrough import fsident
    switches: list[fsident.HostCred] = []
    enter = fsident._enter

    def counted(cred: fsident.HostCred) -> None:
        switches.append(cred)
        enter(cred)

    monkeypatch.setattr(fsident, "_enter", counted)
    door = export / "door"
    door.mkdir()
    (door / "a").write_bytes(b"")
    (door / "b").write_bytes(b"")
    os.chown(door, OTHER, OTHER)
    os.chmod(door, 0o755)
    loc = await at(ns, "door")
    await ns.walk(loc, "a", USER)
    await ns.walk(loc, "b", USER)  # the kernel said yes once: no second switch
    assert len(switches) == 2  # one for the walk into door, one for its first name
    os.chmod(door, 0o700)  # by someone on the host
    await refused(ns.walk(loc, "a", USER), errno.EACCES)


async def test_a_writer_who_is_not_the_owner_may_touch(ns: Namespace, export: Path) -> None:
    path = export / "shared" / "theirs"
    path.write_bytes(b"")
    os.chown(path, OTHER, OTHER)
    os.chmod(path, 0o666)
    os.utime(path, ns=(1, 1))
    loc = await at(ns, "shared", "theirs")
    await ns.setattr(loc, SetAttr(atime_ns=UTIME_NOW, mtime_ns=UTIME_NOW, ctime=True), USER)
    assert os.stat(path).st_mtime_ns > 1
    await refused(ns.setattr(loc, SetAttr(mtime_ns=5), USER), errno.EPERM)  # set times: owner


def test_a_thread_started_under_a_users_identity_serves_root_as_root() -> None:
    # a new thread starts with its creator's credentials: a pool thread spawned by a
    # submit from a user's step must not serve a later root call as that user
    import threading

    from ninep.backends.passthrough import fsident
    seen: list[int] = []
    call = fsident.carry(lambda: seen.append(thread_fsuid()))  # sent as the server
    user = fsident.HostCred(1000, 1000, [1000])
    fsident._enter(user)
    try:
        assert thread_fsuid() == 1000
        worker = threading.Thread(target=call)
        worker.start()  # cloned now, under uid 1000
    finally:
        fsident._leave()
    worker.join()
    assert seen == [0]
    assert thread_fsuid() == 0


async def test_a_writer_truncates_its_0444_file_as_ftruncate_would(
        ns: Namespace, export: Path) -> None:
    # open(O_CREAT|O_RDWR, 0444), write, ftruncate: Linux checks no permission on the
    # descriptor's truncate, and v9fs sends it as Tsetattr(size) on the open fid
    loc, handle = await ns.create(await at(ns, "shared"), "ro", O_RDWR, 0o444, 1000, USER)
    await handle.write(0, b"hello")
    await ns.setattr(loc, SetAttr(size=1), USER, open_for_write=True)
    assert (export / "shared" / "ro").read_bytes() == b"h"
    await handle.close()
    await refused(ns.setattr(loc, SetAttr(size=0), USER, open_for_write=True), errno.EACCES)


def thread_fsgid() -> int:
    return int(_libc.setfsgid(0xFFFFFFFF))


def thread_groups() -> set[int]:
    with open("/proc/thread-self/status") as status:
        for line in status:
            if line.startswith("Groups:"):
                return {int(group) for group in line.split()[1:]}
    raise AssertionError("no Groups line")


@pytest.mark.usefixtures("no_python_checks")
async def test_a_users_groups_never_reach_the_next_user(ns: Namespace, export: Path) -> None:
    # a return to the server leaves a user's supplementary groups on the thread (fsuid 0
    # decides nothing by them): the next user's step must still run with its own only
    path = export / "crew"
    path.write_bytes(b"crew only\n")
    os.chown(path, OTHER, 3000)
    os.chmod(path, 0o640)
    member, outsider = Cred(1000, 1000, frozenset({1000, 3000})), Cred(1001, 1001)
    loc = await at(ns, "crew", cred=member)
    handle = await ns.open(loc, O_RDONLY, member)
    assert bytes(await handle.read(0, 100)) == b"crew only\n"
    await handle.close()
    assert (thread_fsuid(), thread_fsgid()) == (0, 0)  # what root creates is root's
    await refused(ns.open(loc, O_RDONLY, outsider), errno.EACCES)
    handle = await ns.open(loc, O_RDONLY, member)  # and back
    await handle.close()


async def test_a_users_next_step_skips_setgroups(
        ns: Namespace, monkeypatch: pytest.MonkeyPatch) -> None:
    from ninep.backends.passthrough import fsident
    monkeypatch.setattr(fsident, "_keep_groups", True)
    calls: list[tuple[int, ...]] = []
    set_groups = fsident._set_groups

    def counted(cred: fsident.HostCred) -> None:
        calls.append(cred.group_key)
        set_groups(cred)

    monkeypatch.setattr(fsident, "_set_groups", counted)
    loc = await at(ns, "public")
    for _ in range(3):
        handle = await ns.open(loc, O_RDONLY, USER)
        await handle.close()
    assert calls in ([], [(1000,)])  # at most once, if the thread held other groups
    assert thread_groups() == {1000} and thread_fsuid() == 0


async def test_an_export_not_known_to_be_local_restores_the_groups(
        ns: Namespace, export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # on NFS with root squashing (or FUSE, SMB) the server decides by the caller's groups:
    # root's calls there must not carry the last user's
    from ninep.backends.passthrough import fsident
    monkeypatch.setattr(fsident, "_keep_groups", True)
    server_groups = set(fsident._SERVER.group_key)  # os.getgroups() reads this thread's
    handle = await ns.open(await at(ns, "public"), O_RDONLY, USER)
    await handle.close()
    assert thread_groups() == {1000}
    monkeypatch.setattr(fsident, "_fs_type", lambda fd: 0x6969)  # NFS_SUPER_MAGIC
    other = tmp_path / "nfs"
    other.mkdir()
    backend = await open_backend("passthrough", str(other),
                                 {"security_model": "none"}, False)
    try:
        assert not fsident._keep_groups
        assert thread_groups() == server_groups  # at once, on the thread that opened it
        handle = await ns.open(await at(ns, "public"), O_RDONLY, USER)
        await handle.close()
        assert thread_groups() == server_groups and thread_fsuid() == 0
    finally:
        await backend.close()
