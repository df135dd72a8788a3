"""Helpers for the ext2 backend tests: e2fsprogs as oracles, and tree comparison."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ninep.backends.ext2 import Ext2Backend
from ninep.vfs.node import Node, OpenFlags

__all__ = ["debugfs_cat", "dumpe2fs", "e2fsck", "mkfs", "open_image", "snapshot", "tool"]

ENV = {**os.environ, "E2FSPROGS_FAKE_TIME": "1600000000"}


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(f"/usr/sbin/{name}") or shutil.which(f"/sbin/{name}")
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def mkfs(image: Path, size: str = "16M", block: int = 1024, inode: int = 256,
         rev: int = 1, features: str = "", seed: Path | None = None,
         inodes: int | None = None, extra: tuple[str, ...] = ()) -> Path:
    """An ext2 image made by mke2fs (``features`` as for ``-O``)."""
    kind = extra[extra.index("-t") + 1] if "-t" in extra else "ext2"
    extra = tuple(x for i, x in enumerate(extra) if "-t" not in extra[max(i - 1, 0):i + 1])
    args = [tool("mke2fs"), "-q", "-F", "-t", kind, "-b", str(block), "-r", str(rev)]
    if rev:
        args += ["-I", str(inode)]
    if features:
        args += ["-O", features]
    if inodes:
        args += ["-N", str(inodes)]
    if seed is not None:
        args += ["-d", str(seed)]
    subprocess.run([*args, *extra, str(image), size], check=True, capture_output=True, env=ENV)
    return image


def e2fsck(image: Path, *flags: str) -> tuple[int, str]:
    """(exit status, output) of ``e2fsck -fn`` (or the given flags)."""
    result = subprocess.run([tool("e2fsck"), *(flags or ("-fn",)), str(image)],
                            capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def debugfs_cat(image: Path, path: str) -> bytes:
    result = subprocess.run([tool("debugfs"), "-R", f"cat /{path}", str(image)],
                            capture_output=True, check=True)
    return result.stdout


def dumpe2fs(image: Path) -> dict[str, str]:
    """The ``dumpe2fs -h`` header as a dict."""
    out = subprocess.run([tool("dumpe2fs"), "-h", str(image)], capture_output=True, text=True,
                         check=True).stdout
    fields = {}
    for line in out.splitlines():
        m = re.match(r"([^:]+):\s*(.*)$", line)
        if m:
            fields[m.group(1).strip()] = m.group(2).strip()
    return fields


O_RDONLY = 0


async def snapshot(node: Node, path: str = "") -> dict[str, tuple[object, ...]]:
    """Everything observable below ``node``: type, mode, size, nlink, content, target, xattrs."""
    out: dict[str, tuple[object, ...]] = {}
    cookie = 0
    entries = []
    while batch := await node.readdir(cookie, 100):
        entries += batch
        cookie = batch[-1].cookie
    for entry in entries:
        if entry.name == "lost+found" and not path:
            continue
        child = await node.walk(entry.name)
        attr = await child.getattr()
        rel = f"{path}/{entry.name}"
        xattrs = {n: await child.xattr_get(n) for n in sorted(await child.xattr_list())}
        content: object = None
        if stat.S_ISREG(attr.mode):
            handle = await child.open(OpenFlags(O_RDONLY))
            content = bytes(await handle.read(0, attr.size + 1))
            await handle.close()
        elif stat.S_ISLNK(attr.mode):
            content = await child.readlink()
        size = attr.size if not stat.S_ISDIR(attr.mode) else None
        out[rel] = (stat.S_IFMT(attr.mode), stat.S_IMODE(attr.mode), size, attr.nlink,
                    content, tuple(xattrs.items()), entry.dtype)
        if stat.S_ISDIR(attr.mode):
            out.update(await snapshot(child, rel))
    return out


def open_image(image: Path, read_only: bool = False) -> Ext2Backend:
    return Ext2Backend(str(image), read_only=read_only)
