"""The tar backend serves what GNU tar and Python's tarfile write, in every format they write."""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import lzma
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest
from test_tar_support import (
    IS_ROOT,
    compare_tree,
    gnu_tar,
    make_tree,
    read_all,
    walk_path,
)

from ninep.backends.registry import open_backend
from ninep.backends.tar import TAR_MAGIC, TarBackend
from ninep.vfs.node import OpenFlags


def open_tar(path: Path, **options: object) -> TarBackend:
    return TarBackend.open(str(path), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["gnu", "pax", "posix"])
async def test_gnu_tar_formats_serve_the_tree_exactly(tmp_path: Path, fmt: str) -> None:
    src = make_tree(tmp_path / "src", sparse=False, xattrs=fmt != "gnu")
    archive = tmp_path / "a.tar"
    extra = ["--xattrs", "--xattrs-include=*"] if fmt != "gnu" else []
    gnu_tar(f"--format={fmt}", *extra, "-cf", archive, "-C", src, ".")
    backend = open_tar(archive)
    try:
        count = await compare_tree(backend, src, times="s" if fmt == "gnu" else "ns", xattrs=fmt != "gnu")
        assert count > 20
    finally:
        await backend.close()


async def test_ustar_format_with_prefix_field(tmp_path: Path) -> None:
    """ustar has no long names: only paths that fit name (100) + prefix (155)."""
    src = tmp_path / "src"
    deep = src / ("p" * 90) / ("q" * 50)
    deep.mkdir(parents=True)
    (deep / ("n" * 99)).write_bytes(b"split across prefix and name")
    (src / "plain").write_bytes(b"x" * 10000)
    (src / "plain-link").symlink_to("plain")
    archive = tmp_path / "u.tar"
    gnu_tar("--format=ustar", "-cf", archive, "-C", src, ".")
    backend = open_tar(archive)
    try:
        await compare_tree(backend, src, times="s", xattrs=False)
    finally:
        await backend.close()


@pytest.mark.parametrize("fmt,sparse_args", [
    ("gnu", []),  # old GNU 'S' headers
    ("pax", []),  # PAX 1.0, GNU tar's default for --format=pax
    ("pax", ["--sparse-version=0.0"]),
    ("pax", ["--sparse-version=0.1"]),
])
async def test_sparse_files_serve_holes_as_zeros(tmp_path: Path, fmt: str,
                                                 sparse_args: list[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    many = src / "many-islands"  # more segments than the 'S' header holds (4): extension blocks
    with open(many, "wb") as f:
        f.truncate(50 * 65536 + 3)
        for i in range(0, 50, 2):
            f.seek(i * 65536)
            f.write(bytes([i + 1]) * 4096)
    with open(src / "tail-data", "wb") as f:
        f.seek(1 << 20)
        f.write(b"end")
    with open(src / "all-hole", "wb") as f:
        f.truncate(5 << 20)
    archive = tmp_path / "s.tar"
    gnu_tar(f"--format={fmt}", "--sparse", *sparse_args, "-cf", archive, "-C", src, ".")
    assert archive.stat().st_size < 1 << 20, "tar did not store the files as sparse"
    backend = open_tar(archive)
    try:
        await compare_tree(backend, src, times="ns" if fmt == "pax" else "s", xattrs=False)
        node = await backend.root.walk("many-islands")
        handle = await node.open(OpenFlags(0))
        assert await handle.read(4096 - 10, 20) == b"\x01" * 10 + bytes(10)
        assert await handle.read(2 * 65536 - 2, 4) == b"\0\0\x03\x03"
        assert await handle.read(50 * 65536, 10) == b"\0\0\0"
        await handle.close()
        attr = await node.getattr()
        assert attr.blocks * 512 < 25 * 4096 + 4096  # the holes take no blocks
    finally:
        await backend.close()


@pytest.mark.parametrize("compressor,flag", [("gzip", "-z"), ("bzip2", "-j"), ("xz", "-J")])
async def test_compressed_archives_by_magic_not_name(tmp_path: Path, compressor: str,
                                                     flag: str) -> None:
    src = make_tree(tmp_path / "src", specials=False, sparse=False, xattrs=False)
    archive = tmp_path / "no-extension"
    gnu_tar("--format=pax", flag, "-cf", archive, "-C", src, ".")
    backend = open_tar(archive)
    try:
        assert backend.source.compression == compressor
        await compare_tree(backend, src, xattrs=False)
    finally:
        await backend.close()


async def test_concatenated_gzip_members(tmp_path: Path) -> None:
    """gzip allows several members in one file; all are decompressed."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(3):
            info = tarfile.TarInfo(f"f{i}")
            info.size = 100_000
            tf.addfile(info, io.BytesIO(bytes([i]) * 100_000))
    data = raw.getvalue()
    cut = 512 * 150
    (tmp_path / "multi.tgz").write_bytes(gzip.compress(data[:cut]) + gzip.compress(data[cut:]))
    backend = open_tar(tmp_path / "multi.tgz")
    try:
        for i in range(3):
            assert await read_all(await backend.root.walk(f"f{i}")) == bytes([i]) * 100_000
    finally:
        await backend.close()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
async def test_python_tarfile_writer(tmp_path: Path, fmt: int, mode: str) -> None:
    src = make_tree(tmp_path / "src", specials=IS_ROOT, sparse=False, xattrs=False)
    if fmt == tarfile.USTAR_FORMAT:  # ustar cannot hold the long names: drop them
        for path in sorted(src.iterdir()):
            if path.name.startswith(("d" * 120, "component", "long-sym")):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    archive = tmp_path / "py.tar"
    with tarfile.open(archive, mode, format=fmt) as tf:
        tf.add(src, arcname=".")
    backend = open_tar(archive)
    try:
        # tarfile's hard links point at the first name; ustar/gnu keep whole seconds only
        await compare_tree(backend, src, times="float" if fmt == tarfile.PAX_FORMAT else "s", xattrs=False)
    finally:
        await backend.close()


def _tar_of(members: list[tuple[tarfile.TarInfo, bytes | None]], path: Path,
            fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w", format=fmt) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = 1_500_000_000
    for key, value in fields.items():
        setattr(info, key, value)
    return info


async def test_implied_directories_and_duplicates(tmp_path: Path) -> None:
    archive = _tar_of([
        (_info("a/b/c.txt", mode=0o600, uid=7, gid=8), b"first"),
        (_info("a/b/c.txt", mode=0o640), b"second wins"),  # the last one wins
        (_info("a", tarfile.DIRTYPE, mode=0o700, uid=42), None),  # a dir met later: attrs
        (_info("x/gone", tarfile.REGTYPE), b"replaced with its directory"),
        (_info("x", tarfile.REGTYPE), b"x is a file now"),
        (_info("./y//z/../w", tarfile.REGTYPE), b"climbs: skipped"),
        (_info("/abs/path", tarfile.REGTYPE), b"leading slash dropped"),
    ], tmp_path / "dup.tar")
    backend = open_tar(archive)
    try:
        root = backend.root
        assert sorted(e.name for e in await root.readdir(0, 100)) == ["a", "abs", "x"]
        c = await walk_path(root, "a/b/c.txt")
        assert await read_all(c) == b"second wins"
        assert stat.S_IMODE((await c.getattr()).mode) == 0o640
        a = await (await root.walk("a")).getattr()
        assert (stat.S_IMODE(a.mode), a.uid, a.nlink) == (0o700, 42, 3)
        b = await (await walk_path(root, "a/b")).getattr()  # implied: 0755 root:root
        assert (b.mode, b.uid, b.gid, b.nlink) == (stat.S_IFDIR | 0o755, 0, 0, 2)
        assert b.mtime_ns == archive.stat().st_mtime_ns
        assert await read_all(await root.walk("x")) == b"x is a file now"
        assert await read_all(await walk_path(root, "abs/path")) == b"leading slash dropped"
        assert (await c.getattr()).nlink == 1
        assert (await root.getattr()).nlink == 4
    finally:
        await backend.close()


async def test_hard_link_to_a_name_later_replaced_keeps_the_old_content(tmp_path: Path) -> None:
    archive = _tar_of([
        (_info("f"), b"old"),
        (_info("g", tarfile.LNKTYPE, linkname="f"), None),
        (_info("f"), b"new"),
        (_info("h", tarfile.LNKTYPE, linkname="missing"), None),
    ], tmp_path / "links.tar")
    backend = open_tar(archive)
    try:
        f, g = await backend.root.walk("f"), await backend.root.walk("g")
        assert (await read_all(f), await read_all(g)) == (b"new", b"old")
        assert (await f.getattr()).nlink == (await g.getattr()).nlink == 1
        with pytest.raises(OSError) as exc:
            await backend.root.walk("h")
        assert exc.value.errno == errno.ENOENT
    finally:
        await backend.close()


async def test_pax_times_uids_and_global_headers(tmp_path: Path) -> None:
    info = _info("timed")
    info.pax_headers = {"mtime": "1600000000.5", "atime": "-1.25", "ctime": "1700000000.000000001",
                        "uid": "3000000000", "gid": str(2**32 + 5), "SCHILY.xattr.user.k": "v"}
    archive = tmp_path / "pax.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "a global header"}) as tf:
        tf.addfile(info, io.BytesIO(b""))
    backend = open_tar(archive)
    try:
        node = await backend.root.walk("timed")
        attr = await node.getattr()
        assert attr.mtime_ns == 1_600_000_000_500_000_000
        assert attr.atime_ns == -1_250_000_000
        assert attr.ctime_ns == 1_700_000_000_000_000_001
        assert (attr.uid, attr.gid) == (3_000_000_000, 65534)  # past 32 bits: overflow id
        assert await node.xattr_get("user.k") == b"v"
        assert await node.xattr_list() == ["user.k"]
    finally:
        await backend.close()


async def test_base256_numbers_and_large_sizes_in_gnu_headers(tmp_path: Path) -> None:
    info = _info("neg", mtime=-100, uid=0o10000000 + 5)  # past 7 octal digits: base-256
    archive = _tar_of([(info, b"z")], tmp_path / "b256.tar", fmt=tarfile.GNU_FORMAT)
    backend = open_tar(archive)
    try:
        attr = await (await backend.root.walk("neg")).getattr()
        assert (attr.mtime_ns, attr.uid) == (-100 * 10**9, 0o10000000 + 5)
    finally:
        await backend.close()


async def test_registry_statfs_and_read_only(tmp_path: Path) -> None:
    archive = _tar_of([(_info("d/f"), b"data" * 5000)], tmp_path / "r.tar")
    backend = await open_backend("tar", str(archive), {"lenient": "false"})
    try:
        assert isinstance(backend, TarBackend)
        fs = await backend.root.statfs()
        assert fs.blocks == -(-archive.stat().st_size // fs.bsize)
        assert (fs.bfree, fs.bavail, fs.ffree, fs.fstype) == (0, 0, 0, TAR_MAGIC)
        f = await walk_path(backend.root, "d/f")
        for change in (f.xattr_set("user.a", b"1", 0), f.xattr_remove("user.a"),
                       f.open(OpenFlags(os.O_WRONLY)), backend.root.unlink("d", True)):
            with pytest.raises(OSError) as exc:
                await change
            assert exc.value.errno == errno.EROFS
        with pytest.raises(OSError) as exc:
            await (await backend.root.walk("d")).open(OpenFlags(os.O_WRONLY))
        assert exc.value.errno == errno.EISDIR
    finally:
        await backend.close()


def test_compression_detection_is_by_content(tmp_path: Path) -> None:
    data = _tar_of([(_info("f"), b"abc")], tmp_path / "plain.tar").read_bytes()
    for name, packed in (("a.tar", gzip.compress(data)), ("b.tgz", bz2.compress(data)),
                         ("c.gz", lzma.compress(data))):
        (tmp_path / name).write_bytes(packed)
        backend = open_tar(tmp_path / name)
        assert backend.source.compression in ("gzip", "bzip2", "xz")
        assert backend.members == 1
        backend.source.close()


async def test_global_pax_header_applies_to_later_members(tmp_path: Path) -> None:
    """As GNU tar lists it: a 'g' header's records hold until a member's 'x' overrides them."""
    archive = tmp_path / "g.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT,
                      pax_headers={"uid": "77", "mtime": "1500000000.25"}) as tf:
        tf.addfile(_info("a", size=1), io.BytesIO(b"x"))
        b = _info("b", size=1)
        b.pax_headers = {"uid": "88"}
        tf.addfile(b, io.BytesIO(b"y"))
    backend = open_tar(archive)
    try:
        a_attr = await (await backend.root.walk("a")).getattr()
        b_attr = await (await backend.root.walk("b")).getattr()
        assert (a_attr.uid, b_attr.uid) == (77, 88)
        assert a_attr.mtime_ns == b_attr.mtime_ns == 1_500_000_000_250_000_000
    finally:
        await backend.close()


@pytest.mark.parametrize("fmt", ["v7", "oldgnu"])
async def test_old_formats(tmp_path: Path, fmt: str) -> None:
    """v7 has no magic and marks directories with a trailing slash; oldgnu is GNU's first."""
    src = tmp_path / "src"
    (src / "sub" / "inner").mkdir(parents=True)
    (src / "sub" / "file").write_bytes(b"v7 data" * 300)
    (src / "sub" / "inner" / "x").write_bytes(b"")
    (src / "ln").symlink_to("sub/file")
    os.link(src / "sub" / "file", src / "hard")
    for path in [*sorted(src.rglob("*"), reverse=True), src]:
        os.utime(path, (1_600_000_000, 1_600_000_000), follow_symlinks=False)
    archive = tmp_path / "old.tar"
    gnu_tar(f"--format={fmt}", "-cf", archive, "-C", src, ".")
    backend = open_tar(archive)
    try:
        await compare_tree(backend, src, times="s", xattrs=False)
    finally:
        await backend.close()


async def test_incremental_dump_directories(tmp_path: Path) -> None:
    """--listed-incremental writes directories as GNU 'D' members with a dumpdir payload."""
    src = make_tree(tmp_path / "src", specials=False, sparse=False, xattrs=False)
    archive = tmp_path / "level0.tar"
    gnu_tar("--format=gnu", f"--listed-incremental={tmp_path / 'snap'}", "-cf", archive,
            "-C", src, ".")
    assert archive.read_bytes()[156:157] == b"D", "GNU tar wrote no dumpdir member first"
    backend = open_tar(archive)
    try:
        await compare_tree(backend, src, times="s", xattrs=False)
    finally:
        await backend.close()


async def test_names_that_are_not_utf8_keep_their_bytes(tmp_path: Path) -> None:
    """Header names are bytes: a Latin-1 name reaches 9P as the same bytes (surrogateescape)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / os.fsdecode(b"caf\xe9")).write_bytes(b"latin-1 name")
    (src / os.fsdecode(b"link-\xff")).symlink_to(os.fsdecode(b"caf\xe9"))
    for fmt in ("gnu", "pax"):
        archive = tmp_path / f"{fmt}.tar"
        gnu_tar(f"--format={fmt}", "-cf", archive, "-C", src, ".")
        backend = open_tar(archive)
        try:
            names = sorted(e.name for e in await backend.root.readdir(0, 10))
            assert names == sorted(os.listdir(src)) == ["caf\udce9", "link-\udcff"]
            assert await read_all(await backend.root.walk("caf\udce9")) == b"latin-1 name"
            assert await (await backend.root.walk("link-\udcff")).readlink() == "caf\udce9"
        finally:
            await backend.close()
