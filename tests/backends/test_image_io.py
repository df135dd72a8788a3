"""ext2's image I/O stays off the event loop (invariant 6): fsync, write-back, data."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from ext2util import e2fsck, mkfs, open_image

from ninep.backends.ext2.nodes import INLINE_WRITE
from ninep.backends.image_file import HostImageFile
from ninep.vfs.node import Node, OpenFlags

O_RDONLY, O_RDWR = 0, 2


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return mkfs(tmp_path / "fs.img", "8M", 1024)


async def make_file(root: Node, name: str, data: bytes) -> Node:
    node, handle = await root.create(name, OpenFlags(O_RDWR), 0o644, 0, 0)
    await handle.write(0, data)
    await handle.close()
    return node


async def test_a_slow_fsync_of_the_image_leaves_the_event_loop_free(
        image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = open_image(image)
    node = await make_file(fs.root, "slow", b"s" * 5000)
    other = await make_file(fs.root, "other", b"o" * 100)
    started, release = threading.Event(), threading.Event()
    real_fsync = HostImageFile.fsync

    def slow_fsync(self: HostImageFile) -> None:
        started.set()
        assert release.wait(20), "the event loop never came back to release the fsync"
        real_fsync(self)

    monkeypatch.setattr(HostImageFile, "fsync", slow_fsync)
    handle = await node.open(OpenFlags(O_RDWR))
    task = asyncio.create_task(handle.fsync(False))
    assert await asyncio.to_thread(started.wait, 20)
    # The fsync waits in the image's thread: the loop still answers, here a getattr and
    # a walk (inline would have had to wait for the thread, so they are queued behind it)
    assert (await other.getattr()).size == 100
    walk = asyncio.create_task(fs.root.walk("other"))
    await asyncio.sleep(0)
    release.set()
    await task
    assert await walk is other
    await handle.close()
    await fs.close()
    assert e2fsck(image)[0] == 0


async def test_big_writes_and_write_back_are_written_outside_the_event_loop(
        image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = open_image(image)
    loop_thread = threading.get_ident()
    writers: set[int] = set()
    real_pwrite = HostImageFile.pwrite

    def pwrite(self: HostImageFile, offset: int, data: bytes | bytearray | memoryview) -> None:
        writers.add(threading.get_ident())
        real_pwrite(self, offset, data)

    monkeypatch.setattr(HostImageFile, "pwrite", pwrite)
    node = await make_file(fs.root, "data", b"d" * (INLINE_WRITE + 1))  # past the inline size
    handle = await node.open(OpenFlags(O_RDWR))
    await handle.fsync(False)  # the write-back of the metadata too
    await handle.close()
    assert writers and loop_thread not in writers
    await fs.close()
    assert e2fsck(image)[0] == 0


async def test_data_not_in_the_page_cache_is_read_in_the_thread(
        image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = open_image(image)
    node = await make_file(fs.root, "cold", bytes(range(256)) * 40)
    await fs.fs.settle()
    loop_thread = threading.get_ident()
    readers: list[tuple[int, bool]] = []
    real = HostImageFile.preadinto

    def preadinto(self: HostImageFile, buf: memoryview, offset: int,
                  nowait: bool = False) -> int:
        readers.append((threading.get_ident(), nowait))
        if nowait:
            raise BlockingIOError("as if the page cache did not hold it")
        return real(self, buf, offset)

    monkeypatch.setattr(HostImageFile, "preadinto", preadinto)
    monkeypatch.setattr(HostImageFile, "pread",
                        lambda self, offset, size, nowait=False: bytes(
                            _read(self, preadinto, offset, size, nowait)))
    handle = await node.open(OpenFlags(O_RDONLY))
    assert bytes(await handle.read(0, 10240)) == bytes(range(256)) * 40
    await handle.close()
    assert (loop_thread, True) in readers  # tried inline without waiting...
    assert any(t != loop_thread and not nowait for t, nowait in readers)  # ...then the thread
    await fs.close()
    assert e2fsck(image)[0] == 0


def _read(file: HostImageFile, preadinto: object, offset: int, size: int,
          nowait: bool) -> bytearray:
    buf = bytearray(size)
    got = preadinto(file, memoryview(buf), offset, nowait)  # type: ignore[operator]
    return buf[:got]
