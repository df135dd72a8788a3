"""Images inside the namespace: ``tar:@/...`` and ``ext2:@/...`` served from another mount."""

from __future__ import annotations

import asyncio
import errno
import io
import signal
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
from ext2util import debugfs_cat, e2fsck, mkfs

from ninep.backends.image_sources import check_image_sources, open_in_order
from ninep.backends.registry import BackendConfigError, close_backends, parse_mount
from ninep.clients.sync import SyncClient
from ninep.vfs.image_claims import CLAIMS
from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Backend, Cred, Node, OpenFlags, SetAttr
from tests.hostile.serverproc import serve_process

ROOT = Cred(0, 0)
O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2


def tar_bytes(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


async def put(node: Node, name: str, data: bytes) -> None:
    _, handle = await node.create(name, OpenFlags(O_RDWR), 0o644, 0, 0)
    for start in range(0, len(data), 1 << 20):
        await handle.write(start, data[start:start + (1 << 20)])
    await handle.close()


async def get(node: Node) -> bytes:
    handle = await node.open(OpenFlags(O_RDONLY))
    parts, offset = [], 0
    while chunk := await handle.read(offset, 1 << 20):
        parts.append(bytes(chunk))
        offset += len(chunk)
    await handle.close()
    return b"".join(parts)


async def walk(node: Node, path: str) -> Node:
    for part in path.strip("/").split("/"):
        node = await node.walk(part)
    return node


async def test_an_ext2_image_in_a_ram_mount_is_written_and_e2fsck_clean_after(
        tmp_path: Path) -> None:
    image = mkfs(tmp_path / "root.img", "8M", 1024)
    mounts = await open_in_order([parse_mount("/srv=ram")])
    ram = mounts[0][1]
    await ram.root.mkdir("images", 0o755, 0, 0)
    await put(await ram.root.walk("images"), "root.img", image.read_bytes())
    ext2 = await parse_mount("/rootfs=ext2:@/srv/images/root.img").open(within=mounts)
    await put(ext2.root, "hello", b"inside a RAM disk\n" * 1000)
    await ext2.root.mkdir("dir", 0o755, 0, 0)
    assert await get(await ext2.root.walk("hello")) == b"inside a RAM disk\n" * 1000
    await ext2.close()
    out = tmp_path / "out.img"
    out.write_bytes(await get(await walk(ram.root, "images/root.img")))
    assert e2fsck(out) == (0, e2fsck(out)[1])
    assert debugfs_cat(out, "hello") == b"inside a RAM disk\n" * 1000
    assert not CLAIMS.any_in(ram)  # the claim went with the image
    await ram.close()


async def test_an_ext2_image_inside_an_ext2_image(tmp_path: Path) -> None:
    inner = mkfs(tmp_path / "inner.img", "2M", 1024)
    outer = mkfs(tmp_path / "outer.img", "8M", 1024)
    mounts = await open_in_order([parse_mount(f"/outer=ext2:{outer}")])
    await put(mounts[0][1].root, "inner.img", inner.read_bytes())
    mounts.append(("/inner", await parse_mount("/inner=ext2:@/outer/inner.img")
                   .open(within=mounts), False))
    await put(mounts[1][1].root, "deep", b"two images down\n")
    await handle_fsync(await mounts[1][1].root.walk("deep"))
    await close_backends(reversed([b for _, b, _ in mounts]))
    assert e2fsck(outer)[0] == 0
    (tmp_path / "out.img").write_bytes(debugfs_cat(outer, "inner.img"))
    assert e2fsck(tmp_path / "out.img")[0] == 0, e2fsck(tmp_path / "out.img")[1]
    assert debugfs_cat(tmp_path / "out.img", "deep") == b"two images down\n"


async def handle_fsync(node: Node) -> None:
    handle = await node.open(OpenFlags(O_RDWR))
    await handle.fsync(False)
    await handle.close()


async def test_a_tar_inside_a_tar(tmp_path: Path) -> None:
    inner = tar_bytes({"deep/file.txt": b"two levels down\n"})
    outer = tmp_path / "outer.tar"
    outer.write_bytes(tar_bytes({"inner.tar": inner, "top.txt": b"top\n"}))
    mounts = await open_in_order([parse_mount(f"/outer=tar:{outer}"),
                                  parse_mount("/inner=tar:@/outer/inner.tar")])
    try:
        inner_root = mounts[1][1].root
        assert await get(await walk(inner_root, "deep/file.txt")) == b"two levels down\n"
    finally:
        await close_backends(reversed([b for _, b, _ in mounts]))


async def test_a_tar_inside_passthrough_and_what_the_namespace_refuses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "dist").mkdir(parents=True)
    (data / "dist" / "a.tar").write_bytes(tar_bytes({"readme": b"hello\n"}))
    (data / "other").write_bytes(b"x")
    mounts = await open_in_order([parse_mount(f"/srv=passthrough:{data}"),
                                  parse_mount("/dist=tar:@/srv/dist/a.tar")])
    ns = await Namespace.build(list(mounts))
    root = ns.root()
    dist = await ns.walk(await ns.walk(root, "srv", ROOT), "dist", ROOT)
    assert await get(await walk(mounts[1][1].root, "readme")) == b"hello\n"
    archive = await ns.walk(dist, "a.tar", ROOT)
    with pytest.raises(OSError) as unlinked:
        await ns.unlink(dist, "a.tar", False, ROOT)
    assert unlinked.value.errno == errno.EBUSY
    srv = await ns.walk(root, "srv", ROOT)
    for old_dir, old, new_dir, new in ((dist, "a.tar", dist, "b.tar"),
                                       (srv, "other", dist, "a.tar")):
        with pytest.raises(OSError) as renamed:
            await ns.rename(old_dir, old, new_dir, new, ROOT)
        assert renamed.value.errno == errno.EBUSY
    with pytest.raises(OSError) as opened:
        await ns.open(archive, O_WRONLY, ROOT)
    assert opened.value.errno == errno.ETXTBSY
    with pytest.raises(OSError) as truncated:
        await ns.setattr(archive, SetAttr(size=0), ROOT)
    assert truncated.value.errno == errno.ETXTBSY
    handle = await ns.open(archive, O_RDONLY, ROOT)  # reading it is fine
    await handle.close()
    await mounts[1][1].close()
    await ns.unlink(dist, "a.tar", False, ROOT)  # no longer served: an ordinary file
    assert not (data / "dist" / "a.tar").exists()
    await mounts[0][1].close()


async def test_a_read_write_image_is_claimed_by_one_mount_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    mkfs(data / "root.img", "4M", 1024)
    mounts = await open_in_order([parse_mount(f"/srv=passthrough:{data}"),
                                  parse_mount("/a=ext2:@/srv/root.img")])
    try:
        for second in ("/b=ext2:@/srv/root.img", "/b=ext2:@/srv/root.img,ro",
                       "/b=tar:@/srv/root.img"):
            with pytest.raises(BackendConfigError, match="in use"):
                await parse_mount(second).open(within=mounts)
    finally:
        await close_backends(reversed([b for _, b, _ in mounts]))
    assert e2fsck(data / "root.img")[0] == 0


async def test_two_mounts_of_one_host_directory_cannot_both_write_its_image(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    mkfs(data / "root.img", "4M", 1024)
    mounts = await open_in_order([parse_mount(f"/one=passthrough:{data}"),
                                  parse_mount(f"/two=passthrough:{data}"),
                                  parse_mount("/a=ext2:@/one/root.img")])
    try:
        with pytest.raises(BackendConfigError, match="in use"):
            await parse_mount("/b=ext2:@/two/root.img").open(within=mounts)
        with pytest.raises(BackendConfigError, match="in use"):
            await parse_mount(f"/c=ext2:{data / 'root.img'},ro").open()
    finally:
        await close_backends(reversed([b for _, b, _ in mounts]))
    assert e2fsck(data / "root.img")[0] == 0


async def test_read_only_images_share_a_read_only_container(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    mkfs(data / "root.img", "4M", 1024)
    mounts = await open_in_order([parse_mount(f"/srv=passthrough:{data},ro"),
                                  parse_mount("/a=ext2:@/srv/root.img,ro"),
                                  parse_mount("/b=ext2:@/srv/root.img,ro")])
    try:
        assert [m[1].read_only for m in mounts[1:]] == [True, True]
    finally:
        await close_backends(reversed([b for _, b, _ in mounts]))


@pytest.mark.parametrize(("mounts", "error"), [
    (["/srv=ram", "/img=passthrough:@/srv/x"], "only tar and ext2"),
    (["/srv=ram", "/img=ext2:@srv/x.img"], "absolute path"),
    (["/srv=ram", "/img=ext2:@/srv/../x.img"], "absolute path"),
    (["/img=ext2:@/img/x.img"], "inside this mount"),
    (["/a=ext2:@/b/x.img", "/b=ext2:@/a/y.img"], "a cycle of images: /a -> /b -> /a"),
    (["/a=ext2:@/b/x.img", "/b=ram"], "declared after this mount"),
    (["/srv/x=ram", "/img=tar:@/other/x.tar"], "no mount of this namespace holds it"),
    (["/srv=ram,ro", "/img=ext2:@/srv/x.img"], "needs a writable container"),
])
def test_load_errors(mounts: list[str], error: str) -> None:
    with pytest.raises(BackendConfigError, match=error):
        check_image_sources([parse_mount(text) for text in mounts])


def test_an_overlay_layer_cannot_name_a_file_of_the_namespace() -> None:
    with pytest.raises(BackendConfigError, match="layer is opened on its own"):
        parse_mount("/=overlay,lower=tar:@/srv/a.tar,upper=ram")


def test_a_shared_image_in_a_per_connection_mount_is_refused() -> None:
    from dataclasses import replace
    container = replace(parse_mount("/srv=ram"), scope="connection")
    with pytest.raises(BackendConfigError, match="per connection"):
        check_image_sources([container, parse_mount("/img=tar:@/srv/x.tar")])
    check_image_sources([container, replace(parse_mount("/img=tar:@/srv/x.tar"),
                                            scope="connection")])


async def test_a_missing_image_and_a_directory_are_load_errors(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    for source, error in (("@/srv/missing.img", "No such file"),
                          ("@/srv/dir", "not a regular file")):
        with pytest.raises(BackendConfigError, match=error):
            await open_in_order([parse_mount(f"/srv=passthrough:{tmp_path}"),
                                 parse_mount(f"/img=ext2:{source},ro")])


def test_a_real_server_serves_an_image_of_its_own_export(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    mkfs(data / "root.img", "8M", 1024)
    args = ["--mount", f"/srv=passthrough:{data}", "--mount", "/rootfs=ext2:@/srv/root.img"]
    with serve_process(args, tmp_path) as server:
        host, port = server.address
        with SyncClient(f"tcp://{host}:{port}", uname="root", n_uname=0) as fs:
            fs.write_bytes("rootfs/hello", b"through the server\n" * 500)
            assert fs.read_bytes("rootfs/hello") == b"through the server\n" * 500
            with pytest.raises(OSError) as removed:
                fs.remove("srv/root.img")
            assert removed.value.errno == errno.EBUSY
            with pytest.raises(OSError) as written:
                fs.write_bytes("srv/root.img", b"")
            assert written.value.errno == errno.ETXTBSY
    assert "Traceback" not in server.log_text()
    assert e2fsck(data / "root.img")[0] == 0, e2fsck(data / "root.img")[1]
    assert debugfs_cat(data / "root.img", "hello") == b"through the server\n" * 500


def test_an_image_written_into_a_ram_disk_is_served_after_a_reload(tmp_path: Path) -> None:
    """The RAM disk survives a SIGHUP: a client puts an image there, the new config serves
    it read-write, a last reload drops it (closed, marked clean), and it is read back."""
    image = mkfs(tmp_path / "root.img", "8M", 1024)
    config = tmp_path / "ninep.toml"

    def write_config(with_image: bool) -> None:
        image_mount = '{ path = "/rootfs", backend = "ext2", source = "@/srv/root.img" },' \
            if with_image else ""
        config.write_text(textwrap.dedent(f"""
            [namespaces.main]
            mounts = [{{ path = "/srv", backend = "ram" }}, {image_mount}]
            [[policy]]
            namespace = "main"
        """))

    write_config(False)
    with serve_process(["--config", str(config)], tmp_path) as server:
        url = "tcp://{}:{}".format(*server.address)
        with SyncClient(url, uname="root", n_uname=0) as fs:
            fs.write_bytes("srv/root.img", image.read_bytes())
        write_config(True)
        server.proc.send_signal(signal.SIGHUP)
        fs = _attach_when(url, lambda fs: fs.exists("rootfs/lost+found"))
        with fs:
            fs.write_bytes("rootfs/made-here", b"in a RAM disk\n")
        write_config(False)
        server.proc.send_signal(signal.SIGHUP)
        # the old namespace closes its image in the background: written back and
        # marked clean, then the claim ends and the file may be opened for writing
        fs = _attach_when(url, lambda fs: not fs.exists("rootfs") and _unclaimed(fs))
        with fs:
            out = fs.read_bytes("srv/root.img")
    (tmp_path / "out.img").write_bytes(out)
    assert e2fsck(tmp_path / "out.img")[0] == 0, e2fsck(tmp_path / "out.img")[1]
    assert debugfs_cat(tmp_path / "out.img", "made-here") == b"in a RAM disk\n"


def _unclaimed(fs: SyncClient) -> bool:
    try:
        fs.open("srv/root.img", "r+b").close()
    except OSError as exc:
        assert exc.errno == errno.ETXTBSY, exc
        return False
    return True


def _attach_when(url: str, ready: object) -> SyncClient:
    deadline = time.monotonic() + 20
    while True:
        try:  # a closing connection may still hold the image for a moment: EACCES
            fs = SyncClient(url, uname="root", n_uname=0)
        except PermissionError:
            assert time.monotonic() < deadline, "the attach stayed refused"
            time.sleep(0.1)
            continue
        try:
            if ready(fs):  # type: ignore[operator]
                return fs
        except OSError as exc:  # attached just before the reload took: its view went
            if exc.errno != errno.ESTALE:  # stale under it (docs/config.md): again
                raise
        fs.close()
        assert time.monotonic() < deadline, "the change did not take"
        time.sleep(0.1)


def _unused(backend: Backend) -> None:  # keeps the Backend import for the type above
    del backend


async def test_an_ext2_image_on_an_imported_9p_tree(tmp_path: Path) -> None:
    from tests.backends.remote_servers import start_ninep
    data = tmp_path / "data"
    data.mkdir()
    mkfs(data / "root.img", "8M", 1024)
    back = start_ninep(tmp_path, f"/=passthrough:{data}")
    try:
        mounts = await open_in_order([parse_mount(f"/net=9p:{back.url},uname=root,uid=0"),
                                      parse_mount("/rootfs=ext2:@/net/root.img")])
        try:
            await put(mounts[1][1].root, "over-9p", b"imported image\n" * 3000)
            assert await get(await mounts[1][1].root.walk("over-9p")) \
                == b"imported image\n" * 3000
        finally:
            await close_backends(reversed([b for _, b, _ in mounts]))
    finally:
        back.stop()
    assert e2fsck(data / "root.img")[0] == 0, e2fsck(data / "root.img")[1]
    assert debugfs_cat(data / "root.img", "over-9p") == b"imported image\n" * 3000


def test_per_connection_images_on_a_real_server(tmp_path: Path) -> None:
    """scope = "connection" for the container and the image: each connection opens its
    own pair, closed (image first) when it goes; a read-write one serves one at a time."""
    data = tmp_path / "data"
    data.mkdir()
    mkfs(data / "root.img", "8M", 1024)
    config = tmp_path / "ninep.toml"
    config.write_text(textwrap.dedent(f"""
        [namespaces.main]
        mounts = [
          {{ path = "/srv", backend = "passthrough", source = "{data}", scope = "connection" }},
          {{ path = "/img", backend = "ext2", source = "@/srv/root.img", scope = "connection" }},
        ]
        [[policy]]
        namespace = "main"
    """))
    with serve_process(["--config", str(config)], tmp_path) as server:
        url = "tcp://{}:{}".format(*server.address)
        with SyncClient(url, uname="root", n_uname=0) as first:
            first.write_bytes("img/first", b"1\n")
            with pytest.raises(OSError) as second:  # the image is in use by the first
                SyncClient(url, uname="root", n_uname=0)
            assert second.value.errno == errno.EACCES
        _attach_when(url, lambda fs: fs.read_bytes("img/first") == b"1\n").close()
    assert "Traceback" not in server.log_text()
    assert e2fsck(data / "root.img")[0] == 0, e2fsck(data / "root.img")[1]


async def test_the_stop_waits_for_a_closing_connections_image(tmp_path: Path) -> None:
    """A connection's image may still be writing back when the server stops: the pool's
    close waits for it, so the image ends clean (its writes need the event loop)."""
    from ext2util import dumpe2fs

    from ninep.config.runtime import BackendPool
    from ninep.vfs.policy import ConnectionContext
    mkfs(tmp_path / "root.img", "8M", 1024)
    pool, context = BackendPool(), ConnectionContext()
    ram = await parse_mount("/srv=ram").open()  # a connection's pair, as _build opens them
    await put(ram.root, "root.img", (tmp_path / "root.img").read_bytes())
    image = await parse_mount("/img=ext2:@/srv/root.img").open(within=[("/srv", ram, False)])
    context.on_close(pool.track(ram))
    context.on_close(pool.track(image))
    await put(image.root, "late", b"written back at the stop\n")
    closing = asyncio.ensure_future(context.close())  # the connection goes...
    await asyncio.sleep(0)
    await pool.close()  # ...and the server stops at once
    out = tmp_path / "out.img"
    out.write_bytes(await get(await ram.root.walk("root.img")))
    await closing
    assert dumpe2fs(out)["Filesystem state"] == "clean"
    assert e2fsck(out)[0] == 0
    assert debugfs_cat(out, "late") == b"written back at the stop\n"
