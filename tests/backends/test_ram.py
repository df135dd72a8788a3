"""Tests for backends/ram.py: the tmpfs semantics the RAM backend promises."""

from __future__ import annotations

import errno
import os
import random
import stat
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ninep.backends.ram import MAX_FILE_SIZE, PAGE_SIZE, TMPFS_MAGIC, RamBackend, RamFile
from ninep.vfs.node import UTIME_NOW, DirEntry, Handle, Node, OpenFlags, SetAttr

O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
O_TRUNC, O_APPEND, O_DIRECTORY = 0o1000, 0o2000, 0o200000
ASYNC = pytest.mark.asyncio


@pytest.fixture
def fs() -> RamBackend:
    return RamBackend()


async def make_file(directory: Node, name: str, data: bytes = b"", mode: int = 0o644) -> Node:
    node, handle = await directory.create(name, OpenFlags(O_RDWR), mode, 1000, 1000)
    if data:
        assert await handle.write(0, data) == len(data)
    await handle.close()
    return node


async def read_all(node: Node) -> bytes:
    handle = await node.open(OpenFlags(O_RDONLY))
    try:
        size = (await node.getattr()).size
        return await handle.read(0, size + 1)
    finally:
        await handle.close()


async def list_all(directory: Node, chunk: int = 1000) -> list[DirEntry]:
    out: list[DirEntry] = []
    cookie = 0
    while batch := await directory.readdir(cookie, chunk):
        out.extend(batch)
        cookie = batch[-1].cookie
    return out


async def names(directory: Node) -> list[str]:
    return [e.name for e in await list_all(directory)]


async def raises(code: int, coro: object) -> None:
    with pytest.raises(OSError) as exc:
        await coro  # type: ignore[misc]
    assert exc.value.errno == code, (errno.errorcode.get(exc.value.errno or 0), exc.value)


# --- the backend itself ----------------------------------------------------


@ASYNC
async def test_backend_identity_and_root() -> None:
    fs = RamBackend(root_uid=5, root_gid=6, root_mode=0o1777)
    assert fs.kind == "ram" and fs.keeps_ownership
    attr = await fs.root.getattr()
    assert stat.S_ISDIR(attr.mode) and stat.S_IMODE(attr.mode) == 0o1777
    assert (attr.uid, attr.gid, attr.nlink) == (5, 6, 2)
    assert await fs.root.walk("..") is fs.root


@ASYNC
async def test_getattr_returns_a_fresh_copy(fs: RamBackend) -> None:
    node = await make_file(fs.root, "f", b"x")
    first = await node.getattr()
    first.size = 999
    assert (await node.getattr()).size == 1


@ASYNC
async def test_attr_fields(fs: RamBackend) -> None:
    before = time.time_ns()
    a = await make_file(fs.root, "a", b"hello")
    b = await fs.root.mkdir("b", 0o755, 0, 0)
    attr = await a.getattr()
    assert attr.ino != (await b.getattr()).ino != (await fs.root.getattr()).ino
    assert attr.blksize == 4096 and attr.blocks == 8  # one 4 KiB block in 512 B units
    assert before <= attr.btime_ns <= time.time_ns()
    assert attr.btime_ns <= attr.mtime_ns == attr.ctime_ns
    version = attr.data_version
    handle = await a.open(OpenFlags(O_WRONLY))
    await handle.write(0, b"J")
    assert (await a.getattr()).data_version > version
    version = (await a.getattr()).data_version
    await a.setattr(SetAttr(size=2))
    assert (await a.getattr()).data_version > version
    await handle.close()


@ASYNC
async def test_add_file_seeds_content_and_directories(fs: RamBackend) -> None:
    fs.add_file("/docs/deep/README", b"read me\n", mode=0o444)
    docs = await fs.root.walk("docs")
    readme = await (await docs.walk("deep")).walk("README")
    assert await read_all(readme) == b"read me\n"
    assert stat.S_IMODE((await readme.getattr()).mode) == 0o444
    assert stat.S_ISDIR((await docs.getattr()).mode)
    fs.add_file("docs/deep/README", b"v2")
    assert await read_all(readme) == b"v2"
    with pytest.raises(NotADirectoryError):
        fs.add_file("docs/deep/README/x", b"")
    with pytest.raises(ValueError):
        fs.add_file("../x", b"")


# --- regular files -------------------------------------------------------


@ASYNC
async def test_multi_page_write_and_reads_across_boundaries(fs: RamBackend) -> None:
    data = random.Random(1).randbytes(5 * PAGE_SIZE + 123)
    node = await make_file(fs.root, "f")
    handle = await node.open(OpenFlags(O_RDWR))
    assert await handle.write(1000, data) == len(data)
    expect = bytes(1000) + data
    assert (await node.getattr()).size == len(expect)
    for offset, size in [(0, 1), (0, len(expect)), (PAGE_SIZE - 3, 10), (999, PAGE_SIZE * 2),
                         (3 * PAGE_SIZE, PAGE_SIZE), (len(expect) - 5, 100)]:
        assert await handle.read(offset, size) == expect[offset:offset + size]
    assert await handle.read(len(expect), 10) == b""
    assert await handle.read(len(expect) + 10_000, 10) == b""
    await handle.close()


@ASYNC
async def test_read_returns_independent_bytes(fs: RamBackend) -> None:
    node = await make_file(fs.root, "f", b"abcd")
    handle = await node.open(OpenFlags(O_RDWR))
    got = await handle.read(0, 4)
    assert type(got) is bytes
    await handle.write(0, b"zzzz")
    assert got == b"abcd"
    assert await handle.read(0, 4) == b"zzzz"
    await handle.close()


@ASYNC
async def test_write_accepts_memoryview(fs: RamBackend) -> None:
    node = await make_file(fs.root, "f")
    handle = await node.open(OpenFlags(O_RDWR))
    buffer = bytearray(b"0123456789")
    assert await handle.write(0, memoryview(buffer)[2:6]) == 4
    buffer[2:6] = b"xxxx"
    assert await handle.read(0, 10) == b"2345"
    await handle.close()


@ASYNC
async def test_sparse_file_at_one_tebibyte(fs: RamBackend) -> None:
    node = await make_file(fs.root, "sparse")
    handle = await node.open(OpenFlags(O_RDWR))
    await handle.write(2**40, b"tail!")
    attr = await node.getattr()
    assert attr.size == 2**40 + 5
    assert attr.blocks == 8 and fs.used_bytes == 4096
    assert await handle.read(2**40 - 3, 8) == b"\0\0\0tail!"
    assert await handle.read(12345, 100) == bytes(100)
    assert await handle.read(2**40 - PAGE_SIZE * 2, PAGE_SIZE) == bytes(PAGE_SIZE)
    await handle.write(2**40 + PAGE_SIZE * 3 - 2, b"abcd")  # straddles two pages
    assert await handle.read(2**40 + PAGE_SIZE * 3 - 4, 8) == b"\0\0abcd"
    await handle.close()


@ASYNC
async def test_big_sequential_read_is_fast(fs: RamBackend) -> None:
    node = await make_file(fs.root, "big", bytes(range(256)) * (64 * 4096))  # 64 MiB
    handle = await node.open(OpenFlags(O_RDONLY))
    total = 0
    while chunk := await handle.read(total, 1 << 20):
        assert len(chunk) == 1 << 20 and bytes(chunk[:256]) == bytes(range(256))
        total += len(chunk)
    assert total == 64 << 20  # (its speed is bench/'s business, not a test's)
    await handle.close()


@ASYNC
async def test_write_limits(fs: RamBackend) -> None:
    node = await make_file(fs.root, "f")
    handle = await node.open(OpenFlags(O_RDWR))
    await raises(errno.EFBIG, handle.write(MAX_FILE_SIZE, b"xx"))
    await raises(errno.EINVAL, handle.write(-1, b"x"))
    assert await handle.write(10, b"") == 0
    assert (await node.getattr()).size == 0
    await raises(errno.EFBIG, node.setattr(SetAttr(size=MAX_FILE_SIZE + 1)))
    await raises(errno.EINVAL, node.setattr(SetAttr(size=-1)))
    await handle.close()


@ASYNC
async def test_truncate_down_frees_pages_and_zeroes_tail(fs: RamBackend) -> None:
    data = b"\xff" * (3 * PAGE_SIZE)
    node = await make_file(fs.root, "f", data)
    assert fs.used_bytes == 3 * PAGE_SIZE
    await node.setattr(SetAttr(size=PAGE_SIZE + 10))
    assert fs.used_bytes == PAGE_SIZE + 4096
    assert (await node.getattr()).blocks == (PAGE_SIZE + 4096) // 512
    await node.setattr(SetAttr(size=3 * PAGE_SIZE))  # extend: holes and the cut tail read zero
    assert (await node.getattr()).size == 3 * PAGE_SIZE
    assert fs.used_bytes == PAGE_SIZE + 4096
    got = await read_all(node)
    assert got == b"\xff" * (PAGE_SIZE + 10) + bytes(2 * PAGE_SIZE - 10)
    handle = await node.open(OpenFlags(O_WRONLY))
    await handle.write(5 * PAGE_SIZE, b"x")  # extend by writing, past the old tail
    await handle.close()
    assert (await read_all(node))[PAGE_SIZE + 10:5 * PAGE_SIZE] == bytes(4 * PAGE_SIZE - 10)
    await node.setattr(SetAttr(size=0))
    assert fs.used_bytes == 0 and (await node.getattr()).blocks == 0


@ASYNC
async def test_truncate_up_is_sparse_and_updates_times(fs: RamBackend) -> None:
    fs = RamBackend(size_limit=1 << 20)
    node = await make_file(fs.root, "f", b"abc")
    await node.setattr(SetAttr(atime_ns=1, mtime_ns=1))
    await node.setattr(SetAttr(size=2**40))  # like tmpfs: a hole costs nothing
    attr = await node.getattr()
    assert attr.size == 2**40 and attr.blocks == 8
    assert attr.mtime_ns > 1 and attr.ctime_ns == attr.mtime_ns


@ASYNC
async def test_truncate_on_non_files(fs: RamBackend) -> None:
    d = await fs.root.mkdir("d", 0o755, 0, 0)
    link = await fs.root.symlink("l", "d", 0, 0)
    fifo = await fs.root.mknod("p", stat.S_IFIFO | 0o644, 0, 0, 0)
    await raises(errno.EISDIR, d.setattr(SetAttr(size=0)))
    await raises(errno.EINVAL, link.setattr(SetAttr(size=0)))
    await raises(errno.EINVAL, fifo.setattr(SetAttr(size=0)))


@ASYNC
async def test_open_modes(fs: RamBackend) -> None:
    node = await make_file(fs.root, "f", b"hello")
    ro = await node.open(OpenFlags(O_RDONLY))
    await raises(errno.EBADF, ro.write(0, b"x"))
    assert await ro.read(0, 5) == b"hello"
    wo = await node.open(OpenFlags(O_WRONLY))
    await raises(errno.EBADF, wo.read(0, 5))
    assert await wo.write(0, b"J") == 1
    noaccess = await node.open(OpenFlags(3))
    await raises(errno.EBADF, noaccess.read(0, 1))
    await raises(errno.EBADF, noaccess.write(0, b"x"))
    for h in (ro, wo, noaccess):
        await h.close()
    await raises(errno.EBADF, ro.read(0, 1))
    await raises(errno.ENOTDIR, node.open(OpenFlags(O_RDONLY | O_DIRECTORY)))


@ASYNC
async def test_append_and_trunc(fs: RamBackend) -> None:
    node = await make_file(fs.root, "f", b"hello")
    appender = await node.open(OpenFlags(O_WRONLY | O_APPEND))
    await appender.write(0, b" world")
    await appender.write(2, b"!")
    assert await read_all(node) == b"hello world!"
    await appender.close()
    truncating = await node.open(OpenFlags(O_RDWR | O_TRUNC))
    assert (await node.getattr()).size == 0 and fs.used_bytes == 0
    assert await truncating.read(0, 10) == b""
    await truncating.close()


@ASYNC
async def test_directory_and_special_opens(fs: RamBackend) -> None:
    d = await fs.root.mkdir("d", 0o755, 0, 0)
    handle = await d.open(OpenFlags(O_RDONLY | O_DIRECTORY))
    await raises(errno.EISDIR, handle.read(0, 10))
    await raises(errno.EBADF, handle.write(0, b"x"))
    await handle.close()
    for flags in (O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC):
        await raises(errno.EISDIR, d.open(OpenFlags(flags)))
    link = await fs.root.symlink("l", "d", 0, 0)
    await raises(errno.ELOOP, link.open(OpenFlags(O_RDONLY)))
    dev = await fs.root.mknod("c", stat.S_IFCHR | 0o600, 0x0103, 0, 0)
    await raises(errno.ENXIO, dev.open(OpenFlags(O_RDONLY)))


@ASYNC
async def test_create_semantics(fs: RamBackend) -> None:
    node, handle = await fs.root.create("f", OpenFlags(O_WRONLY), 0o4640 | stat.S_IFREG, 7, 8)
    attr = await node.getattr()
    assert attr.mode == stat.S_IFREG | 0o4640 and (attr.uid, attr.gid, attr.nlink) == (7, 8, 1)
    await raises(errno.EBADF, handle.read(0, 1))
    await handle.close()
    await raises(errno.EEXIST, fs.root.create("f", OpenFlags(O_RDWR), 0o644, 0, 0))
    await raises(errno.EEXIST, fs.root.mkdir("f", 0o755, 0, 0))
    await raises(errno.ENOTDIR, node.create("x", OpenFlags(O_RDWR), 0o644, 0, 0))
    await raises(errno.ENOTDIR, node.walk("x"))


# --- directories -----------------------------------------------------------


@ASYNC
async def test_walk_and_dotdot(fs: RamBackend) -> None:
    a = await fs.root.mkdir("a", 0o755, 0, 0)
    b = await a.mkdir("b", 0o755, 0, 0)
    assert await fs.root.walk("a") is a and await a.walk("b") is b
    assert await b.walk("..") is a and await a.walk("..") is fs.root
    assert await fs.root.walk("..") is fs.root
    await raises(errno.ENOENT, a.walk("missing"))


@ASYNC
async def test_directory_nlink_counts_subdirectories(fs: RamBackend) -> None:
    d = await fs.root.mkdir("d", 0o755, 0, 0)
    assert (await fs.root.getattr()).nlink == 3
    for i in range(3):
        await d.mkdir(f"sub{i}", 0o755, 0, 0)
    await make_file(d, "file")
    assert (await d.getattr()).nlink == 5
    await d.unlink("sub0", True)
    assert (await d.getattr()).nlink == 4


@ASYNC
async def test_readdir_lists_with_types_and_resumes(fs: RamBackend) -> None:
    await make_file(fs.root, "file")
    await fs.root.mkdir("dir", 0o755, 0, 0)
    await fs.root.symlink("link", "file", 0, 0)
    for name, kind in [("fifo", stat.S_IFIFO), ("sock", stat.S_IFSOCK),
                       ("chr", stat.S_IFCHR), ("blk", stat.S_IFBLK)]:
        await fs.root.mknod(name, kind | 0o644, 0, 0, 0)
    entries = await list_all(fs.root)
    assert {e.name: e.dtype for e in entries} == {
        "file": 8, "dir": 4, "link": 10, "fifo": 1, "sock": 12, "chr": 2, "blk": 6}
    cookies = [e.cookie for e in entries]
    assert cookies == sorted(set(cookies)) and cookies[0] > 0
    for i, entry in enumerate(entries):  # resume after any cookie handed out
        assert await fs.root.readdir(entry.cookie, 100) == entries[i + 1:]
    assert await fs.root.readdir(0, 3) == entries[:3]
    file_node = await fs.root.walk("file")
    assert entries[0].ino == (await file_node.getattr()).ino
    await raises(errno.ENOTDIR, file_node.readdir(0, 10))


class _CountingDict(dict[int, Any]):
    """A directory's entry table that counts the lookups a listing makes."""

    gets = 0

    def get(self, key: int, default: Any = None) -> Any:
        self.gets += 1
        return super().get(key, default)


@ASYNC
async def test_readdir_stable_under_concurrent_changes() -> None:
    fs = RamBackend()
    d = await fs.root.mkdir("big", 0o755, 0, 0)
    for i in range(10_000):
        await d.mknod(f"f{i:05}", stat.S_IFREG | 0o644, 0, 0, 0)
    rng = random.Random(7)
    removed: set[str] = set()
    created: list[str] = []
    seen: list[str] = []
    cookie = 0
    chunks = 0
    lookups = _CountingDict(d.by_seq)
    d.by_seq = lookups
    while batch := await d.readdir(cookie, 200):
        seen.extend(e.name for e in batch)
        cookie = batch[-1].cookie
        chunks += 1
        for _ in range(20 if chunks < 60 else 0):  # churn: deletes everywhere, new names
            victim = f"f{rng.randrange(10_000):05}"
            if victim not in removed:
                await d.unlink(victim, False)
                removed.add(victim)
            name = f"new{len(created)}"
            await d.mknod(name, stat.S_IFREG | 0o644, 0, 0, 0)
            created.append(name)
    assert len(seen) == len(set(seen)), "an entry was listed twice"
    survivors = {f"f{i:05}" for i in range(10_000)} - removed
    assert survivors <= set(seen), "an entry that existed throughout was skipped"
    assert set(seen) <= {f"f{i:05}" for i in range(10_000)} | set(created)
    # chunks resume by bisect, not by a scan from the start (~250,000 lookups)
    assert lookups.gets <= 10_000 + len(created)
    assert set(await names(d)) == survivors | set(created)


@ASYNC
async def test_readdir_of_a_large_directory_drops_deleted_entries(fs: RamBackend) -> None:
    d = await fs.root.mkdir("d", 0o755, 0, 0)
    for i in range(5000):
        await d.mknod(f"n{i}", stat.S_IFIFO | 0o644, 0, 0, 0)
    for i in range(0, 5000, 2):
        await d.unlink(f"n{i}", False)
    first = await d.readdir(0, 10)
    assert [e.name for e in first] == [f"n{i}" for i in range(1, 20, 2)]
    assert await names(d) == [f"n{i}" for i in range(1, 5000, 2)]


@ASYNC
async def test_rename_gives_a_new_place_in_listings(fs: RamBackend) -> None:
    for name in "abc":
        await make_file(fs.root, name)
    a_cookie = (await fs.root.readdir(0, 1))[0].cookie
    await fs.root.rename("a", fs.root, "z")
    assert await names(fs.root) == ["b", "c", "z"]
    assert [e.name for e in await fs.root.readdir(a_cookie, 10)] == ["b", "c", "z"]


@ASYNC
async def test_unlink_and_rmdir_errors(fs: RamBackend) -> None:
    d = await fs.root.mkdir("d", 0o755, 0, 0)
    await make_file(d, "inner")
    await make_file(fs.root, "f")
    await raises(errno.ENOTDIR, fs.root.unlink("f", True))
    await raises(errno.EISDIR, fs.root.unlink("d", False))
    await raises(errno.ENOTEMPTY, fs.root.unlink("d", True))
    await raises(errno.ENOENT, fs.root.unlink("nope", False))
    await d.unlink("inner", False)
    await fs.root.unlink("d", True)
    await fs.root.unlink("f", False)
    assert await names(fs.root) == []
    assert (await d.getattr()).nlink == 0
    await raises(errno.ENOENT, d.create("x", OpenFlags(O_RDWR), 0o644, 0, 0))
    assert fs.used_inodes == 1


@ASYNC
async def test_symlink_and_readlink(fs: RamBackend) -> None:
    link = await fs.root.symlink("l", "some/where/ü", 3, 4)
    attr = await link.getattr()
    assert stat.S_ISLNK(attr.mode) and attr.size == len("some/where/ü".encode())
    assert await link.readlink() == "some/where/ü"
    await raises(errno.EINVAL, fs.root.readlink())
    await raises(errno.ENOENT, fs.root.symlink("empty", "", 0, 0))
    await raises(errno.EEXIST, fs.root.symlink("l", "x", 0, 0))
    await fs.root.unlink("l", False)  # a fid may still hold the node: it stays readable
    assert await link.readlink() == "some/where/ü"
    assert fs.used_bytes == 0 and fs.used_inodes == 1


@ASYNC
async def test_mknod_types(fs: RamBackend) -> None:
    blk = await fs.root.mknod("blk", stat.S_IFBLK | 0o660, os.makedev(8, 1), 0, 6)
    attr = await blk.getattr()
    assert stat.S_ISBLK(attr.mode) and attr.rdev == os.makedev(8, 1) and attr.gid == 6
    fifo = await fs.root.mknod("fifo", stat.S_IFIFO | 0o600, 1234, 0, 0)
    assert (await fifo.getattr()).rdev == 0  # rdev means nothing for a FIFO
    plain = await fs.root.mknod("plain", stat.S_IFREG | 0o600, 0, 0, 0)
    assert isinstance(plain, RamFile)
    await raises(errno.EPERM, fs.root.mknod("d", stat.S_IFDIR | 0o755, 0, 0, 0))
    await raises(errno.EINVAL, fs.root.mknod("bad", 0o170000, 0, 0, 0))


# --- hard links --------------------------------------------------------------


@ASYNC
async def test_hard_links(fs: RamBackend) -> None:
    node = await make_file(fs.root, "a", b"shared")
    d = await fs.root.mkdir("d", 0o755, 0, 0)
    ctime = (await node.getattr()).ctime_ns
    await d.link("b", node)
    attr = await node.getattr()
    assert attr.nlink == 2 and attr.ctime_ns >= ctime
    b = await d.walk("b")
    assert b is node and (await b.getattr()).ino == attr.ino
    await fs.root.unlink("a", False)
    assert (await node.getattr()).nlink == 1
    assert await read_all(b) == b"shared"
    await raises(errno.EPERM, fs.root.link("dlink", d))
    await raises(errno.EEXIST, fs.root.link("d", node))
    other = RamBackend()
    foreign = await make_file(other.root, "f")
    await raises(errno.EXDEV, fs.root.link("x", foreign))
    await raises(errno.EXDEV, fs.root.link("x", Node()))


@ASYNC
async def test_link_to_an_unlinked_open_file_is_refused(fs: RamBackend) -> None:
    node, handle = await fs.root.create("f", OpenFlags(O_RDWR), 0o644, 0, 0)
    await fs.root.unlink("f", False)
    await raises(errno.ENOENT, fs.root.link("again", node))
    await handle.close()


# --- rename -----------------------------------------------------------------


@ASYNC
async def test_rename_file_replaces_file(fs: RamBackend) -> None:
    src = await make_file(fs.root, "src", b"new")
    await make_file(fs.root, "dst", b"old data")
    inodes = fs.used_inodes
    await fs.root.rename("src", fs.root, "dst")
    assert await names(fs.root) == ["dst"]
    assert await fs.root.walk("dst") is src
    assert await read_all(src) == b"new"
    assert fs.used_inodes == inodes - 1 and fs.used_bytes == 4096


@ASYNC
async def test_rename_directory_over_empty_directory(fs: RamBackend) -> None:
    a = await fs.root.mkdir("a", 0o755, 0, 0)
    empty = await fs.root.mkdir("empty", 0o755, 0, 0)
    full = await fs.root.mkdir("full", 0o755, 0, 0)
    await make_file(full, "x")
    await raises(errno.ENOTEMPTY, fs.root.rename("a", fs.root, "full"))
    await fs.root.rename("a", fs.root, "empty")
    assert await fs.root.walk("empty") is a
    assert (await empty.getattr()).nlink == 0
    assert (await fs.root.getattr()).nlink == 4  # a (as "empty") and full


@ASYNC
async def test_rename_type_mismatches(fs: RamBackend) -> None:
    await fs.root.mkdir("d", 0o755, 0, 0)
    await make_file(fs.root, "f")
    await raises(errno.EISDIR, fs.root.rename("f", fs.root, "d"))
    await raises(errno.ENOTDIR, fs.root.rename("d", fs.root, "f"))
    await raises(errno.ENOENT, fs.root.rename("missing", fs.root, "x"))


@ASYNC
async def test_rename_into_own_subtree(fs: RamBackend) -> None:
    a = await fs.root.mkdir("a", 0o755, 0, 0)
    b = await a.mkdir("b", 0o755, 0, 0)
    c = await b.mkdir("c", 0o755, 0, 0)
    await raises(errno.EINVAL, fs.root.rename("a", c, "x"))
    await raises(errno.EINVAL, fs.root.rename("a", a, "x"))
    await raises(errno.ENOTEMPTY, b.rename("c", fs.root, "a"))  # over a non-empty ancestor


@ASYNC
async def test_rename_to_itself_is_a_no_op(fs: RamBackend) -> None:
    node = await make_file(fs.root, "f")
    await fs.root.link("g", node)
    before = await list_all(fs.root)
    await fs.root.rename("f", fs.root, "f")
    await fs.root.rename("f", fs.root, "g")  # two names of one inode: both stay
    assert await list_all(fs.root) == before
    assert (await node.getattr()).nlink == 2


@ASYNC
async def test_rename_moves_directory_and_fixes_parents(fs: RamBackend) -> None:
    src = await fs.root.mkdir("src", 0o755, 0, 0)
    dst = await fs.root.mkdir("dst", 0o755, 0, 0)
    moved = await src.mkdir("moved", 0o755, 0, 0)
    await make_file(moved, "inside", b"x")
    await src.setattr(SetAttr(mtime_ns=1))
    await dst.setattr(SetAttr(mtime_ns=1))
    await src.rename("moved", dst, "here")
    assert await moved.walk("..") is dst
    assert (await src.getattr()).nlink == 2 and (await dst.getattr()).nlink == 3
    assert (await src.getattr()).mtime_ns > 1 and (await dst.getattr()).mtime_ns > 1
    assert await names(src) == [] and await names(dst) == ["here"]
    assert await read_all(await moved.walk("inside")) == b"x"


@ASYNC
async def test_rename_keeps_open_handles_working(fs: RamBackend) -> None:
    d = await fs.root.mkdir("d", 0o755, 0, 0)
    _, handle = await fs.root.create("f", OpenFlags(O_RDWR), 0o644, 0, 0)
    await fs.root.rename("f", d, "g")
    await handle.write(0, b"moved")
    await handle.close()
    assert await read_all(await d.walk("g")) == b"moved"


@ASYNC
async def test_rename_across_backends_is_exdev(fs: RamBackend) -> None:
    await make_file(fs.root, "f")
    await raises(errno.EXDEV, fs.root.rename("f", RamBackend().root, "f"))


# --- xattrs ----------------------------------------------------------------


@ASYNC
async def test_xattrs(fs: RamBackend) -> None:
    node = await make_file(fs.root, "f")
    names_ = ["user.a", "trusted.b", "security.selinux", "system.posix_acl_access"]
    for i, name in enumerate(names_):
        await node.xattr_set(name, bytes([i]) * 3, 0)
    assert await node.xattr_list() == names_
    assert await node.xattr_get("trusted.b") == b"\1\1\1"
    await raises(errno.ENODATA, node.xattr_get("user.none"))
    await raises(errno.EEXIST, node.xattr_set("user.a", b"x", 1))
    await raises(errno.ENODATA, node.xattr_set("user.none", b"x", 2))
    await node.xattr_set("user.a", b"replaced", 2)
    await node.xattr_set("user.new", b"", 1)
    assert await node.xattr_get("user.a") == b"replaced"
    assert await node.xattr_get("user.new") == b""
    await node.xattr_remove("user.a")
    await raises(errno.ENODATA, node.xattr_remove("user.a"))
    await raises(errno.EINVAL, node.xattr_set("user.x", b"", 4))
    await raises(errno.EEXIST, node.xattr_set("user.new", b"", 3))  # both flags: as Linux
    await raises(errno.E2BIG, node.xattr_set("user.x", bytes(65537), 0))
    d = await fs.root.mkdir("d", 0o755, 0, 0)
    await d.xattr_set("user.on_dir", b"yes", 0)
    assert await d.xattr_list() == ["user.on_dir"]


@ASYNC
async def test_xattrs_count_toward_size_limit() -> None:
    fs = RamBackend(size_limit=10_000)
    node = await make_file(fs.root, "f")
    await node.xattr_set("user.big", bytes(9000), 0)
    assert fs.used_bytes == 9000 + len("user.big")
    await raises(errno.ENOSPC, node.xattr_set("user.more", bytes(2000), 0))
    await raises(errno.ENOSPC, node.xattr_set("user.big", bytes(11_000), 0))
    assert await node.xattr_get("user.big") == bytes(9000)
    await node.xattr_set("user.big", b"small", 0)
    assert fs.used_bytes == 5 + len("user.big")
    await node.xattr_remove("user.big")
    assert fs.used_bytes == 0


# --- times, modes, ownership --------------------------------------------------


@ASYNC
async def test_write_updates_mtime_and_ctime_and_read_updates_atime(fs: RamBackend) -> None:
    node = await make_file(fs.root, "f", b"data")
    await node.setattr(SetAttr(atime_ns=10, mtime_ns=10))
    handle = await node.open(OpenFlags(O_RDWR))
    await handle.write(0, b"D")
    attr = await node.getattr()
    assert attr.mtime_ns > 10 and attr.ctime_ns == attr.mtime_ns and attr.atime_ns == 10
    await handle.read(0, 4)
    atime = (await node.getattr()).atime_ns
    assert atime >= attr.mtime_ns
    await handle.read(0, 4)  # relatime: atime newer than mtime stays
    assert (await node.getattr()).atime_ns == atime
    await handle.close()


@ASYNC
async def test_directory_changes_update_parent_times(fs: RamBackend) -> None:
    d = await fs.root.mkdir("d", 0o755, 0, 0)
    other = await fs.root.mkdir("o", 0o755, 0, 0)

    async def stamps(node: Node) -> tuple[int, int]:
        attr = await node.getattr()
        return attr.mtime_ns, attr.ctime_ns

    async def reset() -> None:
        await d.setattr(SetAttr(mtime_ns=5))
        await other.setattr(SetAttr(mtime_ns=5))

    steps: list[Callable[[], Awaitable[object]]] = [
        lambda: d.create("f", OpenFlags(O_RDWR), 0o644, 0, 0),
        lambda: d.mkdir("sub", 0o755, 0, 0),
        lambda: d.symlink("sl", "f", 0, 0),
        lambda: d.mknod("p", stat.S_IFIFO | 0o644, 0, 0, 0),
        lambda: d.unlink("p", False),
        lambda: d.rename("sl", other, "moved"),
    ]
    for step in steps:
        await reset()
        await step()
        mtime, ctime = await stamps(d)
        assert mtime > 5 and ctime == mtime
    assert (await stamps(other))[0] > 5
    node = await d.walk("f")
    await reset()
    await other.link("hard", node)
    assert (await stamps(other))[0] > 5


@ASYNC
async def test_setattr_times_and_ctime(fs: RamBackend) -> None:
    node = await make_file(fs.root, "f")
    await node.setattr(SetAttr(atime_ns=123, mtime_ns=456))
    attr = await node.getattr()
    assert (attr.atime_ns, attr.mtime_ns) == (123, 456) and attr.ctime_ns > 456
    before = time.time_ns()
    await node.setattr(SetAttr(atime_ns=UTIME_NOW, mtime_ns=UTIME_NOW))
    attr = await node.getattr()
    assert attr.atime_ns >= before and attr.mtime_ns >= before
    await node.setattr(SetAttr(mtime_ns=1))
    ctime = (await node.getattr()).ctime_ns
    await node.setattr(SetAttr(ctime=True))
    attr = await node.getattr()
    assert attr.ctime_ns >= ctime and attr.mtime_ns == 1


@ASYNC
async def test_chmod_keeps_type_and_touches_only_ctime(fs: RamBackend) -> None:
    node = await make_file(fs.root, "f", b"x")
    await node.setattr(SetAttr(mtime_ns=7))
    await node.setattr(SetAttr(mode=stat.S_IFDIR | 0o4751))
    attr = await node.getattr()
    assert attr.mode == stat.S_IFREG | 0o4751 and attr.mtime_ns == 7 and attr.ctime_ns > 7


@ASYNC
async def test_chown_clears_setuid_and_setgid(fs: RamBackend) -> None:
    node = await make_file(fs.root, "f", mode=0o6755)
    await node.setattr(SetAttr(mtime_ns=7))
    await node.setattr(SetAttr(uid=1, gid=2))
    attr = await node.getattr()
    assert (attr.uid, attr.gid) == (1, 2) and attr.mode == stat.S_IFREG | 0o755
    assert attr.ctime_ns > 7 and attr.mtime_ns == 7
    locking = await make_file(fs.root, "g", mode=0o2644)  # setgid without g+x: a lock mark
    await locking.setattr(SetAttr(gid=3))
    assert stat.S_IMODE((await locking.getattr()).mode) == 0o2644
    d = await fs.root.mkdir("d", 0o2755, 0, 0)
    await d.setattr(SetAttr(mode=0o2755))
    await d.setattr(SetAttr(uid=9))
    assert stat.S_IMODE((await d.getattr()).mode) == 0o2755  # directories keep it


@ASYNC
async def test_setgid_directory_inheritance(fs: RamBackend) -> None:
    d = await fs.root.mkdir("shared", 0o755, 0, 50)
    await d.setattr(SetAttr(mode=0o2775))
    f, handle = await d.create("f", OpenFlags(O_RDWR), 0o644, 1000, 1000)
    await handle.close()
    sub = await d.mkdir("sub", 0o755, 1000, 1000)
    link = await d.symlink("l", "f", 1000, 1000)
    node = await d.mknod("p", stat.S_IFIFO | 0o644, 0, 1000, 1000)
    for n in (f, sub, link, node):
        assert (await n.getattr()).gid == 50
    assert (await sub.getattr()).mode & stat.S_ISGID
    assert not (await f.getattr()).mode & stat.S_ISGID
    plain = await fs.root.mkdir("plain", 0o2755, 1000, 1000)  # mkdir drops setgid itself
    attr = await plain.getattr()
    assert attr.gid == 1000 and not attr.mode & stat.S_ISGID


# --- statfs and limits ---------------------------------------------------------


@ASYNC
async def test_statfs() -> None:
    fs = RamBackend(size_limit=1 << 20, inode_limit=100)
    st = await fs.root.statfs()
    assert (st.bsize, st.blocks, st.bfree, st.bavail) == (4096, 256, 256, 256)
    assert (st.files, st.ffree, st.fstype, st.namelen) == (100, 99, TMPFS_MAGIC, 255)
    node = await make_file(fs.root, "f", bytes(10_000))
    st = await node.statfs()
    assert st.bfree == st.bavail == 253 and st.ffree == 98
    unlimited = await RamBackend().root.statfs()
    assert unlimited.blocks >= 2**30 and unlimited.files >= 2**30
    assert unlimited.fsid != st.fsid


@ASYNC
async def test_size_limit_enospc_writes_nothing() -> None:
    fs = RamBackend(size_limit=3 * PAGE_SIZE)
    node = await make_file(fs.root, "f", b"a" * PAGE_SIZE)
    handle = await node.open(OpenFlags(O_RDWR))
    before = await node.getattr()
    await raises(errno.ENOSPC, handle.write(PAGE_SIZE - 10, b"b" * (3 * PAGE_SIZE)))
    after = await node.getattr()
    assert (after.size, after.blocks, after.data_version) == (before.size, before.blocks,
                                                              before.data_version)
    assert await handle.read(0, 2 * PAGE_SIZE) == b"a" * PAGE_SIZE
    assert fs.used_bytes == PAGE_SIZE
    await handle.write(2**40, b"c" * 2 * PAGE_SIZE)  # exactly fills the limit, far away
    await raises(errno.ENOSPC, handle.write(5 * PAGE_SIZE, b"d"))
    await handle.write(PAGE_SIZE // 2, b"e" * 100)  # overwriting allocated space is free
    await node.setattr(SetAttr(size=PAGE_SIZE))
    await handle.write(PAGE_SIZE, b"f" * 2 * PAGE_SIZE)
    await handle.close()


@ASYNC
async def test_inode_limit() -> None:
    fs = RamBackend(inode_limit=3)
    node = await make_file(fs.root, "a")
    await fs.root.mkdir("b", 0o755, 0, 0)
    await raises(errno.ENOSPC, fs.root.create("c", OpenFlags(O_RDWR), 0o644, 0, 0))
    await raises(errno.ENOSPC, fs.root.mkdir("c", 0o755, 0, 0))
    await raises(errno.ENOSPC, fs.root.symlink("c", "a", 0, 0))
    await raises(errno.ENOSPC, fs.root.mknod("c", stat.S_IFIFO, 0, 0, 0))
    assert fs.used_bytes == 0  # the refused symlink gave its bytes back
    # a hard link counts as an inode, as in tmpfs (shmem_link): names cost memory too
    await raises(errno.ENOSPC, fs.root.link("c", node))
    await fs.root.unlink("b", True)
    await fs.root.link("c", node)
    await raises(errno.ENOSPC, fs.root.mkdir("b2", 0o755, 0, 0))
    await fs.root.unlink("a", False)  # the file keeps its name "c": one inode back
    await fs.root.mkdir("b2", 0o755, 0, 0)
    assert await names(fs.root) == ["c", "b2"]
    await fs.root.rename("c", fs.root, "d")  # a rename neither takes nor gives one
    assert fs.used_inodes == 3
    await fs.root.unlink("d", False)
    assert fs.used_inodes == 2


# --- open-unlink ---------------------------------------------------------------


@ASYNC
async def test_unlinked_open_file_keeps_working_until_last_close() -> None:
    fs = RamBackend(size_limit=1 << 20)
    node, handle = await fs.root.create("f", OpenFlags(O_RDWR), 0o644, 0, 0)
    second = await node.open(OpenFlags(O_RDONLY))
    await handle.write(0, b"x" * 10_000)
    await fs.root.unlink("f", False)
    assert await names(fs.root) == []
    attr = await node.getattr()
    assert attr.nlink == 0 and attr.size == 10_000
    await handle.write(10_000, b"more")
    assert await second.read(9_998, 10) == b"xxmore"
    await node.setattr(SetAttr(size=5, mode=0o600))
    assert (await node.getattr()).size == 5
    await node.xattr_set("user.k", b"v", 0)
    assert fs.used_bytes > 0 and fs.used_inodes == 2
    await handle.close()
    assert fs.used_bytes > 0 and await second.read(0, 10) == b"xxxxx"
    await second.close()
    assert fs.used_bytes == 0 and fs.used_inodes == 1
    await second.close()  # a second close changes nothing
    assert fs.used_inodes == 1


@ASYNC
async def test_unlink_frees_space_without_open_handles() -> None:
    fs = RamBackend(size_limit=PAGE_SIZE)
    await make_file(fs.root, "f", bytes(PAGE_SIZE))
    _, handle = await fs.root.create("g", OpenFlags(O_RDWR), 0o644, 0, 0)
    await raises(errno.ENOSPC, handle.write(0, b"x"))
    await handle.close()
    await fs.root.unlink("g", False)
    await fs.root.unlink("f", False)
    assert fs.used_bytes == 0 and fs.used_inodes == 1
    await make_file(fs.root, "g", bytes(PAGE_SIZE))


@ASYNC
async def test_replaced_rename_target_open_stays_readable(fs: RamBackend) -> None:
    victim = await make_file(fs.root, "victim", b"still here")
    handle = await victim.open(OpenFlags(O_RDONLY))
    await make_file(fs.root, "new", b"n")
    await fs.root.rename("new", fs.root, "victim")
    assert (await victim.getattr()).nlink == 0
    assert await handle.read(0, 100) == b"still here"
    await handle.close()
    assert fs.used_inodes == 2


@ASYNC
async def test_removed_directory_with_open_handle(fs: RamBackend) -> None:
    d = await fs.root.mkdir("d", 0o755, 0, 0)
    handle = await d.open(OpenFlags(O_RDONLY))
    await fs.root.unlink("d", True)
    assert await d.readdir(0, 10) == []
    assert (await d.getattr()).nlink == 0
    assert await d.walk("..") is fs.root
    await handle.close()
    assert fs.used_inodes == 1


def test_handles_are_handles() -> None:
    import asyncio

    async def scenario() -> None:
        fs = RamBackend()
        _, handle = await fs.root.create("f", OpenFlags(O_RDWR), 0o644, 0, 0)
        assert isinstance(handle, Handle)
        await handle.fsync(True)
        await handle.close()
        await fs.close()

    asyncio.run(scenario())
