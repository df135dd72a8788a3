"""Crash at every point of a checkpoint: each prefix of its writes is an image e2fsck -p repairs.

A SIGKILL lands between two pwrite calls, so the image after a kill in a
checkpoint is the image before it plus the first k of its writes. This test
records one checkpoint's writes and checks every such prefix.

Not covered, because no order of writes can cover it: renaming a directory so
that its entry moves to another block (another parent, or another block of the
same one). Its new entry, its old one and its '..' are three writes, and every
state between them (two names for a directory, none, or a wrong '..') is one
e2fsck fixes only when run by hand; the kernel's ext2 has the same window.
"""

from __future__ import annotations

import shutil
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from ext2util import debugfs_cat, e2fsck, mkfs, open_image

from ninep.backends.ext2.image import Image
from ninep.vfs.node import Node, OpenFlags, SetAttr

O_RDWR = 2
UID = GID = 1000


async def _base(root: Node) -> None:
    a = await root.mkdir("a", 0o755, UID, GID)
    b = await root.mkdir("b", 0o755, UID, GID)
    await a.mkdir("sub", 0o755, UID, GID)
    for i in range(20):
        _, handle = await b.create(f"f{i}", OpenFlags(O_RDWR), 0o644, UID, GID)
        await handle.write(0, bytes([i]) * (i * 3000))
        await handle.close()
    _, handle = await root.create("keep", OpenFlags(O_RDWR), 0o644, UID, GID)
    await handle.write(0, b"synced before the crash" * 1000)
    await handle.close()


async def _changes(r: Node) -> None:
    a, b = await r.walk("a"), await r.walk("b")
    for i in range(0, 20, 2):
        await b.unlink(f"f{i}", False)
    for i in range(10):
        _, handle = await a.create(f"new{i}", OpenFlags(O_RDWR), 0o644, UID, GID)
        await handle.write(0, b"n" * (i * 5000 + 1))
        await handle.close()
    await b.rename("f7", a, "f7-moved")  # a file to another directory
    await b.rename("f9", b, "f9-renamed")
    await b.rename("f11", b, "f13")  # over another file
    await b.symlink("slow", "z" * 200, UID, GID)
    await b.mknod("fifo", stat.S_IFIFO | 0o644, 0, UID, GID)
    f1 = await b.walk("f1")
    await f1.setattr(SetAttr(size=10))
    await f1.xattr_set("user.big", b"x" * 500, 0)
    await b.link("f3-again", await b.walk("f3"))
    await b.unlink("f5", False)
    await r.mkdir("c", 0o700, UID, GID)
    await (await r.walk("a")).unlink("sub", True)  # rmdir
    await b.mkdir("d1", 0o755, UID, GID)
    await b.rename("d1", b, "d2")  # a directory renamed in place (one block)


async def _moves(r: Node) -> None:
    b = await r.walk("b")
    await b.mkdir("inner", 0o755, UID, GID)
    await r.rename("a", b, "a-moved")  # a directory to another parent
    await b.rename("inner", r, "inner-up")


async def _failing_prefixes(tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch,
                            changes: Callable[[Node], Awaitable[None]]) -> tuple[list[int], int]:
    """Crash points (write counts) after which e2fsck -p gives up; and how many writes."""
    image = mkfs(tmp_path / "fs.img", "16M", block, 256)
    fs = open_image(image)
    await _base(fs.root)
    fs.checkpoint(durable=True)
    await changes(fs.root)
    before = tmp_path / "before.img"
    shutil.copyfile(image, before)  # base checkpoint + file data written since
    writes: list[tuple[int, bytes]] = []
    real = Image.pwrite

    def recording(self: Image, offset: int, data: bytes | bytearray | memoryview) -> None:
        writes.append((offset, bytes(data)))
        real(self, offset, data)

    monkeypatch.setattr(Image, "pwrite", recording)
    fs.checkpoint(durable=False)
    monkeypatch.undo()
    await fs.close()
    failing = []
    for k in range(len(writes) + 1):
        crashed = tmp_path / f"crash{k}.img"
        shutil.copyfile(before, crashed)
        with open(crashed, "r+b") as f:
            for offset, data in writes[:k]:
                f.seek(offset)
                f.write(data)
        code, out = e2fsck(crashed, "-p")
        if code not in (0, 1):
            print(f"--- crash point {k}:\n{out}")
            failing.append(k)
        else:
            code, out = e2fsck(crashed, "-fn")
            assert code == 0, f"after e2fsck -p of crash point {k}:\n{out}"
            assert debugfs_cat(crashed, "keep") == b"synced before the crash" * 1000
        crashed.unlink()
    return failing, len(writes)


@pytest.mark.parametrize("block", [1024, 4096])
async def test_every_prefix_of_a_checkpoint_is_repairable(tmp_path: Path, block: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    failing, count = await _failing_prefixes(tmp_path, block, monkeypatch, _changes)
    assert count > 5
    assert failing == [], f"e2fsck -p gave up after these of {count} writes: {failing}"


async def test_directory_moves_leave_a_window_of_two_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing, count = await _failing_prefixes(tmp_path, 1024, monkeypatch, _moves)
    print(f"failing crash points: {failing} of {count}")
    assert len(failing) <= 4, f"{failing} of {count}"  # two moves, two crash points each
    for k in failing:
        assert k + 1 in failing or k - 1 in failing, failing
