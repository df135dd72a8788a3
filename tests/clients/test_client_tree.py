"""The path-based API against a real 9P2000.L server: every Tree method, errors, walks."""

from __future__ import annotations

import errno
import stat
from collections.abc import Callable

import pytest

from ninep.clients import DT_DIR, DT_LNK, DT_REG, XATTR_CREATE, XATTR_REPLACE, Client, Tree
from ninep.wire.messages import Message, Treaddir
from tests.clients.targets import Target

Quirk = Callable[[str], None]


@pytest.mark.asyncio
async def test_many_attaches_on_one_connection(client: Client, target: Target) -> None:
    trees = [await client.attach(target.uname, target.aname, target.n_uname) for _ in range(5)]
    assert len({t.root.fid for t in trees}) == 5
    assert len({t.root.qid for t in trees}) == 1
    assert all(t.root.qid.type & 0x80 for t in trees)
    for t in trees:
        await t.close()


@pytest.mark.asyncio
async def test_listdir_and_scandir(tree: Tree) -> None:
    await tree.write_bytes("file", b"data")
    await tree.mkdir("dir")
    await tree.symlink("file", "link")
    assert sorted(await tree.listdir()) == ["dir", "file", "link"]
    entries = {e.name: e for e in await tree.scandir("/")}
    assert entries["file"].type == DT_REG and entries["file"].is_file()
    assert entries["dir"].type == DT_DIR and entries["dir"].is_dir()
    assert entries["link"].type == DT_LNK and entries["link"].is_symlink()
    assert entries["dir"].qid.type & 0x80
    assert entries["file"].qid.path == (await tree.stat("file")).st_ino
    assert await tree.listdir("dir") == []
    await tree.write_bytes("dir/inner", b"")
    [inner] = await tree.scandir("dir")
    assert inner.path == "dir/inner"


@pytest.mark.asyncio
async def test_listdir_follows_cookies_across_many_replies(target: Target, workdir: str) -> None:
    sent: list[Message] = []
    async with await Client.connect(target.url, msize=4096) as small:
        small.trace = lambda way, tag, msg: sent.append(msg) if way == "->" else None
        root = await small.attach(target.uname, target.aname, target.n_uname)
        tree = await root.subtree(workdir)
        names = {f"entry-{i:04d}-" + "x" * 100 for i in range(120)}
        for name in names:
            await tree.write_bytes(name, b"")
        assert set(await tree.listdir()) == names
        readdirs = [m for m in sent if isinstance(m, Treaddir)]
        assert len(readdirs) >= 4  # 120 entries of ~130 bytes cannot fit 4 KiB at once
        assert readdirs[0].offset == 0 and len({m.offset for m in readdirs}) == len(readdirs)
        assert all(m.count <= 4096 - 24 for m in readdirs)


@pytest.mark.asyncio
async def test_stat(tree: Tree) -> None:
    await tree.write_bytes("f", b"x" * 1234)
    st = await tree.stat("f")
    assert stat.S_ISREG(st.st_mode) and st.is_file() and not st.is_dir()
    assert st.st_size == 1234
    assert st.st_nlink == 1
    assert st.st_ino == st.qid.path
    assert st.st_mtime_ns > 0 and st.st_mtime == pytest.approx(st.st_mtime_ns / 1e9)
    assert st.valid & 0x7FF == 0x7FF
    top = await tree.stat("")
    assert top.is_dir() and top.qid.type & 0x80


@pytest.mark.asyncio
async def test_mkdir_makedirs(tree: Tree) -> None:
    await tree.mkdir("d", 0o750)
    st = await tree.stat("d")
    assert st.is_dir() and stat.S_IMODE(st.st_mode) == 0o750
    with pytest.raises(FileExistsError) as info:
        await tree.mkdir("d")
    assert info.value.filename == "d"
    await tree.makedirs("a/b/c")
    assert (await tree.stat("a/b/c")).is_dir()
    await tree.makedirs("a/b/c", exist_ok=True)
    with pytest.raises(FileExistsError):
        await tree.makedirs("a/b/c")
    with pytest.raises(FileNotFoundError):
        await tree.mkdir("missing/child")


@pytest.mark.asyncio
async def test_remove_rmdir_rmtree(tree: Tree) -> None:
    await tree.write_bytes("f", b"1")
    await tree.remove("f")
    assert not await tree.exists("f")
    await tree.mkdir("d")
    await tree.write_bytes("d/f", b"1")
    with pytest.raises(OSError) as info:
        await tree.rmdir("d")
    assert info.value.errno == errno.ENOTEMPTY and info.value.filename == "d"
    await tree.remove("d/f")
    await tree.rmdir("d")
    await tree.makedirs("t/u/v")
    await tree.write_bytes("t/u/v/w", b"")
    await tree.symlink("nowhere", "t/dangling")
    await tree.rmtree("t")
    assert await tree.listdir() == []
    with pytest.raises(FileNotFoundError) as info2:
        await tree.remove("gone")
    assert info2.value.filename == "gone"


@pytest.mark.asyncio
async def test_unlinkat_honours_at_removedir(tree: Tree) -> None:
    await tree.mkdir("d")
    await tree.write_bytes("f", b"")
    with pytest.raises(IsADirectoryError):
        await tree.remove("d")
    with pytest.raises(NotADirectoryError):
        await tree.rmdir("f")


@pytest.mark.asyncio
async def test_rename(tree: Tree) -> None:
    await tree.write_bytes("a", b"A")
    await tree.rename("a", "b")
    assert await tree.read_bytes("b") == b"A" and not await tree.exists("a")
    await tree.write_bytes("c", b"C")
    await tree.rename("c", "b")  # replaces
    assert await tree.read_bytes("b") == b"C"
    await tree.mkdir("d")
    await tree.rename("b", "d/e")
    assert await tree.listdir("d") == ["e"]
    await tree.rename("d", "dd")
    assert await tree.read_bytes("dd/e") == b"C"
    with pytest.raises(FileNotFoundError) as info:
        await tree.rename("nope", "x")
    assert info.value.filename == "nope" and info.value.filename2 == "x"


@pytest.mark.asyncio
async def test_symlink_readlink_link(tree: Tree) -> None:
    await tree.write_bytes("target", b"T")
    await tree.symlink("target", "sym")
    await tree.symlink("../elsewhere/x", "rel")
    assert await tree.readlink("sym") == "target"
    assert await tree.readlink("rel") == "../elsewhere/x"
    st = await tree.stat("sym")
    assert st.is_symlink() and st.qid.type & 0x02  # walks do not follow links
    await tree.link("target", "hard")
    a, b = await tree.stat("target"), await tree.stat("hard")
    assert a.st_ino == b.st_ino and a.st_nlink == b.st_nlink == 2
    assert await tree.read_bytes("hard") == b"T"
    with pytest.raises(OSError) as info:
        await tree.readlink("target")
    assert info.value.errno == errno.EINVAL and info.value.filename == "target"
    with pytest.raises(FileExistsError):
        await tree.symlink("x", "target")


@pytest.mark.asyncio
async def test_mknod_fifo(tree: Tree) -> None:
    await tree.mknod("fifo", stat.S_IFIFO | 0o640)
    st = await tree.stat("fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640


@pytest.mark.asyncio
async def test_setattr_family(tree: Tree, target: Target) -> None:
    await tree.write_bytes("f", b"0123456789")
    await tree.chmod("f", 0o604)
    assert stat.S_IMODE((await tree.stat("f")).st_mode) == 0o604
    await tree.truncate("f", 4)
    assert await tree.read_bytes("f") == b"0123"
    await tree.truncate("f", 8)
    assert await tree.read_bytes("f") == b"0123\0\0\0\0"
    await tree.utime("f", ns=(1_000_000_123, 2_000_000_456))
    st = await tree.stat("f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
    await tree.utime("f", (3.5, 4.25))
    st = await tree.stat("f")
    assert (st.st_atime, st.st_mtime) == (3.5, 4.25)
    await tree.utime("f")  # the server's clock
    assert (await tree.stat("f")).st_mtime > 1_600_000_000
    if target.uname == "root" or target.n_uname == 0:
        await tree.chown("f", 1234, 2345)
        st = await tree.stat("f")
        assert (st.st_uid, st.st_gid) == (1234, 2345)
        await tree.chown("f", -1, 3456)
        st = await tree.stat("f")
        assert (st.st_uid, st.st_gid) == (1234, 3456)


@pytest.mark.asyncio
async def test_xattrs(tree: Tree) -> None:
    await tree.write_bytes("f", b"")
    assert await tree.listxattr("f") == []
    await tree.setxattr("f", "user.one", b"1")
    big = bytes(range(256)) * 12
    await tree.setxattr("f", "user.big", big)
    assert await tree.getxattr("f", "user.one") == b"1"
    assert await tree.getxattr("f", "user.big") == big
    assert sorted(await tree.listxattr("f")) == ["user.big", "user.one"]
    with pytest.raises(FileExistsError):
        await tree.setxattr("f", "user.one", b"2", XATTR_CREATE)
    with pytest.raises(OSError) as info:
        await tree.setxattr("f", "user.none", b"2", XATTR_REPLACE)
    assert info.value.errno == errno.ENODATA
    await tree.setxattr("f", "user.one", b"2", XATTR_REPLACE)
    assert await tree.getxattr("f", "user.one") == b"2"
    await tree.removexattr("f", "user.one")
    assert await tree.listxattr("f") == ["user.big"]
    with pytest.raises(OSError) as info2:
        await tree.getxattr("f", "user.one")
    assert info2.value.errno == errno.ENODATA and info2.value.filename == "f"


@pytest.mark.asyncio
async def test_statfs(tree: Tree) -> None:
    fs = await tree.statfs()
    assert fs.f_bsize > 0 and fs.f_namemax > 0
    assert fs.f_bfree <= fs.f_blocks and fs.f_bavail <= fs.f_blocks
    assert (await tree.statfs("")) .f_type == fs.f_type


@pytest.mark.asyncio
@pytest.mark.parametrize("call", ["stat", "listdir", "readlink", "remove", "rmdir", "chmod",
                                  "getxattr", "statfs", "open", "truncate"])
async def test_enoent_names_the_path(tree: Tree, call: str) -> None:
    args: dict[str, tuple[object, ...]] = {"chmod": (0o644,), "getxattr": ("user.x",),
                                           "truncate": (0,)}
    path = "missing/deeper/file"
    with pytest.raises(FileNotFoundError) as info:
        await getattr(tree, call)(path, *args.get(call, ()))
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == path
    assert path in str(info.value)


@pytest.mark.asyncio
async def test_other_errnos(tree: Tree) -> None:
    await tree.write_bytes("file", b"")
    with pytest.raises(NotADirectoryError) as info:
        await tree.listdir("file")
    assert info.value.filename == "file"
    with pytest.raises(OSError) as walked:  # walk(5) leaves the errno to the server
        await tree.stat("file/below")
    assert walked.value.errno in (errno.ENOTDIR, errno.ENOENT)
    with pytest.raises(OSError) as info2:
        await tree.mkdir("/")
    assert info2.value.errno == errno.EINVAL


@pytest.mark.asyncio
async def test_walks_longer_than_sixteen_names(tree: Tree) -> None:
    deep = "/".join(f"d{i}" for i in range(40))
    await tree.makedirs(deep)
    await tree.write_bytes(f"{deep}/leaf", b"deep")
    assert await tree.read_bytes(f"{deep}/leaf") == b"deep"
    assert (await tree.stat(deep)).is_dir()
    with pytest.raises(FileNotFoundError):
        await tree.stat(f"{deep}/x/y")
    missing_late = "/".join(f"d{i}" for i in range(20)) + "/nope/" + "/".join("z" * 30)
    with pytest.raises(FileNotFoundError) as info:
        await tree.stat(missing_late)
    assert info.value.filename == missing_late


@pytest.mark.asyncio
async def test_subtree_and_exists(tree: Tree) -> None:
    await tree.makedirs("a/b")
    await tree.write_bytes("a/b/c", b"abc")
    sub = await tree.subtree("a")
    try:
        assert await sub.read_bytes("b/c") == b"abc"
        assert await sub.exists("b") and not await sub.exists("zz")
    finally:
        await sub.close()
