"""Damaged archives fail the mount naming the file and byte offset (or, lenient, serve what
comes before the damage); an archive changed while mounted answers EIO."""

from __future__ import annotations

import asyncio
import errno
import gzip
import io
import logging
import os
import re
import stat
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tar_support import read_all

from ninep.backends.registry import BackendConfigError, open_backend
from ninep.backends.tar import TarBackend
from ninep.vfs.node import Node, OpenFlags

SIZES = [700, 1024, 5000, 3, 20000]  # member i holds SIZES[i] bytes of chr(65 + i)


def _archive(tmp_path: Path, fmt: int = tarfile.PAX_FORMAT) -> tuple[Path, list[tarfile.TarInfo]]:
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w", format=fmt) as tf:
        for i, size in enumerate(SIZES):
            info = tarfile.TarInfo(f"dir/member-{i}-" + "n" * (120 if i == 2 else 0))
            info.size, info.mtime = size, 1_600_000_000
            tf.addfile(info, io.BytesIO(bytes([65 + i]) * size))
    with tarfile.open(path) as tf:
        members = tf.getmembers()
    return path, members


def _cut(path: Path, at: int) -> Path:
    cut = path.with_name(f"cut-{at}.tar")
    cut.write_bytes(path.read_bytes()[:at])
    return cut


def _error(path: Path, **options: object) -> str:
    with pytest.raises(BackendConfigError) as exc:
        TarBackend.open(str(path), **options)  # type: ignore[arg-type]
    message = str(exc.value)
    assert str(path) in message
    return message


def _offset(message: str) -> int:
    found = re.search(r"at byte offset (\d+)", message)
    assert found, message
    return int(found.group(1))


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_truncation_at_many_offsets_names_the_member_offset(tmp_path: Path, fmt: int) -> None:
    path, members = _archive(tmp_path, fmt)
    for i, info in enumerate(members):
        header_end = info.offset_data
        for at in (info.offset + 100, header_end - 1, header_end + 1,
                   info.offset_data + info.size - 1):
            if at <= info.offset or at >= info.offset_data + info.size:
                continue
            message = _error(_cut(path, at))
            assert "truncated" in message, message
            if at > header_end:  # in the data: the member's first header is named
                assert _offset(message) == info.offset, (i, at, message)
            else:  # in a header: that header (or the member it starts) is named
                assert info.offset <= _offset(message) < header_end, (i, at, message)


def test_cut_between_members_is_served_with_a_warning(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    path, members = _archive(tmp_path)
    cut = _cut(path, members[3].offset)  # what GNU tar also accepts: no end blocks
    with caplog.at_level(logging.WARNING):
        backend = TarBackend.open(str(cut))
    assert backend.members == 3
    assert "no end-of-archive" in caplog.text
    backend.source.close()


async def test_lenient_serves_the_members_before_the_damage(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, members = _archive(tmp_path)
    cut = _cut(path, members[3].offset_data + 1)
    assert _offset(_error(cut)) == members[3].offset
    with caplog.at_level(logging.WARNING):
        backend = await open_backend("tar", str(cut), {"lenient": "true"})
    try:
        assert isinstance(backend, TarBackend)
        directory = await backend.root.walk("dir")
        names = [e.name for e in await directory.readdir(0, 100)]
        assert names == sorted(m.name.split("/")[1] for m in members[:3])
        node = await directory.walk(names[0])
        assert await read_all(node) == b"A" * SIZES[0]
        assert f"byte offset {members[3].offset}" in caplog.text
        assert "serving the 3 members before it" in caplog.text
    finally:
        await backend.close()


def test_bad_checksum_names_the_header(tmp_path: Path) -> None:
    path, members = _archive(tmp_path, tarfile.GNU_FORMAT)
    data = bytearray(path.read_bytes())
    header = members[3].offset_data - 512
    data[header + 5] ^= 0x01  # one bit of the name
    path.write_bytes(bytes(data))
    message = _error(path)
    assert "bad header checksum" in message and _offset(message) == header


def test_garbage_and_short_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(os.urandom(4096))
    message = _error(garbage)
    assert "bad header checksum" in message and _offset(message) == 0
    short = tmp_path / "short.tar"
    short.write_bytes(b"hello\n")
    message = _error(short)
    assert "truncated header" in message and _offset(message) == 0


def test_bad_pax_record(tmp_path: Path) -> None:
    path, members = _archive(tmp_path)
    data = path.read_bytes()
    record = re.search(rb"\d+ path=dir/member-2", data)
    assert record is not None
    bad = data[:record.start()] + b"9" + data[record.start() + 1:]  # a wrong length
    path.write_bytes(bad)
    message = _error(path)
    assert "bad PAX record" in message and _offset(message) == members[2].offset


def test_bad_numeric_field(tmp_path: Path) -> None:
    path, members = _archive(tmp_path, tarfile.GNU_FORMAT)
    data = bytearray(path.read_bytes())
    header = members[1].offset
    data[header + 124:header + 136] = b"00000000x12\0"  # size, not octal
    checksum = sum(data[header:header + 148]) + 8 * 32 + sum(data[header + 156:header + 512])
    data[header + 148:header + 156] = b"%06o\0 " % checksum
    path.write_bytes(bytes(data))
    message = _error(path)
    assert "bad numeric field size" in message and _offset(message) == header


def test_truncated_gzip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, members = _archive(tmp_path)
    packed = gzip.compress(path.read_bytes() + os.urandom(200_000))
    damaged = tmp_path / "d.tgz"
    damaged.write_bytes(packed[:len(packed) // 2])
    message = _error(damaged)
    assert "gzip stream truncated at compressed byte offset" in message
    with caplog.at_level(logging.WARNING):
        backend = TarBackend.open(str(damaged), lenient=True)
    assert backend.members == len(members)
    backend.source.close()
    corrupt = bytearray(packed)
    corrupt[len(packed) // 3:len(packed) // 3 + 64] = bytes(64)
    damaged.write_bytes(bytes(corrupt))
    assert "gzip stream damaged near compressed byte offset" in _error(damaged)


def test_startup_errors_for_paths_and_options(tmp_path: Path) -> None:
    assert "cannot open" in _error(tmp_path / "missing.tar")
    assert "not a regular file" in _error(tmp_path)
    (tmp_path / "x.tar.zst").write_bytes(b"\x28\xb5\x2f\xfd" + bytes(100))
    assert "zstd compression is not supported" in _error(tmp_path / "x.tar.zst")


async def test_unknown_option_is_refused(tmp_path: Path) -> None:
    path, _ = _archive(tmp_path)
    with pytest.raises(BackendConfigError, match="unknown option 'colour'"):
        await open_backend("tar", str(path), {"colour": "blue"})


@pytest.mark.parametrize("change", ["append", "rewrite", "replace", "touch"])
async def test_archive_changed_while_mounted_answers_eio(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, change: str) -> None:
    path, members = _archive(tmp_path)
    backend = TarBackend.open(str(path))
    try:
        node = await backend.root.walk("dir")
        node = await node.walk(members[4].name.split("/")[1])
        handle = await node.open(OpenFlags(0))
        assert await handle.read(0, 10) == b"E" * 10
        if change == "append":
            with open(path, "ab") as f:
                f.write(bytes(1024))
        elif change == "rewrite":  # same size, other bytes
            data = bytearray(path.read_bytes())
            data[members[4].offset_data:members[4].offset_data + 10] = b"Z" * 10
            path.write_bytes(bytes(data))
            os.utime(path, ns=(1, 1))  # a rewrite within one clock tick still moves mtime
        elif change == "replace":
            other = tmp_path / "other.tar"
            other.write_bytes(path.read_bytes())
            other.replace(path)
        else:
            os.utime(path, ns=(2, 2))
        with caplog.at_level(logging.ERROR):
            with pytest.raises(OSError) as exc:
                await (await node.open(OpenFlags(0))).read(0, 10)
            assert exc.value.errno == errno.EIO
            if change != "replace":  # replacing leaves the open archive as it was
                with pytest.raises(OSError) as exc:
                    await handle.read(0, 10)
                assert exc.value.errno == errno.EIO
        assert "archive changed while mounted" in caplog.text and str(path) in caplog.text
        with pytest.raises(OSError) as exc:  # and it stays that way
            await handle.read(0, 10)
        assert exc.value.errno == errno.EIO
    finally:
        await backend.close()


def test_sparse_map_claiming_more_than_is_stored(tmp_path: Path) -> None:
    info = tarfile.TarInfo("liar")
    info.size = 512  # stored bytes; the map below claims 4096 of them
    info.pax_headers = {"GNU.sparse.size": "10000", "GNU.sparse.numblocks": "1",
                        "GNU.sparse.map": "0,4096"}
    path = tmp_path / "liar.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(bytes(512)))
    message = _error(path)
    assert "bad sparse map" in message and _offset(message) == 0


@pytest.fixture(scope="module")
def rich_archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small archive with PAX records, long names, links, and a sparse map in the data."""
    from test_tar_support import gnu_tar

    root = tmp_path_factory.mktemp("rich")
    src = root / "src"
    (src / ("d" * 110)).mkdir(parents=True)
    (src / ("d" * 110) / "f").write_bytes(b"data" * 300)
    (src / "ln").symlink_to("x" * 150)
    os.link(src / ("d" * 110) / "f", src / "hard")
    with open(src / "sparse", "wb") as f:
        f.seek(100_000)
        f.write(b"end")
    os.setxattr(src / "hard", "user.k", b"v")
    gnu_tar("--format=pax", "--sparse", "--xattrs", "-cf", root / "a.tar", "-C", src, ".")
    return (root / "a.tar").read_bytes()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damage_anywhere_is_a_clean_error_or_a_clean_mount(rich_archive: bytes, tmp_path: Path,
                                                           data: st.DataObject) -> None:
    """Flipped bytes or a cut: BackendConfigError naming an offset, or a mount; nothing else."""
    damaged = bytearray(rich_archive)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        damaged = damaged[:data.draw(st.integers(0, len(damaged)))]
    path = tmp_path / "fuzz.tar"
    path.write_bytes(bytes(damaged))
    try:
        backend = TarBackend.open(str(path))
    except BackendConfigError as exc:
        assert str(path) in str(exc)
        assert re.search(r"byte offset \d+", str(exc)), str(exc)
        backend = TarBackend.open(str(path), lenient=True)  # lenient: never an error
    try:
        asyncio.run(_read_everything(backend))
    finally:
        backend.source.close()


async def _read_everything(backend: TarBackend) -> None:
    """Every file's head and tail, every link, every listing: whatever the index holds reads."""
    stack: list[Node] = [backend.root]
    while stack:
        node = stack.pop()
        attr = await node.getattr()
        if stat.S_ISDIR(attr.mode):
            entries = await node.readdir(0, 10_000)
            stack.extend([await node.walk(e.name) for e in entries])
        elif stat.S_ISLNK(attr.mode):
            await node.readlink()
        elif stat.S_ISREG(attr.mode):
            handle = await node.open(OpenFlags(0))
            assert len(await handle.read(0, 65536)) == min(attr.size, 65536)
            assert len(await handle.read(max(attr.size - 100, 0), 200)) == min(attr.size, 100)
            await handle.close()
