"""The passthrough backend's own behaviour: ownership models, descriptors, inode numbers,
statfs, open flags, host changes seen through readdir, and start-up errors."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import struct
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ninep.backends.passthrough import PassthroughBackend, PassthroughNode
from ninep.backends.passthrough.hostcalls import NOWAIT, host_open_flags
from ninep.backends.passthrough.inodes import InodeMap
from ninep.backends.registry import BackendConfigError, open_backend
from ninep.vfs.node import Backend, DirEntry, Node, OpenFlags, SetAttr

O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (chown, trusted.*)")


async def opened(path: Path, **options: object) -> PassthroughBackend:
    backend = await open_backend("passthrough", str(path), dict(options))
    assert isinstance(backend, PassthroughBackend)
    return backend


@pytest.fixture
async def export(tmp_path: Path) -> AsyncIterator[tuple[Path, PassthroughBackend]]:
    root = tmp_path / "export"
    root.mkdir()
    backend = await opened(root)
    yield root, backend
    await backend.close()


async def list_all(directory: Node, chunk: int = 100) -> list[DirEntry]:
    out: list[DirEntry] = []
    cookie = 0
    while batch := await directory.readdir(cookie, chunk):
        out += batch
        cookie = batch[-1].cookie
    return out


async def make(directory: Node, name: str, data: bytes = b"", mode: int = 0o644,
               uid: int = 1000, gid: int = 1000) -> Node:
    node, handle = await directory.create(name, OpenFlags(O_RDWR), mode, uid, gid)
    if data:
        assert await handle.write(0, data) == len(data)
    await handle.close()
    return node


def xattrs(path: Path) -> dict[str, bytes]:
    return {n: os.getxattr(path, n, follow_symlinks=False)
            for n in os.listxattr(path, follow_symlinks=False)}


# --- ownership models ------------------------------------------------------------


@needs_root
async def test_passthrough_model_owns_creations_as_the_client_and_chown_applies(
        export: tuple[Path, PassthroughBackend]) -> None:
    root, fs = export
    old = os.umask(0o077)  # the exact mode is set, whatever the server's umask
    try:
        node = await make(fs.root, "f", mode=0o664, uid=1234, gid=4321)
        await fs.root.mkdir("d", 0o2775, 1234, 4321)
        await fs.root.symlink("l", "f", 1234, 4321)
        await fs.root.mknod("p", stat.S_IFIFO | 0o620, 0, 1234, 4321)
    finally:
        os.umask(old)
    for name, mode in (("f", 0o664), ("d", 0o2775), ("p", 0o620)):
        st = os.lstat(root / name)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 4321, mode), name
    assert (os.lstat(root / "l").st_uid, os.lstat(root / "l").st_gid) == (1234, 4321)
    await node.setattr(SetAttr(uid=77, gid=88, mode=0o600))
    st = os.stat(root / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (77, 88, 0o600)
    assert fs.keeps_ownership


async def test_none_model_ignores_ownership_and_leaves_checks_to_the_host(
        tmp_path: Path) -> None:
    fs = await opened(tmp_path, security_model="none")
    try:
        node = await make(fs.root, "f", mode=0o640, uid=1234, gid=4321)
        await node.setattr(SetAttr(uid=55, gid=66))
        st = os.stat(tmp_path / "f")
        assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
        assert stat.S_IMODE(st.st_mode) == 0o640
        assert not fs.keeps_ownership
    finally:
        await fs.close()


async def test_mapped_xattr_stores_what_qemu_stores(tmp_path: Path) -> None:
    fs = await opened(tmp_path, security_model="mapped-xattr")
    try:
        await make(fs.root, "f", b"data", mode=0o4755, uid=1000, gid=100)
        await fs.root.mkdir("d", 0o755, 1001, 101)
        await fs.root.symlink("l", "../target", 1002, 102)
        await fs.root.mknod("c", stat.S_IFCHR | 0o620, os.makedev(4, 64), 0, 5)
        await fs.root.mknod("p", stat.S_IFIFO | 0o600, 0, 1003, 103)
    finally:
        await fs.close()

    def le32(v: int) -> bytes:
        return struct.pack("<I", v)

    assert xattrs(tmp_path / "f") == {"user.virtfs.uid": le32(1000), "user.virtfs.gid": le32(100),
                                     "user.virtfs.mode": le32(stat.S_IFREG | 0o4755)}
    assert xattrs(tmp_path / "d") == {"user.virtfs.uid": le32(1001), "user.virtfs.gid": le32(101),
                                     "user.virtfs.mode": le32(stat.S_IFDIR | 0o755)}
    assert xattrs(tmp_path / "l")["user.virtfs.mode"] == le32(stat.S_IFLNK | 0o777)
    assert (tmp_path / "l").read_bytes() == b"../target"  # a regular file holding the target
    assert xattrs(tmp_path / "c") == {
        "user.virtfs.uid": le32(0), "user.virtfs.gid": le32(5),
        "user.virtfs.mode": le32(stat.S_IFCHR | 0o620),
        "user.virtfs.rdev": struct.pack("<Q", os.makedev(4, 64))}
    assert xattrs(tmp_path / "p")["user.virtfs.rdev"] == struct.pack("<Q", 0)
    for name, host_mode in (("f", 0o100600), ("d", 0o40700), ("l", 0o100600),
                            ("c", 0o100600), ("p", 0o100600)):
        st = os.lstat(tmp_path / name)
        assert (st.st_mode, st.st_uid) == (host_mode, os.geteuid()), name


async def test_mapped_xattr_serves_what_qemu_stored(tmp_path: Path) -> None:
    # a tree as QEMU's mapped-xattr model left it: host files 0600, the truth in xattrs
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "f").chmod(0o600)
    os.setxattr(tmp_path / "f", "user.virtfs.uid", struct.pack("<I", 1000))
    os.setxattr(tmp_path / "f", "user.virtfs.gid", struct.pack("<I", 1000))
    os.setxattr(tmp_path / "f", "user.virtfs.mode", struct.pack("<I", 0o100751))
    os.setxattr(tmp_path / "f", "user.other", b"kept")
    (tmp_path / "link").write_bytes(b"f")
    os.setxattr(tmp_path / "link", "user.virtfs.mode", struct.pack("<I", 0o120777))
    (tmp_path / "fifo").write_bytes(b"")
    os.setxattr(tmp_path / "fifo", "user.virtfs.mode", struct.pack("<I", 0o10644))
    (tmp_path / "plain").write_bytes(b"")  # no xattrs: the host's own attributes
    fs = await opened(tmp_path, security_model="mapped-xattr")
    try:
        f = await fs.root.walk("f")
        attr = await f.getattr()
        assert (attr.mode, attr.uid, attr.gid) == (0o100751, 1000, 1000)
        assert await f.xattr_list() == ["user.other"]  # user.virtfs.* hidden
        await _raises(errno.ENODATA, f.xattr_get("user.virtfs.uid"))
        await _raises(errno.EACCES, f.xattr_set("user.virtfs.uid", b"\0\0\0\0", 0))
        await _raises(errno.EACCES, f.xattr_remove("user.virtfs.mode"))
        link = await fs.root.walk("link")
        assert stat.S_ISLNK((await link.getattr()).mode)
        assert await link.readlink() == "f"
        await _raises(errno.ELOOP, link.open(OpenFlags(O_RDONLY)))
        types = {e.name: e.dtype for e in await list_all(fs.root)}
        assert types == {"f": 8, "link": 10, "fifo": 1, "plain": 8}
        plain = await (await fs.root.walk("plain")).getattr()
        assert plain.uid == os.geteuid() and stat.S_ISREG(plain.mode)
        await f.setattr(SetAttr(mode=0o700, uid=5, gid=6))
        attr = await f.getattr()
        assert (attr.mode, attr.uid, attr.gid) == (0o100700, 5, 6)
        assert os.stat(tmp_path / "f").st_mode == 0o100600  # the host file untouched
        assert fs.keeps_ownership
    finally:
        await fs.close()


async def _raises(code: int, coro: object) -> None:
    with pytest.raises(OSError) as exc:
        await coro  # type: ignore[misc]
    assert exc.value.errno == code, exc.value


# --- descriptors -----------------------------------------------------------------


async def test_a_tiny_descriptor_budget_closes_and_reopens_by_name(tmp_path: Path) -> None:
    for i in range(40):
        sub = tmp_path / f"d{i}"
        sub.mkdir()
        (sub / "f").write_bytes(f"file {i}".encode())
    fs = await opened(tmp_path, max_fds=8)
    try:
        nodes = []
        for i in range(40):
            d = await fs.root.walk(f"d{i}")
            nodes.append((d, await d.walk("f")))
        assert fs.fds.count <= 8 + 4  # trimmed at each operation's start, plus headroom
        closed = [f for _d, f in nodes if isinstance(f, PassthroughNode) and f.box.fd < 0]
        assert closed, "nothing was closed under a budget of 8"
        for i, (_d, f) in enumerate(nodes):  # each reopens by parent and name
            handle = await f.open(OpenFlags(O_RDONLY))
            assert bytes(await handle.read(0, 100)) == f"file {i}".encode()
            await handle.close()
        assert fs.fds.count <= 8 + 4
    finally:
        await fs.close()


async def test_the_budget_never_closes_an_unlinked_file(tmp_path: Path) -> None:
    (tmp_path / "doomed").write_bytes(b"still here")
    for i in range(30):
        (tmp_path / f"f{i}").write_bytes(b"")
    fs = await opened(tmp_path, max_fds=8)
    try:
        doomed = await fs.root.walk("doomed")
        assert isinstance(doomed, PassthroughNode)
        os.unlink(tmp_path / "doomed")  # by someone on the host
        others = [await fs.root.walk(f"f{i}") for i in range(30)]
        assert doomed.box.fd >= 0, "the budget closed a descriptor that cannot be reopened"
        assert (await doomed.getattr()).nlink == 0
        handle = await doomed.open(OpenFlags(O_RDONLY))
        assert bytes(await handle.read(0, 100)) == b"still here"
        await handle.close()
        assert len(others) == 30
    finally:
        await fs.close()


async def test_descriptors_are_closed_when_nodes_are_dropped(
        export: tuple[Path, PassthroughBackend]) -> None:
    root, fs = export
    for i in range(20):
        (root / f"f{i}").write_bytes(b"")
    before = fs.fds.count
    for i in range(20):
        await fs.root.walk(f"f{i}")  # dropped at once: no fid holds it
    assert fs.fds.count == before


async def test_open_files_follow_host_renames_and_unlinks(
        export: tuple[Path, PassthroughBackend]) -> None:
    root, fs = export
    node = await make(fs.root, "f", b"12345")
    handle = await node.open(OpenFlags(O_RDWR))
    (root / "sub").mkdir()
    os.rename(root / "f", root / "sub" / "g")
    assert await handle.write(5, b"678") == 3
    assert (root / "sub" / "g").read_bytes() == b"12345678"
    os.unlink(root / "sub" / "g")
    assert bytes(await handle.read(0, 100)) == b"12345678"
    await node.setattr(SetAttr(size=2))  # ftruncate-like, on the unlinked file
    assert (await node.getattr()).size == 2
    await handle.close()


# --- identity, statfs ------------------------------------------------------------


async def test_inode_numbers_are_the_host_ones_and_survive_a_restart(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    (tmp_path / "d").mkdir()
    seen = []
    for _ in range(2):
        fs = await opened(tmp_path)
        seen.append([(await (await fs.root.walk(n)).getattr()).ino for n in ("f", "d")])
        await fs.close()
    assert seen[0] == seen[1] == [os.stat(tmp_path / "f").st_ino, os.stat(tmp_path / "d").st_ino]


def test_inode_map_keeps_filesystems_apart_and_fits_48_bits() -> None:
    first, again = InodeMap(root_dev=2049), InodeMap(root_dev=2049)
    numbers = {first(2049, 12), first(41, 12), first(42, 12), first(2049, 2**45)}
    assert len(numbers) == 4 and all(0 < n < 2**48 for n in numbers)
    assert first(2049, 12) == 12
    assert again(42, 12) == first(42, 12)  # a slot from st_dev, not from the order of meeting


async def test_statfs_passes_the_host_figures(export: tuple[Path, PassthroughBackend]) -> None:
    root, fs = export
    got = await fs.root.statfs()
    host = os.statvfs(root)
    assert (got.bsize, got.blocks, got.files, got.namelen) == \
        (host.f_bsize, host.f_blocks, host.f_files, host.f_namemax)
    magic = subprocess.run(["stat", "-f", "-c", "%t", str(root)], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert got.fstype == int(magic, 16)


# --- opening ---------------------------------------------------------------------


def test_open_flags_are_translated_and_filtered_as_qemu_does() -> None:
    dotl = 0o2 | 0o100 | 0o200 | 0o400 | 0o1000 | 0o2000 | 0o20000 | 0o40000 | 0o400000
    flags = host_open_flags(dotl)
    assert flags & os.O_ACCMODE == os.O_RDWR
    assert flags & os.O_TRUNC and flags & os.O_APPEND and flags & os.O_CLOEXEC
    for dropped in (os.O_CREAT, os.O_EXCL, os.O_DIRECT, os.O_ASYNC):
        assert not flags & dropped
    assert host_open_flags(0o1000000) & os.O_NOATIME
    assert host_open_flags(0o10000) & os.O_DSYNC and host_open_flags(0o4000000) & os.O_SYNC


async def test_o_direct_is_ignored_and_reads_are_stable_views(
        export: tuple[Path, PassthroughBackend]) -> None:
    root, fs = export
    (root / "f").write_bytes(b"a" * 10 + b"b" * 10)
    handle = await (await fs.root.walk("f")).open(OpenFlags(O_RDONLY | 0o40000 | 0o1000000))
    first = await handle.read(3, 7)  # unaligned: no O_DIRECT on the host
    second = await handle.read(10, 7)
    assert bytes(first) == b"a" * 7 and bytes(second) == b"b" * 7
    assert bytes(await handle.read(15, 100)) == b"b" * 5
    assert bytes(await handle.read(20, 100)) == b""
    await handle.close()


async def test_device_nodes_are_never_opened_on_the_host(
        export: tuple[Path, PassthroughBackend]) -> None:
    root, fs = export
    if not ROOT:
        pytest.skip("mknod of a device needs root")
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    node = await fs.root.walk("null")
    assert stat.S_ISCHR((await node.getattr()).mode)
    await _raises(errno.EACCES, node.open(OpenFlags(O_RDONLY)))


@needs_root
async def test_trusted_xattrs_pass_through_as_root(
        export: tuple[Path, PassthroughBackend]) -> None:
    root, fs = export
    node = await make(fs.root, "f")
    await node.xattr_set("trusted.x", b"t", 0)
    assert os.getxattr(root / "f", "trusted.x") == b"t"
    assert "trusted.x" in await node.xattr_list()


# --- readdir ---------------------------------------------------------------------


async def test_readdir_resumes_across_host_changes(export: tuple[Path, PassthroughBackend]) -> None:
    root, fs = export
    for i in range(3000):  # large enough to be scanned in a thread
        (root / f"old{i:04d}").write_bytes(b"")
    first = await fs.root.readdir(0, 1000)
    for i in range(0, 3000, 3):
        os.unlink(root / f"old{i:04d}")
    for i in range(500):
        (root / f"new{i:03d}").write_bytes(b"")
    seen = [e.name for e in first]
    cookie = first[-1].cookie
    while batch := await fs.root.readdir(cookie, 333):
        seen += [e.name for e in batch]
        cookie = batch[-1].cookie
    assert len(seen) == len(set(seen))
    survivors = {f"old{i:04d}" for i in range(3000) if i % 3}
    assert survivors <= set(seen)
    assert {e.name for e in await list_all(fs.root, 500)} == \
        survivors | {f"new{i:03d}" for i in range(500)}


# --- start-up --------------------------------------------------------------------


@pytest.mark.parametrize("make_source,needle", [
    (lambda p: p / "missing", "no such directory"),
    (lambda p: (p / "file").write_bytes(b"") or p / "file", "not a directory"),
])
async def test_a_bad_source_fails_at_start_naming_it(tmp_path: Path, make_source: object,
                                                     needle: str) -> None:
    source = make_source(tmp_path)  # type: ignore[operator]
    with pytest.raises(BackendConfigError) as exc:
        await open_backend("passthrough", str(source))
    assert str(source) in str(exc.value) and needle in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("options,needle", [
    ({"security_model": "mapped"}, "security_model"),
    ({"max_fds": "1000000000"}, "max_fds"),
    ({"max_fds": "2"}, "max_fds"),
    ({"bogus": "1"}, "unknown option 'bogus'"),
])
async def test_bad_options_fail_at_start(tmp_path: Path, options: dict[str, object],
                                         needle: str) -> None:
    with pytest.raises(BackendConfigError, match=needle):
        await open_backend("passthrough", str(tmp_path), options)


async def test_relative_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendConfigError, match="absolute"):
        await open_backend("passthrough", "relative/dir")


async def test_read_only_export_refuses_changes_and_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    fs: Backend = await open_backend("passthrough", str(tmp_path), read_only=True)
    try:
        f = await fs.root.walk("f")
        await _raises(errno.EROFS, f.open(OpenFlags(O_WRONLY)))
        await _raises(errno.EROFS, fs.root.mkdir("d", 0o755, 0, 0))
        assert sorted(os.listdir(tmp_path)) == ["f"]
    finally:
        await fs.close()


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["create", "unlink", "page"]),
                          st.integers(0, 59), st.booleans()), min_size=1, max_size=40))
async def test_readdir_cookies_hold_under_any_interleaving(
        tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int, bool]]) -> None:
    root = tmp_path_factory.mktemp("cookies")
    for i in range(0, 60, 2):
        (root / f"n{i}").write_bytes(b"")
    fs = await opened(root)
    try:
        existed = set(os.listdir(root))
        churned: set[str] = set()
        seen: list[str] = []
        cookie = 0
        done = False
        for op, n, by_host in [*steps, ("page", 0, False)] + [("page", 0, False)] * 60:
            name = f"n{n}"
            if op == "create" and not (root / name).exists():
                if by_host:
                    (root / name).write_bytes(b"")
                else:
                    await make(fs.root, name)
            elif op == "unlink" and (root / name).exists():
                existed.discard(name)  # only names that existed throughout must be listed
                churned.add(name)
                if by_host:
                    os.unlink(root / name)
                else:
                    await fs.root.unlink(name, False)
            elif op == "page" and not done:
                batch = await fs.root.readdir(cookie, 7)
                done = not batch
                seen += [e.name for e in batch]
                cookie = batch[-1].cookie if batch else cookie
        assert done
        # a name removed and made again is a new entry, which may be listed again
        stable = [name for name in seen if name not in churned]
        assert len(stable) == len(set(stable)), "an entry was listed twice"
        assert existed <= set(seen), f"skipped: {sorted(existed - set(seen))}"
    finally:
        await fs.close()


async def test_cold_reads_go_to_a_thread_but_end_of_file_does_not(
        export: tuple[Path, PassthroughBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    root, fs = export
    data = os.urandom(1 << 20)
    (root / "f").write_bytes(data)
    hops: list[str] = []
    real = fs.in_thread

    async def counting(func: object, *args: object) -> object:
        hops.append(getattr(func, "__name__", "?"))
        return await real(func, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(fs, "in_thread", counting)
    handle = await (await fs.root.walk("f")).open(OpenFlags(O_RDONLY))
    assert bytes(await handle.read(1 << 20, 4096)) == b""  # end of file: answered inline
    assert hops == []
    # Whether the host's page cache holds a page is the host's business (fadvise may not
    # evict, and a RWF_NOWAIT miss starts readahead), so the host's answers are staged:
    # "would block" for the whole range, then only the first page cached.
    cached = {"pages": 0}
    real_preadv = os.preadv

    def staged(fd: int, buffers: list[bytearray], offset: int, flags: int = 0) -> int:
        if flags & NOWAIT:
            if not cached["pages"]:
                raise BlockingIOError(errno.EAGAIN, "not cached")
            return real_preadv(fd, [memoryview(buffers[0])[:4096]], offset)  # one page "hit"
        return real_preadv(fd, buffers, offset, flags)

    monkeypatch.setattr(os, "preadv", staged)
    assert bytes(await handle.read(4096, 65536)) == data[4096:4096 + 65536]
    assert hops == ["_read_blocking"], "a read of uncached data ran on the event loop"
    cached["pages"] = 1
    assert bytes(await handle.read(8192, 65536)) == data[8192:8192 + 65536]
    assert hops == ["_read_blocking"] * 2, "the uncached rest of a read ran on the event loop"
    monkeypatch.setattr(os, "preadv", real_preadv)
    await handle.close()


async def test_a_budget_full_of_unlinked_files_recovers_once_they_are_gone(
        tmp_path: Path) -> None:
    for i in range(20):
        (tmp_path / f"gone{i}").write_bytes(b"")
        (tmp_path / f"kept{i}").write_bytes(b"")
        (tmp_path / f"fresh{i}").write_bytes(b"")
    fs = await opened(tmp_path, max_fds=8)
    try:
        gone = [await fs.root.walk(f"gone{i}") for i in range(20)]
        assert any(isinstance(g, PassthroughNode) and g.box.fd < 0 for g in gone)
        for i in range(20):  # through the backend: each held node is reopened first
            await fs.root.unlink(f"gone{i}", False)
        kept = [await fs.root.walk(f"kept{i}") for i in range(20)]
        assert fs.fds.count > 8  # over budget: unlinked files are never closed
        for node in gone:
            assert (await node.getattr()).nlink == 0
        del gone, node
        for node in kept:  # each still works (reopened by name when it was closed)
            assert (await node.getattr()).nlink == 1
        more = [await fs.root.walk(f"fresh{i}") for i in range(20)]
        assert fs.fds.count <= 8 + 4  # trimming resumed once the unlinked files were let go
        assert len(more) == 20
    finally:
        await fs.close()


async def test_an_open_file_keeps_its_node_descriptor_under_a_tiny_budget(
        tmp_path: Path) -> None:
    (tmp_path / "open").write_bytes(b"data")
    for i in range(30):
        (tmp_path / f"f{i}").write_bytes(b"")
    fs = await opened(tmp_path, max_fds=8)
    try:
        node = await fs.root.walk("open")
        handle = await node.open(OpenFlags(O_RDONLY))
        others = [await fs.root.walk(f"f{i}") for i in range(30)]
        os.unlink(tmp_path / "open")  # by the host: no chance to reopen it first
        assert (await node.getattr()).nlink == 0  # open-unlink: the fid still works
        assert bytes(await handle.read(0, 10)) == b"data"
        await handle.close()
        assert len(others) == 30
    finally:
        await fs.close()


@needs_root
async def test_a_second_filesystem_below_the_export_gets_its_own_inode_numbers(
        tmp_path: Path) -> None:
    sub = tmp_path / "tmpfs"
    sub.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(sub)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (sub / "f").write_bytes(b"")
        seen = []
        for _ in range(2):  # and the same numbers after a restart
            fs = await opened(tmp_path)
            mounted = await fs.root.walk("tmpfs")
            inner = await mounted.walk("f")
            seen.append(((await mounted.getattr()).ino, (await inner.getattr()).ino,
                         (await fs.root.getattr()).ino))
            await fs.close()
        assert seen[0] == seen[1]
        assert len(set(seen[0])) == 3 and all(0 < n < 2**48 for n in seen[0])
        assert seen[0][0] & (2**40 - 1) == os.stat(sub).st_ino  # the host number, in a slot
        assert seen[0][0] >> 40 != 0 and seen[0][2] >> 40 == 0
    finally:
        subprocess.run(["umount", str(sub)], check=False)


async def test_reads_waiting_on_fifos_do_not_hold_up_file_reads(
        export: tuple[Path, PassthroughBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    root, fs = export
    os.mkfifo(root / "fifo")
    data = os.urandom(65536)
    (root / "file").write_bytes(data)
    writer = os.open(root / "fifo", os.O_RDWR | os.O_NONBLOCK)  # a writer that stays silent
    try:
        fifo = await fs.root.walk("fifo")
        readers = [await fifo.open(OpenFlags(O_RDONLY)) for _ in range(6)]  # more than the file threads
        waiting = [asyncio.ensure_future(r.read(0, 100)) for r in readers]
        await asyncio.sleep(0.1)
        assert not any(w.done() for w in waiting)
        real_preadv = os.preadv
        hops: list[str] = []
        real_in_thread = fs.in_thread

        def cold(fd: int, buffers: list[memoryview], offset: int, flags: int = 0) -> int:
            if flags & NOWAIT:  # the host says "not cached": the read needs a file thread
                raise BlockingIOError(errno.EAGAIN, "not cached")
            return real_preadv(fd, buffers, offset, flags)

        async def counting(func: object, *args: object) -> object:
            hops.append(getattr(func, "__name__", "?"))
            return await real_in_thread(func, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "preadv", cold)
        monkeypatch.setattr(fs, "in_thread", counting)
        handle = await (await fs.root.walk("file")).open(OpenFlags(O_RDONLY))
        assert bytes(await asyncio.wait_for(handle.read(0, 65536), 10)) == data
        assert hops == ["_read_blocking"], "the file read did not go to a file thread"
        monkeypatch.setattr(os, "preadv", real_preadv)
        await handle.close()
        os.write(writer, b"y" * 600)
        assert [bytes(b) for b in await asyncio.wait_for(asyncio.gather(*waiting), 10)] == \
            [b"y" * 100] * 6
        for r in readers:
            await r.close()
    finally:
        os.close(writer)
