"""The shared backend acceptance suite: what every backend promises (vfs/node.py), per backend.

Writable backends start empty and go through the contract's operations; read-only
ones serve the seed tree of factories.py and answer EROFS to every change.
Backend-specific behaviour is tested in each backend's own test module.
"""

from __future__ import annotations

import errno
import stat
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest
from factories import READ_ONLY, SEED_FILES, SEED_HARDLINK, SEED_SYMLINKS, WRITABLE, BackendCase

from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Backend, Cred, DirEntry, Node, OpenFlags, SetAttr

O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
O_TRUNC, O_APPEND = 0o1000, 0o2000
DT_DIR, DT_REG, DT_LNK, DT_FIFO = 4, 8, 10, 1
UID, GID = 1000, 1000


@pytest.fixture(params=WRITABLE, ids=lambda c: c.name)
async def fs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async for backend in _opened(request.param, tmp_path):
        yield backend


@pytest.fixture(params=READ_ONLY, ids=lambda c: c.name)
async def ro(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async for backend in _opened(request.param, tmp_path):
        yield backend


async def _opened(case: BackendCase, scratch: Path) -> AsyncIterator[Backend]:
    case.require()
    backend = await case.make(scratch)
    backend.case = case  # type: ignore[attr-defined]
    try:
        yield backend
    finally:
        await backend.close()
    if case.check is not None:
        case.check(scratch)


def _case(fs: Backend) -> BackendCase:
    return fs.case  # type: ignore[attr-defined,no-any-return]


# --- helpers -------------------------------------------------------------------


async def make_file(directory: Node, name: str, data: bytes = b"", mode: int = 0o644) -> Node:
    node, handle = await directory.create(name, OpenFlags(O_RDWR), mode, UID, GID)
    try:
        written = 0
        while written < len(data):
            written += await handle.write(written, data[written:written + 65536])
    finally:
        await handle.close()
    return node


async def read_all(node: Node, chunk: int = 65536) -> bytes:
    handle = await node.open(OpenFlags(O_RDONLY))
    out = bytearray()
    try:
        while piece := await handle.read(len(out), chunk):
            out += piece
    finally:
        await handle.close()
    return bytes(out)


async def list_all(directory: Node, chunk: int = 1000) -> list[DirEntry]:
    out: list[DirEntry] = []
    cookie = 0
    while batch := await directory.readdir(cookie, chunk):
        out.extend(batch)
        cookie = batch[-1].cookie
    return out


async def names(directory: Node) -> set[str]:
    return {e.name for e in await list_all(directory)}


async def walk(node: Node, path: str) -> Node:
    for part in path.split("/"):
        node = await node.walk(part)
    return node


async def raises(code: int, coro: Awaitable[Any]) -> None:
    with pytest.raises(OSError) as exc:
        await coro
    assert exc.value.errno == code, (errno.errorcode.get(exc.value.errno or 0), exc.value)


# --- writable backends ----------------------------------------------------------


async def test_root_is_a_directory_and_its_own_parent(fs: Backend) -> None:
    attr = await fs.root.getattr()
    assert stat.S_ISDIR(attr.mode) and attr.nlink >= 2
    assert (await (await fs.root.walk("..")).getattr()).ino == attr.ino


async def test_write_read_round_trip_across_many_blocks(fs: Backend) -> None:
    data = bytes(range(251)) * 9000  # 2.2 MB, no block or page alignment
    node = await make_file(fs.root, "big", data)
    assert await read_all(node, 8192 + 13) == data
    assert (await node.getattr()).size == len(data)
    handle = await node.open(OpenFlags(O_RDONLY))
    assert await handle.read(len(data), 100) == b""
    assert await handle.read(len(data) - 5, 100) == data[-5:]
    await handle.close()


async def test_sparse_write_far_past_the_end(fs: Backend) -> None:
    node, handle = await fs.root.create("sparse", OpenFlags(O_RDWR), 0o644, UID, GID)
    far = 3 * 1024 * 1024 * 1024 + 12345  # needs double/triple indirection on ext2 1K blocks
    assert await handle.write(far, b"tail") == 4
    assert await handle.read(far - 4, 8) == b"\0\0\0\0tail"
    assert await handle.read(4096, 16) == bytes(16)
    await handle.close()
    attr = await node.getattr()
    assert attr.size == far + 4
    assert attr.blocks * 512 < 1024 * 1024  # a hole, not 3 GiB of zeros


async def test_open_flags_trunc_and_append(fs: Backend) -> None:
    node = await make_file(fs.root, "f", b"0123456789")
    handle = await node.open(OpenFlags(O_WRONLY | O_APPEND))
    await handle.write(0, b"AB")
    await handle.close()
    assert await read_all(node) == b"0123456789AB"
    handle = await node.open(OpenFlags(O_WRONLY | O_TRUNC))
    await handle.close()
    assert (await node.getattr()).size == 0


async def test_truncate_down_and_up(fs: Backend) -> None:
    data = b"x" * 70000
    node = await make_file(fs.root, "t", data)
    await node.setattr(SetAttr(size=10))
    assert await read_all(node) == b"x" * 10
    await node.setattr(SetAttr(size=50000))
    assert await read_all(node) == b"x" * 10 + bytes(49990)


async def test_create_and_mkdir_refuse_existing_names(fs: Backend) -> None:
    await make_file(fs.root, "f")
    await fs.root.mkdir("d", 0o755, UID, GID)
    await raises(errno.EEXIST, fs.root.create("f", OpenFlags(O_RDWR), 0o644, UID, GID))
    await raises(errno.EEXIST, fs.root.mkdir("d", 0o755, UID, GID))
    await raises(errno.EEXIST, fs.root.symlink("d", "x", UID, GID))


async def test_attrs_of_a_new_file(fs: Backend) -> None:
    node = await make_file(fs.root, "f", b"abc", mode=0o640)
    attr = await node.getattr()
    assert stat.S_ISREG(attr.mode) and stat.S_IMODE(attr.mode) == 0o640
    assert (attr.size, attr.nlink) == (3, 1)
    assert attr.mtime_ns > 0 and attr.ino < 2**48


async def test_mkdir_rmdir_and_directory_link_counts(fs: Backend) -> None:
    before = (await fs.root.getattr()).nlink
    d = await fs.root.mkdir("d", 0o755, UID, GID)
    await d.mkdir("sub", 0o700, UID, GID)
    assert (await fs.root.getattr()).nlink == before + 1
    assert (await d.getattr()).nlink == 3
    await raises(errno.ENOTEMPTY, fs.root.unlink("d", True))
    await raises(errno.EISDIR, fs.root.unlink("d", False))
    await d.unlink("sub", True)
    await fs.root.unlink("d", True)
    assert (await fs.root.getattr()).nlink == before
    await raises(errno.ENOENT, fs.root.walk("d"))


async def test_unlink_errors(fs: Backend) -> None:
    await make_file(fs.root, "f")
    await raises(errno.ENOENT, fs.root.unlink("nope", False))
    await raises(errno.ENOTDIR, fs.root.unlink("f", True))
    node = await fs.root.walk("f")
    await raises(errno.ENOTDIR, node.walk("x"))


async def test_readdir_lists_types_and_resumes(fs: Backend) -> None:
    await make_file(fs.root, "file")
    await fs.root.mkdir("dir", 0o755, UID, GID)
    await fs.root.symlink("link", "file", UID, GID)
    for i in range(300):
        await make_file(fs.root, f"n{i:03d}-" + "x" * 40)
    entries = await list_all(fs.root, chunk=7)
    by_name = {e.name: e for e in entries}
    assert len(entries) == len(by_name) == 303, "an entry was listed twice or missed"
    assert "." not in by_name and ".." not in by_name
    assert (by_name["file"].dtype, by_name["dir"].dtype, by_name["link"].dtype) == \
        (DT_REG, DT_DIR, DT_LNK)
    assert by_name["file"].ino == (await (await fs.root.walk("file")).getattr()).ino
    assert all(0 < e.cookie < 2**62 for e in entries)


async def test_readdir_resumes_correctly_across_creates_and_unlinks(fs: Backend) -> None:
    for i in range(200):
        await make_file(fs.root, f"old{i:03d}")
    seen: list[str] = []
    batch = await fs.root.readdir(0, 50)
    seen += [e.name for e in batch]
    for i in range(0, 200, 2):  # remove half, some already listed, some not
        await fs.root.unlink(f"old{i:03d}", False)
    for i in range(100):
        await make_file(fs.root, f"new{i:03d}")
    cookie = batch[-1].cookie
    while batch := await fs.root.readdir(cookie, 50):
        seen += [e.name for e in batch]
        cookie = batch[-1].cookie
    assert len(seen) == len(set(seen)), "an entry was listed twice"
    survivors = {f"old{i:03d}" for i in range(1, 200, 2)}
    assert survivors <= set(seen), f"skipped: {sorted(survivors - set(seen))[:5]}"


async def test_a_listing_ends_while_entries_are_created_between_batches(fs: Backend) -> None:
    # Linux's tmpfs never ended such a listing until its fix (xfstests generic/736):
    # each batch found the two newest entries again. vfs/ ends it at Node.listing_end.
    await fs.root.mkdir("sub", 0o755, UID, GID)
    ns = await Namespace.build([("/", fs, False)])
    for loc in (ns.root(), await ns.walk(ns.root(), "sub", Cred(0, 0))):
        start = {f"old{i:02d}" for i in range(20)} | ({"sub"} if loc == ns.root() else set())
        for name in sorted(start - {"sub"}):
            await make_file(loc.node, name)
        end = await ns.listing_end(loc)
        seen: list[str] = []
        cookie, made = 0, 0
        while batch := await ns.readdir(loc, cookie, 3, end):
            seen += [e.name for e in batch if e.name not in (".", "..")]
            cookie = batch[-1].cookie
            for _ in range(2):
                await make_file(loc.node, f"new{made:04d}")
                made += 1
            assert made < 200, f"the listing did not end ({len(seen)} names so far)"
        assert len(seen) == len(set(seen)), "an entry was listed twice"
        assert start <= set(seen), f"skipped {sorted(start - set(seen))[:5]}"


async def test_rename_file_over_file(fs: Backend) -> None:
    await make_file(fs.root, "a", b"new")
    await make_file(fs.root, "b", b"old")
    await fs.root.rename("a", fs.root, "b")
    assert await names(fs.root) == {"b"}
    assert await read_all(await fs.root.walk("b")) == b"new"


async def test_rename_directories(fs: Backend) -> None:
    a = await fs.root.mkdir("a", 0o755, UID, GID)
    await a.mkdir("inner", 0o755, UID, GID)
    await make_file(a, "f", b"data")
    b = await fs.root.mkdir("b", 0o755, UID, GID)
    await fs.root.mkdir("empty", 0o755, UID, GID)
    await fs.root.rename("empty", b, "moved")  # a directory into another: '..' moves
    assert (await b.getattr()).nlink == 3
    moved = await b.walk("moved")
    assert (await (await moved.walk("..")).getattr()).ino == (await b.getattr()).ino
    await fs.root.mkdir("target", 0o755, UID, GID)
    await fs.root.rename("a", fs.root, "target")  # over an empty directory
    assert await read_all(await walk(fs.root, "target/f")) == b"data"
    await raises(errno.ENOTEMPTY, fs.root.rename("b", fs.root, "target"))
    await raises(errno.EINVAL, fs.root.rename("target", await fs.root.walk("target"), "x"))
    await make_file(fs.root, "file")
    await raises(errno.ENOTDIR, fs.root.rename("b", fs.root, "file"))
    await raises(errno.EISDIR, fs.root.rename("file", fs.root, "b"))


async def test_rename_keeps_open_handles(fs: Backend) -> None:
    node = await make_file(fs.root, "f", b"before")
    handle = await node.open(OpenFlags(O_RDWR))
    d = await fs.root.mkdir("d", 0o755, UID, GID)
    await fs.root.rename("f", d, "g")
    await handle.write(0, b"after!")
    await handle.close()
    assert await read_all(await walk(fs.root, "d/g")) == b"after!"


async def test_symlinks_short_and_long(fs: Backend) -> None:
    long_target = "/".join(["component"] * 40)  # 399 bytes: a slow symlink on ext2
    await fs.root.symlink("short", "a/b", UID, GID)
    await fs.root.symlink("long", long_target, UID, GID)
    short, long = await fs.root.walk("short"), await fs.root.walk("long")
    assert await short.readlink() == "a/b"
    assert await long.readlink() == long_target
    attr = await long.getattr()
    assert stat.S_ISLNK(attr.mode) and attr.size == len(long_target)


async def test_hard_links(fs: Backend) -> None:
    if not _case(fs).has("hardlink"):
        pytest.skip("no hard links")
    node = await make_file(fs.root, "f", b"shared")
    d = await fs.root.mkdir("d", 0o755, UID, GID)
    await d.link("g", node)
    assert (await node.getattr()).nlink == 2
    other = await d.walk("g")
    assert (await other.getattr()).ino == (await node.getattr()).ino
    await fs.root.unlink("f", False)
    assert await read_all(other) == b"shared"
    assert (await other.getattr()).nlink == 1
    await raises(errno.EEXIST, d.link("g", other))


async def test_mknod_fifo(fs: Backend) -> None:
    if not _case(fs).has("mknod"):
        pytest.skip("no special files")
    node = await fs.root.mknod("fifo", stat.S_IFIFO | 0o600, 0, UID, GID)
    assert stat.S_ISFIFO((await node.getattr()).mode)
    entry = {e.name: e for e in await list_all(fs.root)}["fifo"]
    assert entry.dtype == DT_FIFO


async def test_setattr_mode_owner_times(fs: Backend) -> None:
    node = await make_file(fs.root, "f")
    await node.setattr(SetAttr(mode=0o600, uid=2000, gid=3000,
                               atime_ns=1_000_000_000, mtime_ns=2_000_000_000))
    attr = await node.getattr()
    assert stat.S_IMODE(attr.mode) == 0o600 and stat.S_ISREG(attr.mode)
    assert (attr.uid, attr.gid) == (2000, 3000)
    assert (attr.atime_ns, attr.mtime_ns) == (1_000_000_000, 2_000_000_000)


async def test_xattrs(fs: Backend) -> None:
    if not _case(fs).has("xattr"):
        pytest.skip("no xattrs")
    node = await make_file(fs.root, "f")
    await node.xattr_set("user.one", b"1", 0)
    await node.xattr_set("user.big", b"v" * 700, 0)  # fits a 1 KiB ext2 block
    assert await node.xattr_get("user.one") == b"1"
    assert await node.xattr_get("user.big") == b"v" * 700
    assert {"user.one", "user.big"} <= set(await node.xattr_list())
    await raises(errno.EEXIST, node.xattr_set("user.one", b"2", 1))  # XATTR_CREATE
    await raises(errno.ENODATA, node.xattr_set("user.none", b"2", 2))  # XATTR_REPLACE
    await node.xattr_set("user.one", b"22", 2)
    assert await node.xattr_get("user.one") == b"22"
    await node.xattr_remove("user.one")
    await raises(errno.ENODATA, node.xattr_get("user.one"))
    await raises(errno.ENODATA, node.xattr_remove("user.one"))


async def test_open_unlinked_file_keeps_its_data_until_closed(fs: Backend) -> None:
    if "unlinked-fid-by-path" in _case(fs).quirks:  # diod 1.0.24 (tests/clients/targets.py)
        pytest.xfail("the back server finds an open fid's file by its path")
    node = await make_file(fs.root, "f", b"z" * 100_000)
    handle = await node.open(OpenFlags(O_RDWR))
    await fs.root.unlink("f", False)
    assert await handle.read(99_990, 100) == b"z" * 10
    await handle.write(100_000, b"more")
    assert (await node.getattr()).size == 100_004
    await handle.close()
    assert await names(fs.root) == set()


async def test_names_of_255_bytes(fs: Backend) -> None:
    name = "é" * 127 + "x"  # 255 bytes of UTF-8
    await make_file(fs.root, name, b"ok")
    assert await names(fs.root) == {name}
    assert await read_all(await fs.root.walk(name)) == b"ok"


async def test_inode_numbers_distinct_and_stable(fs: Backend) -> None:
    inos = set()
    for i in range(20):
        node = await make_file(fs.root, f"f{i}")
        inos.add((await node.getattr()).ino)
        assert (await (await fs.root.walk(f"f{i}")).getattr()).ino in inos
    assert len(inos) == 20 and all(0 < ino < 2**48 for ino in inos)


async def test_statfs(fs: Backend) -> None:
    before = await fs.root.statfs()
    assert before.bsize > 0 and before.namelen >= 255
    assert before.bfree <= before.blocks and before.ffree <= before.files


# --- read-only backends -------------------------------------------------------


async def test_read_only_serves_the_seed_tree(ro: Backend) -> None:
    for rel, data in SEED_FILES.items():
        node = await walk(ro.root, rel)
        assert await read_all(node, 8191) == data, rel
        attr = await node.getattr()
        assert attr.size == len(data)
        assert stat.S_IMODE(attr.mode) == (0o640 if rel == "dir/a" else 0o644)
        assert attr.mtime_ns // 10**9 == 1_600_000_000
    for rel, target in SEED_SYMLINKS.items():
        assert await (await walk(ro.root, rel)).readlink() == target
    first, second = [await (await walk(ro.root, p)).getattr() for p in SEED_HARDLINK]
    assert first.ino == second.ino and first.nlink == second.nlink == 2
    top = {e.name: e.dtype for e in await list_all(ro.root, chunk=2)}
    assert {k: v for k, v in top.items() if k != "lost+found"} == {
        "empty": DT_REG, "hello.txt": DT_REG, "dir": DT_DIR, "n" * 255: DT_REG,
        "link-to-hello": DT_LNK, "emptydir": DT_DIR}
    assert await names(await ro.root.walk("emptydir")) == set()


async def test_read_only_listing_end_is_above_every_entry(ro: Backend) -> None:
    for directory in (ro.root, await ro.root.walk("dir")):
        end = await directory.listing_end()
        entries = await list_all(directory, chunk=2)
        assert end is None or all(e.cookie <= end for e in entries)


async def test_read_only_refuses_every_change(ro: Backend) -> None:
    root = ro.root
    f = await root.walk("hello.txt")
    d = await root.walk("dir")
    changes: list[Awaitable[Any]] = [
        root.create("new", OpenFlags(O_RDWR), 0o644, UID, GID),
        root.mkdir("newdir", 0o755, UID, GID),
        root.symlink("newlink", "x", UID, GID),
        root.mknod("fifo", stat.S_IFIFO | 0o644, 0, UID, GID),
        d.link("l", f),
        root.rename("hello.txt", d, "moved"),
        root.unlink("hello.txt", False),
        root.unlink("emptydir", True),
        f.setattr(SetAttr(mode=0o600)),
        f.setattr(SetAttr(size=0)),
        f.xattr_set("user.x", b"1", 0),
        f.xattr_remove("user.x"),
        f.open(OpenFlags(O_WRONLY)),
        f.open(OpenFlags(O_RDWR)),
        f.open(OpenFlags(O_RDONLY | O_TRUNC)),
    ]
    for change in changes:
        await raises(errno.EROFS, change)
    assert await read_all(f) == SEED_FILES["hello.txt"]


# --- set-id bits and group membership, through the namespace (issue 10) ---------

ROOT = Cred(0, 0)
S_SETID = stat.S_ISUID | stat.S_ISGID


async def _ns_file(fs: Backend, name: str, mode: int, uid: int, gid: int,
                   directory: str = "") -> tuple[Namespace, Any]:
    """A namespace over ``fs`` and a file made by root, then given ``mode`` and owners."""
    ns = await Namespace.build([("/", fs, False)])
    loc = ns.root()
    await ns.setattr(loc, SetAttr(mode=0o777), ROOT)
    if directory:
        loc = await ns.mkdir(loc, directory, 0o777, 0, ROOT)
        await ns.setattr(loc, SetAttr(mode=0o777), ROOT)
    loc, handle = await ns.create(loc, name, O_RDWR, 0o644, 0, ROOT)
    await handle.close()
    await ns.setattr(loc, SetAttr(uid=uid, gid=gid), ROOT)
    await ns.setattr(loc, SetAttr(mode=mode), ROOT)
    return ns, loc


async def _mode(ns: Namespace, loc: Any) -> int:
    return stat.S_IMODE((await ns.getattr(loc)).mode)


@pytest.mark.parametrize("mode,left", [(0o4777, 0o777), (0o2777, 0o777), (0o6777, 0o777),
                                       (0o2767, 0o767), (0o6767, 0o767)])
async def test_a_write_by_a_non_root_caller_clears_set_id_bits(fs: Backend, mode: int,
                                                               left: int) -> None:
    """Linux's file_remove_privs: set-user-id always, set-group-id with group-execute."""
    ns, loc = await _ns_file(fs, "f", mode, 1000, 1000)
    assert await _mode(ns, loc) == mode
    handle = await ns.open(loc, O_WRONLY, Cred(2000, 2000))
    await handle.write(0, b"x")
    await handle.close()
    assert await _mode(ns, loc) == left


async def test_set_id_bits_given_while_a_file_is_open_are_cleared_by_the_next_write(
        fs: Backend) -> None:
    ns, loc = await _ns_file(fs, "f", 0o777, 1000, 1000)
    handle = await ns.open(loc, O_RDWR, Cred(2000, 2000))
    await handle.write(0, b"x")
    await ns.setattr(loc, SetAttr(mode=0o6777), ROOT)
    await handle.write(1, b"y")
    assert await _mode(ns, loc) == 0o777
    await handle.close()


async def test_root_writes_and_truncates_keep_set_id_bits(fs: Backend) -> None:
    ns, loc = await _ns_file(fs, "f", 0o6777, 1000, 1000)
    handle = await ns.open(loc, O_WRONLY, ROOT)
    await handle.write(0, b"x")
    await handle.close()
    await ns.setattr(loc, SetAttr(size=0), ROOT)
    assert await _mode(ns, loc) == 0o6777


async def test_a_truncate_by_a_non_root_caller_clears_set_id_bits(fs: Backend) -> None:
    ns, loc = await _ns_file(fs, "f", 0o6777, 1000, 1000)
    await ns.setattr(loc, SetAttr(size=0), Cred(2000, 2000))
    assert await _mode(ns, loc) == 0o777
    ns, loc = await _ns_file(fs, "g", 0o4777, 1000, 1000)
    # what Linux's v9fs sends for a non-owner's truncate: the size and the mode its
    # notify_change computed (ATTR_KILL_SUID, ATTR_FORCE): not a chmod to refuse
    await ns.setattr(loc, SetAttr(size=0, mode=0o777), Cred(2000, 2000))
    assert await _mode(ns, loc) == 0o777
    ns, loc = await _ns_file(fs, "h", 0o4777, 1000, 1000)
    await raises(errno.EPERM, ns.setattr(loc, SetAttr(mode=0o4700), Cred(2000, 2000)))


@pytest.mark.parametrize("who", [ROOT, Cred(1000, 1000)])
async def test_chown_clears_set_id_bits_whoever_makes_it(fs: Backend, who: Cred) -> None:
    ns, loc = await _ns_file(fs, "f", 0o6755, 1000, 1000)
    await ns.setattr(loc, SetAttr(gid=1000), who)
    assert await _mode(ns, loc) == 0o755


@pytest.mark.parametrize("directory", ["", "sub"])
async def test_an_owner_gives_its_file_its_own_or_a_supplementary_group(
        fs: Backend, directory: str) -> None:
    owner = Cred(65534, 65533, frozenset({65532, 65531}))
    ns, loc = await _ns_file(fs, "f", 0o644, 65534, 65533, directory)
    for gid in (65532, 65531, 65533):
        await ns.setattr(loc, SetAttr(gid=gid), owner)
        assert (await ns.getattr(loc)).gid == gid
    await raises(errno.EPERM, ns.setattr(loc, SetAttr(gid=65530), owner))  # not its group
    assert (await ns.getattr(loc)).gid == 65533
    await raises(errno.EPERM, ns.setattr(loc, SetAttr(gid=65532), Cred(65530, 65532)))


async def test_an_owner_chgrp_of_a_set_id_file_clears_its_bits(fs: Backend) -> None:
    owner = Cred(65534, 65533, frozenset({65532}))
    ns, loc = await _ns_file(fs, "f", 0o6555, 65534, 65533)
    await ns.setattr(loc, SetAttr(gid=65532), owner)
    attr = await ns.getattr(loc)
    assert (attr.gid, stat.S_IMODE(attr.mode)) == (65532, 0o555)


async def test_a_group_member_gets_group_permission(fs: Backend) -> None:
    ns, loc = await _ns_file(fs, "f", 0o060, 65534, 65534)
    member, outsider = Cred(65533, 65534), Cred(65533, 65533)
    for flags in (O_RDONLY, O_WRONLY, O_RDWR):
        await (await ns.open(loc, flags, member)).close()
        await raises(errno.EACCES, ns.open(loc, flags, outsider))


async def test_chmod_keeps_set_group_id_only_for_root_and_members(fs: Backend) -> None:
    """Linux's setattr_prepare: a chmod by a caller outside the file's group drops it."""
    ns, loc = await _ns_file(fs, "f", 0o755, 65535, 65535)
    await ns.setattr(loc, SetAttr(mode=0o2755), Cred(65535, 65535))
    assert await _mode(ns, loc) == 0o2755
    await ns.setattr(loc, SetAttr(mode=0o2755), Cred(65535, 65534))
    assert await _mode(ns, loc) == 0o755
    await ns.setattr(loc, SetAttr(uid=65534, gid=65534), ROOT)
    await ns.setattr(loc, SetAttr(mode=0o6555), ROOT)
    assert await _mode(ns, loc) == 0o6555


async def test_the_client_group_model_takes_the_client_kernels_word(fs: Backend) -> None:
    """groups = "client": a non-owner gets what the group or the other class grants, and
    an owner may give its file any group but the id map's anonymous one."""
    base, loc = await _ns_file(fs, "f", 0o060, 65534, 65534)
    ns = base.view(client_groups=True)
    stranger = Cred(65533, 65533)  # its groups unknown to the server
    await (await ns.open(loc, O_RDWR, stranger)).close()
    await raises(errno.EACCES, base.open(loc, O_RDONLY, stranger))
    _, mine = await _ns_file(fs, "g", 0o644, 65533, 65533)
    await ns.setattr(mine, SetAttr(gid=65531), stranger)
    assert (await ns.getattr(mine)).gid == 65531
    await raises(errno.EPERM, base.setattr(mine, SetAttr(gid=65530), stranger))


async def test_a_write_by_a_member_of_the_group_keeps_set_group_id_without_group_execute(
        fs: Backend) -> None:
    """Set-group-id without group-execute marks mandatory locking: a writer in the file's
    group leaves it (setattr_should_drop_sgid)."""
    ns, loc = await _ns_file(fs, "f", 0o6767, 1000, 1000)
    handle = await ns.open(loc, O_WRONLY, Cred(2000, 1000))
    await handle.write(0, b"x")
    await handle.close()
    assert await _mode(ns, loc) == 0o2767


@pytest.mark.parametrize("who,mode", [(ROOT, 0o6555), (Cred(65535, 65535), 0o2755),
                                      (ROOT, 0o4777)])
async def test_a_chmod_as_linux_sends_it_keeps_set_id_bits(fs: Backend, who: Cred,
                                                           mode: int) -> None:
    """v9fs sends chmod as Tsetattr(MODE|CTIME): touching ctime must not clear what the
    chmod set (passthrough touched it with chown(-1, -1), which clears set-id bits)."""
    ns, loc = await _ns_file(fs, "f", 0o755, 65535, 65535)
    await ns.setattr(loc, SetAttr(mode=mode, ctime=True), who)
    assert await _mode(ns, loc) == mode


async def test_a_non_member_makes_things_in_a_set_group_id_directory(fs: Backend) -> None:
    """Linux's inode_init_owner: the directory's group, whatever the creator's groups,
    and set-group-id on subdirectories (v9fs sends the group and the bit itself)."""
    ns = await Namespace.build([("/", fs, False)])
    top = await ns.mkdir(ns.root(), "sg", 0o777, 0, ROOT)
    await ns.setattr(top, SetAttr(gid=1234), ROOT)
    await ns.setattr(top, SetAttr(mode=0o2777), ROOT)
    user = Cred(1000, 1000)
    sub = await ns.mkdir(top, "sub", 0o2755, 1234, user)
    attr = await ns.getattr(sub)
    assert (attr.uid, attr.gid, stat.S_IMODE(attr.mode)) == (1000, 1234, 0o2755)
    loc, handle = await ns.create(top, "f", O_RDWR, 0o644, 1234, user)
    await handle.close()
    attr = await ns.getattr(loc)
    assert (attr.uid, attr.gid, stat.S_IMODE(attr.mode)) == (1000, 1234, 0o644)
