"""The ext2 backend against hostile requests and failing write-back, checked with e2fsprogs.

A checkpoint that fails (a bad inode, an I/O error on the image) must leave
every dirty item dirty, keep failing fsync until the fault is gone, and never
let a clean shutdown mark a half-written image clean.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import struct
from pathlib import Path

import pytest
from ext2util import debugfs_cat, dumpe2fs, e2fsck, mkfs, open_image

from ninep.backends.ext2 import Ext2Backend
from ninep.backends.ext2.fs import Ext2Error, FileSystem
from ninep.backends.ext2.inode import Inode
from ninep.vfs.node import Cred, Node, OpenFlags, SetAttr

O_RDWR = 2
UID = GID = 1000


async def make_file(directory: Node, name: str, data: bytes) -> Node:
    node, handle = await directory.create(name, OpenFlags(O_RDWR), 0o644, UID, GID)
    await handle.write(0, data)
    await handle.close()
    return node


async def fsync(node: Node) -> None:
    handle = await node.open(OpenFlags(0))  # read-only: a directory too
    try:
        await handle.fsync(False)
    finally:
        await handle.close()


def assert_clean(image: Path) -> None:
    code, out = e2fsck(image)
    assert code == 0, out


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return mkfs(tmp_path / "fs.img", "16M", 1024, 256)


def _fail_pack_of(monkeypatch: pytest.MonkeyPatch, ino: int) -> None:
    """Make packing inode ``ino`` fail as an unencodable field does (struct.error)."""
    real = Inode.pack

    def pack(self: Inode) -> bytes:
        if self.ino == ino:
            raise struct.error("'I' format requires 0 <= number <= 4294967295")
        return real(self)

    monkeypatch.setattr(Inode, "pack", pack)


# --- a checkpoint is all or nothing --------------------------------------------


async def test_an_inode_that_cannot_be_packed_keeps_every_fsync_failing(
        image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = open_image(image)
    files = {f"f{i}": bytes([i]) * (1000 + 300 * i) for i in range(10)}
    nodes = {name: await make_file(fs.root, name, data) for name, data in files.items()}
    bad = (await nodes["f4"].getattr()).ino  # in the middle of the dirty set
    with monkeypatch.context() as patch:
        _fail_pack_of(patch, bad)
        for _ in range(3):  # every fsync fails while the fault lasts, not only the first
            with pytest.raises(OSError) as info:
                await fsync(nodes["f7"])
            assert info.value.errno == errno.EIO
    await fsync(nodes["f7"])  # the fault is gone: everything is written now
    await fs.close()
    assert_clean(image)
    again = open_image(image, read_only=True)
    for name, data in files.items():
        handle = await (await again.root.walk(name)).open(OpenFlags(0))
        assert bytes(await handle.read(0, len(data) + 1)) == data, name
        await handle.close()
    await again.close()


async def test_an_image_write_that_fails_once_loses_nothing(
        image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = open_image(image)
    files = {f"g{i}": bytes([i + 1]) * (2000 + 100 * i) for i in range(12)}
    nodes = {name: await make_file(fs.root, name, data) for name, data in files.items()}
    ext2 = fs.fs
    middle = (await nodes["g6"].getattr()).ino
    target = ext2._inode_offset(middle)
    real = ext2.image.pwrite
    failures = []

    def pwrite(offset: int, data: bytes | bytearray | memoryview) -> None:
        if not failures and offset <= target < offset + len(data):
            failures.append(offset)
            raise OSError(errno.EIO, "injected: the inode table write failed")
        real(offset, data)

    monkeypatch.setattr(ext2.image, "pwrite", pwrite)
    with pytest.raises(OSError) as info:
        await fsync(nodes["g0"])
    assert info.value.errno == errno.EIO and failures
    await fsync(nodes["g0"])
    await fs.close()
    assert_clean(image)
    for name, data in files.items():
        assert debugfs_cat(image, name) == data, name


async def test_a_close_after_a_failed_checkpoint_leaves_the_image_not_clean(
        image: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fs = open_image(image)
    node = await make_file(fs.root, "late", b"x" * 5000)
    _fail_pack_of(monkeypatch, (await node.getattr()).ino)
    with caplog.at_level(logging.ERROR, logger="ninep.backends.ext2.fs"):
        await fs.close()
    assert dumpe2fs(image)["Filesystem state"] == "not clean"
    assert any("not clean" in r.getMessage() for r in caplog.records), caplog.text
    with pytest.raises(Ext2Error):
        Ext2Backend(str(image))  # a read-write open wants e2fsck (or force=true) first


async def _timed_checkpoint(ext2: FileSystem) -> None:
    """The timer's callback, and the write-back it starts in the image's thread."""
    task = ext2._timed_checkpoint()
    assert task is not None
    await task


async def test_the_timed_checkpoint_logs_a_failure_once_and_retries(
        image: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fs = open_image(image)
    nodes = [await make_file(fs.root, f"t{i}", b"t" * (700 * i)) for i in range(6)]
    ext2 = fs.fs
    with monkeypatch.context() as patch, caplog.at_level(logging.DEBUG, "ninep.backends.ext2.fs"):
        _fail_pack_of(patch, (await nodes[3].getattr()).ino)
        for _ in range(5):  # the timer's callback: nothing may escape into the event loop
            await _timed_checkpoint(ext2)
            assert ext2.timer is not None  # another try is scheduled
            assert len(ext2.dirty_inodes) >= len(nodes)
    above_debug = [r for r in caplog.records if r.levelno > logging.DEBUG]
    assert len(above_debug) == 1, caplog.text
    await _timed_checkpoint(ext2)
    assert not ext2.dirty_inodes
    await fs.close()
    assert_clean(image)


async def test_a_failed_image_fsync_keeps_the_image_not_clean(
        image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = open_image(image)
    node = await make_file(fs.root, "synced", b"s" * 3000)

    def fsync_fails(fd: int) -> None:
        raise OSError(errno.EIO, "injected: fsync of the image failed")

    with monkeypatch.context() as patch:
        patch.setattr("ninep.backends.image_file.os.fsync", fsync_fails)
        with pytest.raises(OSError):
            await fsync(node)
    await fsync(node)
    await fs.close()
    # Linux drops the pages of a failed fsync: data written before it may be gone,
    # so the image must be checked before it is trusted again.
    assert dumpe2fs(image)["Filesystem state"] == "not clean"


# --- device numbers the format cannot hold -------------------------------------


def makedev(major: int, minor: int) -> int:
    """glibc's makedev for any 32-bit major and minor (os.makedev takes C ints)."""
    return ((major & 0xFFFFF000) << 32) | ((major & 0xFFF) << 8) \
        | ((minor & 0xFFFFFF00) << 12) | (minor & 0xFF)


@pytest.mark.parametrize("major,minor", [(0x1000000, 0), (0x1000, 0), (0, 1 << 20),
                                         (0x80000000, 5), (1, 0xFFFFFFFF),
                                         (0xFFFFFFFF, 0xFFFFFFFF)])
async def test_mknod_of_a_device_number_ext2_cannot_hold_is_einval(
        image: Path, major: int, minor: int) -> None:
    fs = open_image(image)
    before = await make_file(fs.root, "before", b"b" * 4000)
    with pytest.raises(OSError) as info:
        await fs.root.mknod("dev", stat.S_IFCHR | 0o600, makedev(major, minor), UID, GID)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError):
        await fs.root.walk("dev")  # nothing was made
    after = await make_file(fs.root, "after", b"a" * 4000)
    await fsync(before)
    await fsync(after)
    await fs.close()
    assert_clean(image)
    assert debugfs_cat(image, "before") == b"b" * 4000
    assert debugfs_cat(image, "after") == b"a" * 4000


@pytest.mark.parametrize("rdev", [-1, 1 << 64, 1 << 200])
async def test_mknod_of_a_device_number_out_of_any_range_is_einval(image: Path,
                                                                   rdev: int) -> None:
    fs = open_image(image)
    with pytest.raises(OSError) as info:
        await fs.root.mknod("dev", stat.S_IFBLK | 0o600, rdev, UID, GID)
    assert info.value.errno == errno.EINVAL
    await fs.close()
    assert_clean(image)


async def test_the_largest_device_numbers_round_trip(image: Path) -> None:
    fs = open_image(image)
    rdev = os.makedev(0xFFF, 0xFFFFF)
    await fs.root.mknod("big", stat.S_IFBLK | 0o600, rdev, UID, GID)
    await fs.root.mknod("bad-ignored", stat.S_IFIFO | 0o600, 1 << 70, UID, GID)  # Linux
    await fs.close()  # ignores the device number of a FIFO
    assert_clean(image)
    again = open_image(image, read_only=True)
    assert (await (await again.root.walk("big")).getattr()).rdev == rdev
    await again.close()


# --- a listing ends (Node.listing_end) ------------------------------------------


async def test_a_listing_ends_though_new_names_fill_gaps_and_new_blocks(image: Path) -> None:
    # Cookies are byte positions: a new name may fill a gap left by an unlink, below
    # or above the cursor, or go into a block appended past the end.
    from ninep.vfs.namespace import Namespace

    fs = open_image(image)
    d = await fs.root.mkdir("d", 0o755, UID, GID)
    names = [f"entry-with-a-long-name-{i:03d}" for i in range(90)]  # several 1 KiB blocks
    for name in names:
        await make_file(d, name, b"")
    for name in names[::3]:
        await d.unlink(name, False)
    survivors = set(names) - set(names[::3])
    size = (await d.getattr()).size
    assert await d.listing_end() == size and size >= 4 * 1024
    ns = await Namespace.build([("/", fs, False)])
    loc = await ns.walk(ns.root(), "d", Cred(0, 0))
    end = await ns.listing_end(loc)
    seen: list[str] = []
    cookie, made = 0, 0
    while batch := await ns.readdir(loc, cookie, 5, end):
        seen += [e.name for e in batch if e.name not in (".", "..")]
        cookie = batch[-1].cookie
        for _ in range(3):  # short names: they fit the gaps, before and after the cursor
            await make_file(d, f"n{made}", b"")
            made += 1
        assert made < 600, "the listing did not end"
    assert len(seen) == len(set(seen)), "an entry was listed twice"
    assert survivors <= set(seen)
    assert (await d.getattr()).size > size  # some new names went into new blocks
    with pytest.raises(OSError) as info:
        await (await d.walk(names[1])).listing_end()
    assert info.value.errno == errno.ENOTDIR
    await fs.close()
    assert_clean(image)


# --- what a hostile client sends: every value checked before a struct or the image --


@pytest.mark.parametrize("name,code", [("n" * 256, errno.ENAMETOOLONG),
                                       ("é" * 128, errno.ENAMETOOLONG),
                                       ("a/b", errno.EINVAL), ("a\0b", errno.EINVAL),
                                       ("", errno.EINVAL), (".", errno.EINVAL),
                                       ("..", errno.EINVAL)])
async def test_names_a_directory_entry_cannot_hold_are_refused(image: Path, name: str,
                                                               code: int) -> None:
    fs = open_image(image)
    root = fs.root
    target = await make_file(root, "target", b"t")
    attempts = [root.create(name, OpenFlags(O_RDWR), 0o644, UID, GID), root.mkdir(name, 0o755, UID, GID),
                root.symlink(name, "target", UID, GID),
                root.mknod(name, stat.S_IFIFO | 0o644, 0, UID, GID), root.link(name, target)]
    for attempt in attempts:
        with pytest.raises(OSError) as info:
            await attempt
        assert info.value.errno == code
    with pytest.raises(OSError) as info:
        await root.rename("target", root, name)
    assert info.value.errno == (errno.EBUSY if name in (".", "..") else code)  # renameat2
    await fsync(target)
    await fs.close()
    assert_clean(image)
    assert debugfs_cat(image, "target") == b"t"


async def test_dot_and_dotdot_are_never_removed_or_renamed(image: Path) -> None:
    # An empty directory's "." once went as if it were a child: its parent's link
    # count fell below zero and no checkpoint could encode it again.
    fs = open_image(image)
    d = await fs.root.mkdir("d", 0o755, UID, GID)
    e = await d.mkdir("e", 0o755, UID, GID)
    refused = [(e.unlink(".", True), errno.EINVAL), (e.unlink("..", True), errno.ENOTEMPTY),
               (e.unlink(".", False), errno.EISDIR), (e.unlink("..", False), errno.EISDIR),
               (e.rename(".", d, "x"), errno.EBUSY), (e.rename("..", d, "y"), errno.EBUSY),
               (d.rename("e", e, ".."), errno.EBUSY)]
    for attempt, code in refused:
        with pytest.raises(OSError) as info:
            await attempt
        assert info.value.errno == code
    assert (await d.getattr()).nlink == 3
    await fsync(fs.root)
    await fs.close()
    assert_clean(image)


async def test_a_symlink_target_with_a_nul_is_einval(image: Path) -> None:
    fs = open_image(image)
    for target in ("a\0b", "x" * 100 + "\0"):  # a fast and a slow symlink
        with pytest.raises(OSError) as info:
            await fs.root.symlink("link", target, UID, GID)
        assert info.value.errno == errno.EINVAL
    await fs.close()
    assert_clean(image)


@pytest.mark.parametrize("owner", [-1, 0xFFFFFFFF, 1 << 32, 1 << 70])
async def test_owners_an_inode_cannot_hold_are_einval(image: Path, owner: int) -> None:
    fs = open_image(image)
    node = await make_file(fs.root, "f", b"f")
    refused = [fs.root.create("u", OpenFlags(O_RDWR), 0o644, owner, GID),
               fs.root.mkdir("d", 0o755, UID, owner),
               node.setattr(SetAttr(uid=owner)), node.setattr(SetAttr(gid=owner, size=0))]
    for attempt in refused:
        with pytest.raises(OSError) as info:
            await attempt
        assert info.value.errno == errno.EINVAL
    attr = await node.getattr()
    assert (attr.uid, attr.gid, attr.size) == (UID, GID, 1)  # nothing changed
    await node.setattr(SetAttr(uid=0xFFFFFFFE, gid=0x10000))  # the largest valid ones
    await fs.close()
    assert_clean(image)
    again = open_image(image, read_only=True)
    attr = await (await again.root.walk("f")).getattr()
    assert (attr.uid, attr.gid) == (0xFFFFFFFE, 0x10000)
    await again.close()


NS = 1_000_000_000


@pytest.mark.parametrize("inode_size,newest", [(256, (1 << 31) - 1 + (3 << 32)),
                                               (128, (1 << 31) - 1)])
async def test_times_past_what_the_inode_holds_are_clamped_not_wrapped(
        tmp_path: Path, inode_size: int, newest: int) -> None:
    image = mkfs(tmp_path / "fs.img", "16M", 1024, inode_size)
    fs = open_image(image)
    late = await make_file(fs.root, "late", b"")
    early = await make_file(fs.root, "early", b"")
    await late.setattr(SetAttr(atime_ns=(1 << 40) * NS, mtime_ns=(1 << 62) * NS + 5))
    await early.setattr(SetAttr(atime_ns=-(1 << 40) * NS, mtime_ns=-(1 << 33) * NS))
    await fs.close()
    assert_clean(image)
    again = open_image(image, read_only=True)
    a = await (await again.root.walk("late")).getattr()
    assert (a.atime_ns // NS, a.mtime_ns // NS) == (newest, newest)
    a = await (await again.root.walk("early")).getattr()
    assert (a.atime_ns // NS, a.mtime_ns // NS) == (-(1 << 31), -(1 << 31))
    await again.close()


async def test_readdir_from_a_negative_cookie_is_einval(image: Path) -> None:
    fs = open_image(image)
    await make_file(fs.root, "f", b"")
    with pytest.raises(OSError) as info:
        await fs.root.readdir(-1, 10)
    assert info.value.errno == errno.EINVAL
    await fs.close()


async def test_files_end_where_linux_ext2_ends_them(tmp_path: Path) -> None:
    # ext2_max_size: on 4 KiB blocks the 32-bit i_blocks stops a file near 2 TiB,
    # before the block tree's 4 TiB; past it the kernel would read the file short.
    image = mkfs(tmp_path / "fs.img", "32M", 4096, 256)
    fs = open_image(image)
    limit = 536346110 * 4096  # Linux's s_maxbytes for ext2 on 4 KiB blocks
    node, handle = await fs.root.create("big", OpenFlags(O_RDWR), 0o644, UID, GID)
    with pytest.raises(OSError) as info:
        await handle.write(limit, b"x")
    assert info.value.errno == errno.EFBIG
    with pytest.raises(OSError) as info:
        await node.setattr(SetAttr(size=limit + 1))
    assert info.value.errno == errno.EFBIG
    with pytest.raises(OSError) as info:
        await handle.write(1 << 63, b"x")
    assert info.value.errno == errno.EFBIG
    assert await handle.write(limit - 1, b"z") == 1
    await handle.close()
    assert (await node.getattr()).size == limit
    await fs.close()
    assert_clean(image)


async def test_a_large_file_on_revision_0_moves_it_to_revision_1(tmp_path: Path) -> None:
    # Revision 0 has no feature flags to say large_file: the kernel's ext2 moves the
    # file system to revision 1 first (ext2_update_dynamic_rev), and so does this.
    image = mkfs(tmp_path / "fs.img", "16M", 1024, rev=0)
    fs = open_image(image)
    _, handle = await fs.root.create("big", OpenFlags(O_RDWR), 0o644, UID, GID)
    await handle.write(2**31 + 5, b"x")
    await handle.close()
    await fs.close()
    code, out = e2fsck(image)
    assert code == 0 and "revision 0" not in out, out
    header = dumpe2fs(image)
    assert header["Filesystem revision #"].startswith("1")
    assert "large_file" in header["Filesystem features"]
    assert (header["Inode size"], header["First inode"]) == ("128", "11")


@pytest.mark.parametrize("name,code", [("user." + "k" * 251, errno.ERANGE), ("", errno.ERANGE),
                                       ("user.", errno.EINVAL), ("user.a\0b", errno.EINVAL),
                                       ("nobody.k", errno.EOPNOTSUPP)])
async def test_xattr_names_get_the_errnos_linux_gives(image: Path, name: str,
                                                      code: int) -> None:
    fs = open_image(image)
    node = await make_file(fs.root, "f", b"")
    for flags in (0, 2):  # XATTR_REPLACE: the name is checked before the lookup
        with pytest.raises(OSError) as info:
            await node.xattr_set(name, b"v", flags)
        assert info.value.errno == code
    await node.xattr_set("user." + "k" * 250, b"v", 0)  # 255 bytes: the longest
    await fs.close()
    assert_clean(image)


async def test_xattrs_larger_than_a_block_are_erange(image: Path) -> None:
    fs = open_image(image)  # 1 KiB blocks
    node = await make_file(fs.root, "f", b"")
    # An empty block holds 1024 - 32 (header) - 4 (end) - 20 (the entry of "v") bytes.
    for size, code in ((969, errno.ERANGE), (1025, errno.ERANGE), (65536, errno.ERANGE),
                       (65537, errno.E2BIG)):
        with pytest.raises(OSError) as info:
            await node.xattr_set("user.v", b"v" * size, 0)
        assert info.value.errno == code, size
    await node.xattr_set("user.v", b"v" * 968, 0)  # the largest that fits
    await fs.close()
    assert_clean(image)


# --- a directory operand that is not a directory (the network fuzzer's finding) ----


@pytest.mark.parametrize("kind", ["symlink", "file", "executable"])
async def test_the_backend_itself_refuses_a_rename_into_a_non_directory(
        image: Path, kind: str) -> None:
    """Called without vfs/ in front (which checks first), ext2 still answers ENOTDIR
    and writes nothing: it once put a directory entry into a symlink's block."""
    fs = open_image(image)
    moving = await make_file(fs.root, "moving", b"m")
    if kind == "symlink":
        into = await fs.root.symlink("into", "t" * 100, UID, GID)  # a slow symlink: a block
    else:
        into = await make_file(fs.root, "into", b"i" * 100)
        if kind == "executable":
            await into.setattr(SetAttr(mode=0o755))
    before = (await into.getattr()).size
    for call in (fs.root.rename("moving", into, "moved"), into.mkdir("d", 0o755, UID, GID),
                 into.create("c", OpenFlags(O_RDWR), 0o644, UID, GID), into.link("l", moving),
                 into.unlink("moving", False), into.walk("x")):
        with pytest.raises(OSError) as info:
            await call
        assert info.value.errno == errno.ENOTDIR
    assert (await into.getattr()).size == before
    assert await fs.root.walk("moving") is not None
    await fs.close()
    assert_clean(image)
