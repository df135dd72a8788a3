"""Property test: random operation sequences on an ext2 image and on the RAM backend agree.

After each sequence the two trees are equal (names, types, sizes, contents,
modes, link counts, symlink targets, xattrs) and ``e2fsck -fn`` passes.
NINEP_EXT2_EXAMPLES raises the number of sequences (default: a few seconds' worth).
"""

from __future__ import annotations

import asyncio
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from ext2util import e2fsck, mkfs, open_image, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ninep.backends.ext2 import fs as fs_module
from ninep.backends.ext2 import image as image_module
from ninep.backends.ram import RamBackend
from ninep.vfs.node import Backend, Node, OpenFlags, SetAttr

EXAMPLES = int(os.environ.get("NINEP_EXT2_EXAMPLES", "8"))
O_RDWR, O_TRUNC, O_APPEND = 2, 0o1000, 0o2000
NAMES = ["a", "b", "c", "d" * 60, "é"]
TARGETS = ["a", "../b", "x" * 59, "y" * 60, "/".join(["long"] * 40)]
OFFSETS = [0, 1, 1000, 1024, 4096, 12 * 1024 + 7, 300_000, 65 << 20]
OPS = ["create", "write", "truncate", "mkdir", "rmdir", "unlink", "rename", "link",
       "symlink", "mknod", "chmod", "setxattr", "removexattr", "open_unlinked", "append"]

Layout = tuple[int, int, str]
LAYOUTS = st.tuples(st.sampled_from([1024, 2048, 4096]), st.sampled_from([128, 256]),
                    st.sampled_from(["", "^dir_index", "^resize_inode", "^sparse_super,^resize_inode",
                                     "^filetype", "rev0"]))


async def _walk(backend: Backend, path: tuple[str, ...]) -> Node:
    node = backend.root
    for part in path:
        node = await node.walk(part)
    return node


async def _paths(ram: RamBackend) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(directories, non-directories) of the model tree, as path tuples."""
    dirs: list[tuple[str, ...]] = [()]
    files: list[tuple[str, ...]] = []
    i = 0
    while i < len(dirs):
        node = await _walk(ram, dirs[i])
        for entry in await node.readdir(0, 10_000):
            (dirs if entry.dtype == 4 else files).append((*dirs[i], entry.name))
        i += 1
    return dirs, files


async def _apply(backend: Backend, op: str, args: dict[str, Any]) -> object:
    """Run one operation; its result or the errno it failed with."""
    try:
        return await _run(backend, op, args)
    except OSError as exc:
        return ("errno", exc.errno)


async def _run(backend: Backend, op: str, a: dict[str, Any]) -> object:
    node = await _walk(backend, a["path"])
    if op == "create":
        _, handle = await node.create(a["name"], OpenFlags(O_RDWR), a["mode"], 1000, 1000)
        await handle.write(a["offset"], a["data"])
        await handle.close()
    elif op in ("write", "append"):
        handle = await node.open(OpenFlags(O_RDWR | (O_APPEND if op == "append" else 0)))
        await handle.write(a["offset"], a["data"])
        await handle.close()
    elif op == "truncate":
        await node.setattr(SetAttr(size=a["offset"] + len(a["data"])))
    elif op == "mkdir":
        await node.mkdir(a["name"], a["mode"], 1000, 1000)
    elif op in ("rmdir", "unlink"):
        parent = await _walk(backend, a["path"][:-1])
        await parent.unlink(a["path"][-1], op == "rmdir")
    elif op == "rename":
        parent = await _walk(backend, a["path"][:-1])
        await parent.rename(a["path"][-1], await _walk(backend, a["dest"]), a["name"])
    elif op == "link":
        await (await _walk(backend, a["dest"])).link(a["name"], node)
    elif op == "symlink":
        await node.symlink(a["name"], a["target"], 1000, 1000)
    elif op == "mknod":
        await node.mknod(a["name"], stat.S_IFIFO | a["mode"], 0, 1000, 1000)
    elif op == "chmod":
        await node.setattr(SetAttr(mode=a["mode"]))
    elif op == "setxattr":
        await node.xattr_set(f"user.{a['name'][:8]}", a["data"][:100], 0)
    elif op == "removexattr":
        await node.xattr_remove(f"user.{a['name'][:8]}")
    elif op == "open_unlinked":
        handle = await node.open(OpenFlags(O_RDWR))
        parent = await _walk(backend, a["path"][:-1])
        await parent.unlink(a["path"][-1], False)
        await handle.write(a["offset"], a["data"])
        data = await handle.read(0, a["offset"] + len(a["data"]))
        await handle.close()
        return bytes(data)
    return None


def _draw_op(data: st.DataObject, dirs: list[tuple[str, ...]],
             files: list[tuple[str, ...]]) -> tuple[str, dict[str, Any]]:
    op = data.draw(st.sampled_from(OPS))
    file_ops = ("write", "truncate", "unlink", "open_unlinked", "append", "link")
    if op in file_ops and not files:
        op = "create"
    if op == "rmdir" and len(dirs) < 2:
        op = "mkdir"
    args: dict[str, Any] = {
        "name": data.draw(st.sampled_from(NAMES)),
        "mode": data.draw(st.sampled_from([0o644, 0o600, 0o755, 0o2775])),
        "offset": data.draw(st.sampled_from(OFFSETS)),
        "data": data.draw(st.binary(max_size=3000)),
        "target": data.draw(st.sampled_from(TARGETS)),
        "dest": data.draw(st.sampled_from(dirs)),
    }
    if op in file_ops:
        args["path"] = data.draw(st.sampled_from(files))
    elif op == "rmdir":
        args["path"] = data.draw(st.sampled_from(dirs[1:]))
    elif op in ("rename", "chmod", "setxattr", "removexattr"):
        args["path"] = data.draw(st.sampled_from(dirs[1:] + files or dirs))
    else:
        args["path"] = data.draw(st.sampled_from(dirs))
    if op == "rename" and not args["path"]:
        op = "mkdir"
    return op, args


async def _session(data: st.DataObject, layout: Layout, image: Path) -> None:
    block, inode, features = layout
    # Sometimes caches of nothing: every checkpoint drops every clean block, directory
    # index and unused inode.
    tiny = data.draw(st.booleans())
    image_module._CACHE_BYTES = 0 if tiny else 64 << 20
    fs_module._RECENT, fs_module._DIRS_CACHED = (1, 0) if tiny else (65536, 4096)
    if features == "rev0":  # revision 0: 128-byte inodes, no features at all
        mkfs(image, "8M", block, 128, rev=0)
    else:
        mkfs(image, "8M", block, inode, features=features)
    ext2 = open_image(image)
    ram = RamBackend()
    steps = data.draw(st.integers(1, 30))
    try:
        for _ in range(steps):
            dirs, files = await _paths(ram)
            op, args = _draw_op(data, dirs, files)
            if features == "rev0" and "xattr" in op:
                continue  # revision 0 has no extended attributes
            if data.draw(st.integers(0, 9)) == 0:  # now and then: written back, read anew
                await ext2.close()
                ext2 = open_image(image)
            elif data.draw(st.integers(0, 4)) == 0:
                ext2.checkpoint(durable=False)
            want = await _apply(ram, op, args)
            got = await _apply(ext2, op, args)
            assert got == want, (op, args["path"], want, got)
        want_tree = await snapshot(ram.root)
        assert await snapshot(ext2.root) == want_tree
    finally:
        await ext2.close()
    code, out = e2fsck(image)
    assert code == 0, out
    again = open_image(image, read_only=True)
    try:
        assert await snapshot(again.root) == want_tree
    finally:
        await again.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), layout=LAYOUTS)
def test_ext2_agrees_with_ram_model(data: st.DataObject, layout: Layout) -> None:
    try:
        with tempfile.TemporaryDirectory() as scratch:
            asyncio.run(_session(data, layout, Path(scratch) / "fs.img"))
    finally:
        image_module._CACHE_BYTES = 64 << 20
        fs_module._RECENT, fs_module._DIRS_CACHED = 65536, 4096
