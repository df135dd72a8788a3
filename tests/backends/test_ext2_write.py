"""The ext2 backend's write path, checked with e2fsck, debugfs and dumpe2fs."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest
from ext2util import debugfs_cat, dumpe2fs, e2fsck, mkfs, open_image, snapshot

from ninep.backends.ext2 import Ext2Backend
from ninep.vfs.node import Node, OpenFlags, SetAttr

O_RDWR = 2
UID = GID = 1000


async def make_file(directory: Node, name: str, data: bytes = b"") -> Node:
    node, handle = await directory.create(name, OpenFlags(O_RDWR), 0o644, UID, GID)
    pos = 0
    while pos < len(data):
        pos += await handle.write(pos, data[pos:pos + 65536])
    await handle.close()
    return node


async def read_all(node: Node) -> bytes:
    handle = await node.open(OpenFlags(0))
    size = (await node.getattr()).size
    data = bytes(await handle.read(0, size + 1))
    await handle.close()
    return data


def assert_clean(image: Path) -> None:
    code, out = e2fsck(image)
    assert code == 0, out


@pytest.fixture(params=[(1024, 256), (4096, 128), (2048, 256)], ids=["1k-256", "4k-128", "2k-256"])
def image(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    block, inode = request.param
    return mkfs(tmp_path / "fs.img", "32M", block, inode)


async def test_files_read_back_with_debugfs(image: Path) -> None:
    fs = open_image(image)
    blobs = {f"f{n}": bytes((n * 7 + i) % 251 for i in range(n)) for n in
             (0, 1, 1023, 1024, 1025, 12 * 1024 + 1, 300_000, 3_000_000)}
    d = await fs.root.mkdir("d", 0o755, UID, GID)
    for name, data in blobs.items():
        await make_file(d, name, data)
    await fs.close()
    assert_clean(image)
    for name, data in blobs.items():
        assert debugfs_cat(image, f"d/{name}") == data, name


async def test_sparse_writes_at_every_level_and_truncate_frees(image: Path) -> None:
    fs = open_image(image)
    before = (await fs.root.statfs()).bfree
    node, handle = await fs.root.create("sparse", OpenFlags(O_RDWR), 0o644, UID, GID)
    bs = fs.fs.block_size
    per = bs // 4
    spots = [0, 11 * bs + 5, (12 + per // 2) * bs, (12 + per + per * 3 + 1) * bs - 2]
    if bs == 1024:
        spots.append((12 + per + per * per + 700) * bs + 3)  # triple indirect
    for spot in spots:
        await handle.write(spot, b"DATA")
    for spot in spots:
        assert await handle.read(spot, 4) == b"DATA"
    assert await handle.read(spots[-1] - 100, 100) == bytes(100)
    await handle.close()
    await fs.root.statfs()
    fs.checkpoint()
    assert_clean(image)  # e2fsck on a live (checkpointed) image
    assert debugfs_cat(image, "sparse")[spots[2]:spots[2] + 4] == b"DATA"
    await node.setattr(SetAttr(size=spots[2] + 2))
    await node.setattr(SetAttr(size=spots[2] + 50))  # the cut-off tail reads back as zeros
    assert (await read_all(node))[spots[2]:] == b"DA" + bytes(48)
    await node.setattr(SetAttr(size=0))
    await fs.close()
    assert_clean(image)
    fs = open_image(image)
    assert (await fs.root.statfs()).bfree == before
    await fs.close()


async def test_free_counts_match_dumpe2fs(image: Path) -> None:
    fs = open_image(image)
    for i in range(50):
        await make_file(fs.root, f"file{i}", b"z" * (i * 1000))
    for i in range(0, 50, 3):
        await fs.root.unlink(f"file{i}", False)
    await fs.root.mkdir("dir", 0o700, UID, GID)
    info = await fs.root.statfs()
    await fs.close()
    header = dumpe2fs(image)
    assert (info.bfree, info.ffree) == (int(header["Free blocks"]), int(header["Free inodes"]))
    assert_clean(image)


async def test_namespace_changes_stay_consistent(image: Path) -> None:
    fs = open_image(image)
    root = fs.root
    a = await root.mkdir("a", 0o755, UID, GID)
    b = await root.mkdir("b", 0o755, UID, GID)
    sub = await a.mkdir("sub", 0o755, UID, GID)
    await make_file(sub, "inner", b"inner")
    await root.rename("a", b, "a2")  # a directory to a new parent: '..' and link counts
    assert (await (await sub.walk("..")).walk("..")).inode is b.inode  # type: ignore[attr-defined]
    await b.mkdir("empty", 0o755, UID, GID)
    await b.rename("a2", b, "empty")  # over an empty directory
    f = await make_file(root, "f", b"file")
    await b.link("hard", f)
    await make_file(root, "g", b"g")
    await root.rename("g", root, "f")  # over a file with another link
    assert (await f.getattr()).nlink == 1
    await root.symlink("fast", "x" * 59, UID, GID)
    await root.symlink("slow", "y" * 60, UID, GID)
    await root.mknod("fifo", stat.S_IFIFO | 0o600, 0, UID, GID)
    dev = await root.mknod("dev", stat.S_IFCHR | 0o600, (300 << 8) | 5, UID, GID)
    assert (await dev.getattr()).rdev == (300 << 8) | 5
    await f.setattr(SetAttr(mode=0o4751, uid=5, gid=6, atime_ns=10**18, mtime_ns=10**18 + 7))
    before = await snapshot(root)
    await fs.close()
    assert_clean(image)
    fs = open_image(image)
    assert await snapshot(fs.root) == before
    attr = await (await (await fs.root.walk("b")).walk("hard")).getattr()
    assert (attr.uid, attr.gid, attr.mtime_ns) == (5, 6, 10**18 + 7) or fs.fs.inode_size == 128
    assert await (await fs.root.walk("slow")).readlink() == "y" * 60
    await fs.close()


async def test_xattrs_in_inode_in_block_and_shared(image: Path) -> None:
    fs = open_image(image)
    one = await make_file(fs.root, "one")
    two = await make_file(fs.root, "two")
    await one.xattr_set("user.small", b"s", 0)
    await one.xattr_set("user.large", b"L" * 600, 0)
    await one.xattr_set("trusted.t", b"t", 0)
    fs.checkpoint()
    assert_clean(image)
    # Share one's xattr block with two, as e2fsprogs and the kernel do for equal sets.
    block = one.inode.file_acl  # type: ignore[attr-defined]
    assert block
    buf = fs.fs.image.block(block)
    buf[4] = 2  # refcount
    fs.fs.image.touch(block)
    two.inode.file_acl = block  # type: ignore[attr-defined]
    two.inode.blocks += fs.fs.block_size // 512  # type: ignore[attr-defined]
    fs.fs.dirty(two.inode)  # type: ignore[attr-defined]
    fs.checkpoint()
    assert_clean(image)
    assert await two.xattr_get("user.large") == b"L" * 600
    await two.xattr_set("user.large", b"changed", 0)  # copy on write
    assert await one.xattr_get("user.large") == b"L" * 600
    assert two.inode.file_acl != block  # type: ignore[attr-defined]
    await one.xattr_remove("user.large")
    await fs.root.unlink("two", False)
    with pytest.raises(OSError) as exc:
        await one.xattr_set("user.huge", b"h" * (fs.fs.block_size + 1), 0)
    assert exc.value.errno == errno.ERANGE  # Linux's ext2_xattr_set: more than a block
    assert await one.xattr_get("user.small") == b"s"
    await fs.close()
    assert_clean(image)


async def test_open_unlinked_file_freed_at_close(image: Path) -> None:
    fs = open_image(image)
    free = (await fs.root.statfs()).bfree
    node = await make_file(fs.root, "f", b"q" * 200_000)
    handle = await node.open(OpenFlags(O_RDWR))
    await fs.root.unlink("f", False)
    fs.checkpoint()
    await handle.write(200_000, b"more")
    assert await handle.read(199_998, 10) == b"qqmore"
    await handle.close()
    fs.checkpoint()
    assert (await fs.root.statfs()).bfree == free
    await fs.close()
    assert_clean(image)


async def test_enospc_and_out_of_inodes_leave_a_clean_image(tmp_path: Path) -> None:
    image = mkfs(tmp_path / "fs.img", "2M", 1024, 128, inodes=64)
    fs = open_image(image)
    node, handle = await fs.root.create("fill", OpenFlags(O_RDWR), 0o644, UID, GID)
    chunk = b"f" * 65536
    pos = 0
    with pytest.raises(OSError) as exc:
        while True:
            pos += await handle.write(pos, chunk)
    assert exc.value.errno == errno.ENOSPC
    assert (await node.getattr()).size == pos
    await handle.close()
    with pytest.raises(OSError) as exc:
        for i in range(100):
            await make_file(fs.root, f"i{i}")
    assert exc.value.errno == errno.ENOSPC
    await fs.close()
    assert_clean(image)
    fs = open_image(image)
    await fs.root.unlink("fill", False)
    for i in range(100):
        try:
            await fs.root.unlink(f"i{i}", False)
        except FileNotFoundError:
            break
    await make_file(fs.root, "after", b"a" * 100_000)
    await fs.close()
    assert_clean(image)


async def test_hashed_directory_changed_stays_valid(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    (seed / "big").mkdir(parents=True)
    for i in range(400):
        (seed / "big" / f"name-{i:04d}-padding-padding").write_bytes(b"x")
    image = mkfs(tmp_path / "fs.img", "16M", seed=seed)
    assert e2fsck(image, "-fyD")[0] in (0, 1)
    fs = open_image(image)
    big = await fs.root.walk("big")
    for i in range(0, 400, 2):
        await big.unlink(f"name-{i:04d}-padding-padding", False)
    for i in range(300):
        await make_file(big, f"new-{i}")
    names = {e.name for e in await big.readdir(0, 10_000)}
    assert len(names) == 500
    await fs.close()
    assert_clean(image)


async def test_mount_state_lock_and_force(image: Path) -> None:
    count = int(dumpe2fs(image)["Mount count"])
    fs = open_image(image)
    assert dumpe2fs(image)["Filesystem state"] == "not clean"
    assert int(dumpe2fs(image)["Mount count"]) == count + 1
    from ninep.backends.registry import BackendConfigError, open_backend
    with pytest.raises(BackendConfigError, match="in use"):
        await open_backend("ext2", str(image), {}, False)
    await fs.close()
    assert dumpe2fs(image)["Filesystem state"] == "clean"
    crashed = open_image(image)
    import atexit
    import os
    atexit.unregister(crashed.fs.close)  # as if the server died: never marked clean
    crashed.fs.closed = True
    os.close(crashed.fs.image.fd)
    with pytest.raises(BackendConfigError, match="e2fsck"):
        await open_backend("ext2", str(image), {}, False)
    ro = await open_backend("ext2", str(image), {}, True)
    await ro.close()
    forced = await open_backend("ext2", str(image), {"force": "true"}, False)
    await forced.close()
    assert_clean(image)


def test_loop_devices_of_an_image_are_found_by_inode(image: Path, tmp_path: Path) -> None:
    from ninep.backends.ext2.fs import loop_devices_of
    sys_block = tmp_path / "sys-block"
    other = tmp_path / "other.img"
    other.write_bytes(b"")
    link = tmp_path / "link.img"
    link.hardlink_to(image)  # the kernel shows the path it was given: any name of the file
    for name, backing in [("loop0", other), ("loop3", link), ("loop5", image),
                          ("loop7", tmp_path / "gone.img"), ("vda", None)]:
        (sys_block / name).mkdir(parents=True)
        if backing is not None:
            (sys_block / name / "loop").mkdir()
            (sys_block / name / "loop" / "backing_file").write_text(f"{backing}\n")
    fd = os.open(image, os.O_RDONLY)
    try:
        assert loop_devices_of(fd, str(sys_block)) == ["/dev/loop3", "/dev/loop5"]
        assert loop_devices_of(fd, str(tmp_path / "nowhere")) == []
    finally:
        os.close(fd)


async def test_an_image_on_a_kernel_loop_device_is_refused_for_writing(image: Path) -> None:
    attach = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True,
                            text=True)
    if attach.returncode != 0:
        pytest.skip(f"no loop device here: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    try:
        from ninep.backends.registry import BackendConfigError, open_backend
        with pytest.raises(BackendConfigError, match=f"attached to {device}.*losetup -d"):
            await open_backend("ext2", str(image), {}, False)
        ro = await open_backend("ext2", str(image), {}, True)  # read-only: a warning
        await ro.close()
    finally:
        subprocess.run(["losetup", "-d", device], check=True)
    fs = await open_backend("ext2", str(image), {}, False)  # detached: served again
    await fs.close()
    assert_clean(image)


def test_backend_class_is_exported() -> None:
    assert Ext2Backend.kind == "ext2"


async def test_unlinking_fast_symlinks_and_devices_frees_no_blocks(image: Path) -> None:
    # Regression (found by the model test): i_block of a fast symlink holds its text
    # and a device's its number; freeing them as block numbers broke the bitmaps.
    fs = open_image(image)
    free = (await fs.root.statfs()).bfree
    await fs.root.symlink("s", "../b", UID, GID)
    await fs.root.mknod("c", stat.S_IFCHR | 0o600, (1 << 8) | 3, UID, GID)
    await fs.root.unlink("s", False)
    await fs.root.unlink("c", False)
    assert (await fs.root.statfs()).bfree == free
    await fs.close()
    assert_clean(image)


async def test_big_files_are_freed_in_steps(tmp_path: Path) -> None:
    import asyncio

    from ninep.backends.ext2.fs import FREE_STEP
    image = mkfs(tmp_path / "fs.img", "128M", 1024, 128)
    fs = open_image(image)
    free = (await fs.root.statfs()).bfree
    size = (FREE_STEP + 1000) * 1024
    chunk = b"b" * (1 << 20)
    for name in ("unlinked", "truncated", "cut-short"):
        _, handle = await fs.root.create(name, OpenFlags(O_RDWR), 0o644, UID, GID)
        for pos in range(0, size, len(chunk)):
            await handle.write(pos, chunk)
        await handle.close()
    await fs.root.unlink("unlinked", False)
    assert fs.fs.tasks, "a big file should be freed by a background task"
    await asyncio.gather(*fs.fs.tasks)
    truncated = await fs.root.walk("truncated")
    await truncated.setattr(SetAttr(size=10))
    assert await read_all(truncated) == b"b" * 10
    await fs.root.unlink("cut-short", False)  # the server stops before the task is done
    await fs.close()
    assert_clean(image)
    fs = open_image(image)
    assert (await fs.root.statfs()).bfree == free - 1 - 0  # "truncated" keeps one block
    await fs.close()


async def test_first_xattr_turns_on_ext_attr_and_revision_0_has_none(tmp_path: Path) -> None:
    # Regression (found by the model test): an xattr block on an image without
    # ext_attr made e2fsck clear it.
    image = mkfs(tmp_path / "fs.img", "8M", features="^ext_attr")
    fs = open_image(image)
    await fs.root.xattr_set("user.k", b"v" * 200, 0)
    await fs.close()
    assert_clean(image)
    assert "ext_attr" in dumpe2fs(image)["Filesystem features"]
    old = mkfs(tmp_path / "old.img", "8M", rev=0)
    fs = open_image(old)
    with pytest.raises(OSError) as exc:
        await fs.root.xattr_set("user.k", b"v", 0)
    assert exc.value.errno == errno.EOPNOTSUPP
    await fs.close()
    assert_clean(old)


async def test_checkpoints_come_after_whole_operations(tmp_path: Path) -> None:
    import asyncio

    from ninep.backends.ext2 import fs as fsmod
    image = mkfs(tmp_path / "fs.img", "32M", 4096, 128, inodes=8192)
    fs = open_image(image)
    for i in range(fsmod._DIRTY_LIMIT + 10):  # a dirty inode each
        await make_file(fs.root, f"f{i}")
    assert fs.fs.dirty_inodes, "a checkpoint ran in the middle of the event loop's turn"
    await asyncio.sleep(0)  # the queued checkpoint starts now, in the image's thread
    await fs.fs.settle()
    assert not fs.fs.dirty_inodes and not fs.fs.image.dirty
    assert debugfs_cat(image, "f7") == b""  # on disk while the image is still open
    assert "f7" in subprocess.run(["debugfs", "-R", "ls /", str(image)], capture_output=True,
                                  text=True, env={**os.environ, "PATH": "/usr/sbin:/sbin"}).stdout
    await fs.close()
    assert_clean(image)
