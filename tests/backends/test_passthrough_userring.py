"""A user's opens of regular files through an io_uring personality (userring.py): the
kernel checks them for the user, the event loop's thread never switches for them, and
whatever the ring cannot prove goes the authoritative way (fsident's switch)."""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ninep.backends.passthrough import PassthroughBackend, fsident, userring
from ninep.backends.registry import open_backend
from ninep.vfs import namespace
from ninep.vfs.namespace import Location, Namespace
from ninep.vfs.node import Cred

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="switching identity needs root"),
    pytest.mark.skipif(not userring.ring_works(), reason="no io_uring here"),
]

USER = Cred(1000, 1000, frozenset({1000}))
OTHER = 2000
O_RDONLY, O_WRONLY, O_TRUNC = 0, 1, 0o1000


@pytest.fixture
def export(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    root.mkdir()
    os.chmod(root, 0o755)
    for name, mode in (("private", 0o600), ("public", 0o644), ("writable", 0o666)):
        (root / name).write_bytes(name.encode())
        os.chown(root / name, OTHER, OTHER)
        os.chmod(root / name, mode)
    return root


@pytest.fixture
async def ns(export: Path) -> AsyncIterator[Namespace]:
    backend = await open_backend("passthrough", str(export),
                                 {"security_model": "passthrough"}, False)
    assert isinstance(backend, PassthroughBackend) and backend.host_identity
    yield await Namespace.build([("/", backend, False)])
    await backend.close()


@pytest.fixture
def switches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The uids the thread switched to (fsident._enter), in order."""
    seen: list[int] = []
    enter = fsident._enter

    def counted(cred: fsident.HostCred) -> None:
        seen.append(cred.uid)
        enter(cred)

    monkeypatch.setattr(fsident, "_enter", counted)
    return seen


async def at(ns: Namespace, name: str) -> Location:
    return await ns.walk(ns.root(), name, USER)


def test_the_kernel_checks_a_ring_open_for_the_user(export: Path) -> None:
    user = fsident.HostCred(1000, 1000, [1000])
    dirfd = os.open(export, os.O_PATH | os.O_DIRECTORY)
    try:
        assert userring.open_as(user, dirfd, "private", os.O_RDONLY | os.O_CLOEXEC) is None
        assert userring.open_as(user, dirfd, "public", os.O_WRONLY | os.O_CLOEXEC) is None
        fd = userring.open_as(user, dirfd, "public", os.O_RDONLY | os.O_CLOEXEC)
        assert fd is not None
        try:
            assert os.read(fd, 100) == b"public"
        finally:
            os.close(fd)
        os.symlink("public", export / "link")  # never followed
        assert userring.open_as(user, dirfd, "link", os.O_RDONLY | os.O_CLOEXEC) is None
        # root's open of the same file is not refused: the personality is the user's
        fd = os.open("private", os.O_RDONLY, dir_fd=dirfd)
        os.close(fd)
    finally:
        os.close(dirfd)


async def test_a_users_opens_switch_the_thread_once(ns: Namespace,
                                                    switches: list[int]) -> None:
    loc, writable = await at(ns, "public"), await at(ns, "writable")
    switches.clear()  # the walks' (a search grant's first lookup)
    for _ in range(5):
        handle = await ns.open(loc, O_RDONLY, USER)
        assert bytes(await handle.read(0, 100)) == b"public"
        await handle.close()
    handle = await ns.open(writable, O_WRONLY, USER)
    assert switches in ([], [1000])  # at most once: the user's personality registered
    switches.clear()
    assert await handle.write(0, b"W") == 1  # a write switches as before (userfiles.py)
    await handle.close()
    assert switches and set(switches) == {1000}
    assert fsident.thread_cred() is None


async def test_what_the_ring_refuses_is_answered_by_the_switched_open(
        ns: Namespace, switches: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(namespace, "check_access", lambda *args, **kwargs: None)  # the kernel's
    loc = await at(ns, "private")
    switches.clear()
    with pytest.raises(OSError) as exc:
        await ns.open(loc, O_RDONLY, USER)
    assert exc.value.errno == errno.EACCES
    assert switches[-1] == 1000  # the errno came from an open under the user's fsuid


async def test_a_name_the_host_moved_opens_the_file_walked_to(
        ns: Namespace, export: Path) -> None:
    loc = await at(ns, "public")
    os.rename(export / "public", export / "moved")
    (export / "public").write_bytes(b"an impostor")
    handle = await ns.open(loc, O_RDONLY, USER)
    assert bytes(await handle.read(0, 100)) == b"public"
    await handle.close()


async def test_a_truncating_open_switches(ns: Namespace, export: Path,
                                          switches: list[int]) -> None:
    loc = await at(ns, "writable")
    switches.clear()
    handle = await ns.open(loc, O_WRONLY | O_TRUNC, USER)
    await handle.close()
    assert (export / "writable").read_bytes() == b""
    assert switches == [1000]


async def test_without_a_ring_opens_switch(ns: Namespace, switches: list[int],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    refused = userring._PerThread()
    refused.refused = True  # as after io_uring_setup failed (a seccomp filter, a sysctl)
    monkeypatch.setattr(userring, "_local", refused)
    loc = await at(ns, "public")
    switches.clear()
    for _ in range(2):
        handle = await ns.open(loc, O_RDONLY, USER)
        await handle.close()
    assert switches == [1000, 1000]


async def test_a_fifo_put_in_the_files_place_never_blocks_the_open(
        ns: Namespace, export: Path) -> None:
    loc = await at(ns, "public")
    os.rename(export / "public", export / "kept")
    os.mkfifo(export / "public", 0o666)  # no writer: a blocking open would wait for ever
    os.chown(export / "public", 1000, 1000)
    handle = await ns.open(loc, O_RDONLY, USER)
    assert bytes(await handle.read(0, 100)) == b"public"
    await handle.close()


def test_a_thread_that_made_a_ring_leaves_no_descriptor_behind() -> None:
    import gc
    import threading

    gc.collect()  # what earlier tests left for the collector is not this test's
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        thread = threading.Thread(target=userring.ring_works)
        thread.start()
        thread.join()
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_real_server_opens_a_users_files_through_its_ring(export: Path,
                                                            tmp_path: Path) -> None:
    from ninep.wire import messages as m
    from tests.conftest import RawPeer
    from tests.hostile.serverproc import serve_process

    with serve_process(["--mount", f"/=passthrough:{export}"], tmp_path) as server:
        peer = RawPeer(server.address)
        try:
            assert isinstance(peer.handshake(fid=1, n_uname=1000), m.Rattach)
            assert isinstance(peer.rpc(m.Twalk(1, 2, ("public",))), m.Rwalk)
            assert isinstance(peer.rpc(m.Tlopen(2, O_RDONLY)), m.Rlopen)
            read = peer.rpc(m.Tread(2, 0, 100))
            assert isinstance(read, m.Rread) and bytes(read.data) == b"public", read
            assert isinstance(peer.rpc(m.Twalk(1, 3, ("private",))), m.Rwalk)
            refused = peer.rpc(m.Tlopen(3, O_RDONLY))
            assert isinstance(refused, m.Rlerror) and refused.ecode == errno.EACCES, refused
            links = [os.readlink(f"/proc/{server.proc.pid}/fd/{fd}")
                     for fd in os.listdir(f"/proc/{server.proc.pid}/fd")]
            assert "anon_inode:[io_uring]" in links
        finally:
            peer.close()
        assert "Traceback" not in server.log_text()
