"""Escape attempts against the passthrough backend: every one must fail to reach anything
above the export, directly and through a real server with our client."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ninep.backends.passthrough import PassthroughBackend
from ninep.backends.registry import open_backend
from ninep.clients import Client
from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Node, OpenFlags, SetAttr
from ninep.vfs.policy import Policy, Rule
from tests.conftest import RunningServer, start_server

O_RDONLY, O_DIRECTORY = 0, 0o200000
SECRET = b"outside the export\n"


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """``outside/secret`` next to ``export/`` holding a file and a directory."""
    outside, export = tmp_path / "outside", tmp_path / "export"
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    export.mkdir()
    (export / "inside").write_bytes(b"inside\n")
    (export / "d").mkdir()
    (export / "d" / "marker").write_bytes(b"")
    return export, outside


@pytest.fixture
async def fs(tree: tuple[Path, Path]) -> AsyncIterator[PassthroughBackend]:
    backend = await open_backend("passthrough", str(tree[0]))
    assert isinstance(backend, PassthroughBackend)
    yield backend
    await backend.close()


async def names(directory: Node) -> set[str]:
    return {e.name for e in await directory.readdir(0, 1000)}


async def refused(coro: object, *codes: int) -> None:
    with pytest.raises(OSError) as exc:
        await coro  # type: ignore[misc]
    assert exc.value.errno in codes, exc.value


# --- the backend itself ------------------------------------------------------------


async def test_dotdot_at_the_root_is_the_root(fs: PassthroughBackend) -> None:
    up = await (await fs.root.walk("..")).walk("..")
    assert up is fs.root
    assert await names(up) == {"inside", "d"}


@pytest.mark.parametrize("target", ["/", "../..", "..", "/etc", "../outside/secret"])
async def test_symlinks_out_are_served_as_symlinks_never_followed(
        fs: PassthroughBackend, tree: tuple[Path, Path], target: str) -> None:
    export, _ = tree
    os.symlink(target, export / "out")
    link = await fs.root.walk("out")
    assert stat.S_ISLNK((await link.getattr()).mode)
    assert await link.readlink() == target
    await refused(link.walk("secret"), errno.ENOTDIR)
    await refused(link.walk("etc"), errno.ENOTDIR)
    await refused(link.open(OpenFlags(O_RDONLY)), errno.ELOOP)
    await refused(link.readdir(0, 10), errno.ENOTDIR)
    await refused(link.create("x", OpenFlags(1), 0o644, 0, 0), errno.ENOTDIR)
    assert await link.xattr_list() == []  # the link's own (none), not its target's


async def test_absolute_symlink_created_by_a_client_stays_a_symlink(
        fs: PassthroughBackend, tree: tuple[Path, Path]) -> None:
    export, outside = tree
    link = await fs.root.symlink("abs", str(outside / "secret"), 0, 0)
    assert os.readlink(export / "abs") == str(outside / "secret")
    await refused(link.open(OpenFlags(O_RDONLY)), errno.ELOOP)
    # the link's setattr acts on the link, never on the file it names
    before = os.stat(outside / "secret")
    await refused(link.setattr(SetAttr(mode=0o777)), errno.EOPNOTSUPP)
    assert os.stat(outside / "secret").st_mode == before.st_mode


async def test_a_directory_swapped_for_a_symlink_after_the_walk(
        fs: PassthroughBackend, tree: tuple[Path, Path]) -> None:
    export, outside = tree
    walked = await fs.root.walk("d")
    os.rename(export / "d", export / "d.moved")
    os.symlink(str(outside), export / "d")  # the name now leads out
    handle = await walked.open(OpenFlags(O_RDONLY | O_DIRECTORY))
    assert await names(walked) == {"marker"}  # the directory walked to, not the symlink
    await refused(walked.walk("secret"), errno.ENOENT)
    await handle.close()
    again = await fs.root.walk("d")
    assert stat.S_ISLNK((await again.getattr()).mode)
    await refused(again.walk("secret"), errno.ENOTDIR)


async def test_a_file_swapped_for_a_symlink_after_the_walk(
        fs: PassthroughBackend, tree: tuple[Path, Path]) -> None:
    export, outside = tree
    walked = await fs.root.walk("inside")
    os.rename(export / "inside", export / "inside.moved")
    os.symlink(str(outside / "secret"), export / "inside")
    handle = await walked.open(OpenFlags(O_RDONLY))
    assert bytes(await handle.read(0, 100)) == b"inside\n"
    await handle.close()


async def test_a_directory_moved_out_from_under_a_walked_node(
        fs: PassthroughBackend, tree: tuple[Path, Path]) -> None:
    export, outside = tree
    (export / "a" / "b").mkdir(parents=True)
    b = await (await fs.root.walk("a")).walk("b")
    shutil.move(str(export / "a"), str(outside / "a"))  # by someone on the host
    a = await b.walk("..")
    top = await a.walk("..")
    assert top is fs.root  # '..' is the recorded parent, never the host's '..'
    assert await names(await top.walk("..")) == {"inside", "d"}
    assert "secret" not in await names(top)


async def test_hard_links_to_outside_are_refused(
        fs: PassthroughBackend, tree: tuple[Path, Path]) -> None:
    export, outside = tree
    os.symlink(str(outside / "secret"), export / "evil")
    evil = await fs.root.walk("evil")
    await fs.root.link("hl", evil)  # links the symlink itself, never what it names
    assert stat.S_ISLNK(os.lstat(export / "hl").st_mode)
    assert os.lstat(export / "hl").st_ino != os.stat(outside / "secret").st_ino
    assert os.stat(outside / "secret").st_nlink == 1
    # a file moved out of the export after the walk cannot be linked back in
    f = await fs.root.walk("inside")
    os.rename(export / "inside", outside / "moved-out")
    await refused(fs.root.link("back", f), errno.ENOENT)
    assert not os.path.lexists(export / "back")
    assert os.stat(outside / "moved-out").st_nlink == 1


async def test_names_holding_a_path_are_refused_even_past_vfs(fs: PassthroughBackend) -> None:
    # vfs/ refuses such names first; the backend does not rely on it
    d = await fs.root.walk("d")
    for name in ("../outside", "d/../..", "../../outside/secret", "/etc"):
        await refused(fs.root.walk(name), errno.ENOENT)
        await refused(d.walk(name), errno.ENOENT)
        await refused(fs.root.create(name, OpenFlags(1), 0o644, 0, 0), errno.EINVAL)
        await refused(fs.root.unlink(name, False), errno.EINVAL)
        await refused(fs.root.rename("inside", d, name), errno.EINVAL)
    for name in (".", ".."):
        await refused(fs.root.mkdir(name, 0o755, 0, 0), errno.EINVAL)


# --- through a server and our client -------------------------------------------------


@pytest.fixture
def server(tree: tuple[Path, Path]) -> Iterator[RunningServer]:
    async def policy() -> Policy:
        backend = await open_backend("passthrough", str(tree[0]))
        return Policy([Rule(await Namespace.build([("/", backend, False)]))])

    running = start_server(policy)
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(os.path.dirname(running.unix_path), ignore_errors=True)


@pytest.mark.parametrize("aname", ["", "/", "..", "../..", "/etc", "../outside", "/../../.."])
async def test_aname_tricks_attach_to_the_export(server: RunningServer, aname: str) -> None:
    async with await Client.connect(server.tcp_url) as client:
        tree = await client.attach(uname="root", aname=aname, n_uname=0)
        assert set(await tree.listdir("")) == {"inside", "d"}
        assert set(await tree.listdir("../../..")) == {"inside", "d"}
        with pytest.raises(OSError):
            await tree.read_bytes("../outside/secret")


async def test_client_cannot_read_through_symlinks(server: RunningServer,
                                                   tree: tuple[Path, Path]) -> None:
    export, outside = tree
    os.symlink("/", export / "root")
    os.symlink("../outside", export / "up")
    async with await Client.connect(server.tcp_url) as client:
        remote = await client.attach(uname="root", n_uname=0)
        await remote.symlink(str(outside / "secret"), "abs")
        for path in ("root/etc/passwd", f"root{outside}/secret", "up/secret", "abs"):
            with pytest.raises(OSError) as exc:
                await remote.read_bytes(path)
            assert exc.value.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP), (path, exc.value)
        assert await remote.readlink("root") == "/"
        await remote.link("abs", "hard")  # Tlink of a symlink: the link itself
        assert os.path.islink(export / "hard")
        assert os.stat(outside / "secret").st_nlink == 1


# --- a directory moved out of the export by the host -----------------------------------

MODELS = ["passthrough", "mapped-xattr", "none"]


@pytest.fixture(params=MODELS)
async def model_fs(request: pytest.FixtureRequest,
                   tree: tuple[Path, Path]) -> AsyncIterator[PassthroughBackend]:
    backend = await open_backend("passthrough", str(tree[0]),
                                 {"security_model": request.param}, False)
    assert isinstance(backend, PassthroughBackend)
    yield backend
    await backend.close()


async def test_a_directory_moved_out_lends_no_names_outside(
        model_fs: PassthroughBackend, tree: tuple[Path, Path]) -> None:
    export, outside = tree
    fs = model_fs
    d = await fs.root.walk("d")
    await names(d)  # proven inside once: the proof must not outlive the move
    os.rename(export / "d", outside / "d")  # by someone on the host
    (outside / "d" / "there").write_bytes(SECRET)
    await refused(d.create("f", OpenFlags(2), 0o644, 0, 0), errno.ENOENT)
    await refused(d.mkdir("sub", 0o755, 0, 0), errno.ENOENT)
    await refused(d.symlink("ln", "/", 0, 0), errno.ENOENT)
    await refused(d.mknod("fifo", stat.S_IFIFO | 0o644, 0, 0, 0), errno.ENOENT)
    await refused(d.walk("there"), errno.ENOENT)
    await refused(d.walk("marker"), errno.ENOENT)
    await refused(d.readdir(0, 100), errno.ENOENT)
    await refused(d.listing_end(), errno.ENOENT)
    await refused(d.unlink("marker", False), errno.ENOENT)
    await refused(d.rename("marker", fs.root, "stolen"), errno.ENOENT)
    await refused(fs.root.rename("inside", d, "planted"), errno.ENOENT)
    await refused(d.setattr(SetAttr(mode=0o777)), errno.ENOENT)
    await refused(d.xattr_set("user.x", b"1", 0), errno.ENOENT)
    assert sorted(os.listdir(outside / "d")) == ["marker", "there"]
    assert not os.path.exists(export / "stolen")
    os.rename(outside / "d", export / "d")  # back inside: usable again
    (await d.create("f", OpenFlags(2), 0o644, 0, 0))[1]
    assert os.path.exists(export / "d" / "f")


async def test_a_file_held_in_a_directory_moved_out_is_not_opened(
        fs: PassthroughBackend, tree: tuple[Path, Path]) -> None:
    export, outside = tree
    marker = await (await fs.root.walk("d")).walk("marker")
    os.rename(export / "d", outside / "d")
    (outside / "d" / "marker").write_bytes(SECRET)
    await refused(marker.open(OpenFlags(O_RDONLY)), errno.ENOENT)


async def test_an_ancestor_moved_out_takes_its_subtree_along(
        fs: PassthroughBackend, tree: tuple[Path, Path]) -> None:
    export, outside = tree
    (export / "a" / "b" / "c").mkdir(parents=True)
    c = await (await (await fs.root.walk("a")).walk("b")).walk("c")
    await c.create("before", OpenFlags(2), 0o644, 0, 0)  # proven inside
    os.rename(export / "a", outside / "a")  # c's own ctime does not change
    await refused(c.create("after", OpenFlags(2), 0o644, 0, 0), errno.ENOENT)
    await refused(c.walk("before"), errno.ENOENT)
    assert os.listdir(outside / "a" / "b" / "c") == ["before"]


async def test_a_directory_renamed_inside_the_export_by_the_host_stays_usable(
        fs: PassthroughBackend, tree: tuple[Path, Path]) -> None:
    export, _ = tree
    (export / "a" / "b").mkdir(parents=True)
    b = await (await fs.root.walk("a")).walk("b")
    os.rename(export / "a" / "b", export / "d" / "b2")  # its recorded name is stale now
    await b.create("f", OpenFlags(2), 0o644, 0, 0)  # the climb finds the export's root
    assert os.path.exists(export / "d" / "b2" / "f")
    os.rename(export / "d", export / "d2")  # an ancestor renamed inside: still inside
    await b.mkdir("g", 0o755, 0, 0)
    assert os.path.isdir(export / "d2" / "b2" / "g")
