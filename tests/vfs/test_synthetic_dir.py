"""vfs/synthetic_dir.py: one synthetic directory for a namespace's mount points and for
a fixed directory of synthetic files (ninep.backends.synthetic re-exports it)."""

from __future__ import annotations

import errno

import pytest

from ninep.backends import synthetic
from ninep.backends.ram import RamBackend
from ninep.vfs.namespace import Namespace
from ninep.vfs.node import DT_DIR, DT_REG
from ninep.vfs.synthetic_dir import SyntheticBackend, SyntheticDir


async def test_a_fixed_directory_of_files() -> None:
    assert synthetic.SyntheticBackend is SyntheticBackend
    null, zero = synthetic.NullFile(), synthetic.ZeroFile()
    root = SyntheticBackend({"null": null, "zero": zero}).root
    assert isinstance(root, SyntheticDir)
    entries = await root.readdir(0, 10)
    assert [(e.name, e.ino, e.dtype, e.cookie) for e in entries] == [
        ("null", null.ino, DT_REG, 1), ("zero", zero.ino, DT_REG, 2)]
    assert [e.name for e in await root.readdir(1, 10)] == ["zero"]
    assert (await root.getattr()).nlink == 2  # files add no links
    assert (await root.statfs()).files == 2
    assert await root.walk("null") is null and await root.walk("..") is root
    with pytest.raises(OSError) as caught:
        await root.walk("nope")
    assert caught.value.errno == errno.ENOENT


async def test_the_directories_holding_mount_points() -> None:
    ns = await Namespace.build([("/a", RamBackend(), False), ("/b/c", RamBackend(), False),
                                ("/n", synthetic.NullBackend(), False)])
    top = ns.root().node
    assert isinstance(top, SyntheticDir)
    assert (await top.getattr()).nlink == 5  # ".", its own entry, and a, b, n
    assert (await top.statfs()).files == 0
    listing = {e.name: e.dtype for e in await top.readdir(0, 10)}
    assert listing == {"a": DT_DIR, "b": DT_DIR, "n": DT_REG}
    with pytest.raises(OSError):  # mounts are entered by the namespace, not by walk
        await top.walk("a")
