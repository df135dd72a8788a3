"""Shared pieces of the tar backend tests: a source tree with every kind of file, GNU tar
runs, and a comparison of what the backend serves with the host tree it was made from."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ninep.backends.tar import TarBackend
from ninep.vfs.node import Node, OpenFlags

__all__ = ["GNU_TAR", "O_RDONLY", "compare_tree", "gnu_tar", "make_tree", "read_all",
           "walk_path"]

O_RDONLY = 0
GNU_TAR = shutil.which("tar")
IS_ROOT = os.geteuid() == 0
LONG_DIR = "d" * 120  # a path component past ustar's 100-byte name field
DEEP = "/".join(["component-" + "x" * 40] * 7)  # a path over 255 bytes
LONG_TARGET = "../" + "t" * 150 + "/target"  # a link target past the 100-byte linkname field


def gnu_tar(*args: str | Path, cwd: Path | None = None) -> None:
    if GNU_TAR is None:
        pytest.skip("GNU tar is not installed")
    subprocess.run([GNU_TAR, *map(str, args)], check=True, capture_output=True, cwd=cwd,
                   env={**os.environ, "TZ": "UTC", "LC_ALL": "C"})


def make_tree(root: Path, *, specials: bool = True, xattrs: bool = True,
              sparse: bool = True) -> Path:
    """Every kind of file GNU tar archives, with odd sizes, long names and fixed times."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "empty").write_bytes(b"")
    (root / "hello.txt").write_bytes(b"hello, world\n")
    (root / "block-exact").write_bytes(bytes(range(256)) * 2)  # exactly one block
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 77))
    (root / LONG_DIR).mkdir()
    (root / LONG_DIR / ("f" * 200)).write_bytes(b"long name\n")
    (root / DEEP).mkdir(parents=True)
    (root / DEEP / "leaf.txt").write_bytes(b"deep\n")
    (root / "emptydir").mkdir()
    (root / "setuid").write_bytes(b"#!/bin/sh\n")
    (root / "setuid").chmod(0o4755)
    (root / "private").write_bytes(b"secret")
    (root / "private").chmod(0o600)
    os.link(root / "hello.txt", root / LONG_DIR / "hello-link")
    os.link(root / "hello.txt", root / "hello-again")
    (root / "sym").symlink_to("hello.txt")
    (root / "long-sym").symlink_to(LONG_TARGET)
    (root / "dangling").symlink_to("/nowhere/at/all")
    if specials and IS_ROOT:
        os.mkfifo(root / "fifo", 0o640)
        os.mknod(root / "null-dev", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(root / "blk-dev", stat.S_IFBLK | 0o660, os.makedev(259, 70000))
        os.chown(root / "private", 1234, 5678)
    if sparse:
        with open(root / "sparse", "wb") as f:
            f.truncate(64 * 1024 * 1024)
            f.seek(8192)
            f.write(b"island one")
            f.seek(40 * 1024 * 1024)
            f.write(b"island two" * 1000)
    if xattrs:
        os.setxattr(root / "hello.txt", "user.greeting", b"bonjour")
        os.setxattr(root / "emptydir", "user.dir-attr", b"\x00\x01binary\xff")
        if IS_ROOT:
            os.setxattr(root / "big.bin", "trusted.secret", b"t" * 300)
    for index, path in enumerate([*sorted(root.rglob("*"), reverse=True), root]):
        ns = 1_600_000_000_000_000_000 + index * 1_000_000_123
        os.utime(path, ns=(ns + 7, ns), follow_symlinks=False)
    return root


async def walk_path(node: Node, path: str) -> Node:
    for part in path.split("/"):
        if part:
            node = await node.walk(part)
    return node


async def read_all(node: Node, chunk: int = 1 << 20) -> bytes:
    handle = await node.open(OpenFlags(O_RDONLY))
    out = bytearray()
    try:
        while piece := await handle.read(len(out), chunk):
            out += piece
    finally:
        await handle.close()
    return bytes(out)


async def compare_tree(backend: TarBackend, root: Path, *, times: str = "ns",
                       xattrs: bool = True) -> int:
    """Assert the backend serves ``root`` exactly; return the number of paths compared.

    ``times``: "ns" (PAX by GNU tar: exact), "s" (ustar/GNU headers: whole seconds),
    "float" (tarfile's PAX writer goes through a float: within a microsecond).
    """
    host_inos: dict[int, int] = {}
    count = 0
    for path in [root, *sorted(root.rglob("*"))]:
        rel = path.relative_to(root).as_posix()
        rel = "" if rel == "." else rel
        node = await walk_path(backend.root, rel)
        st, attr = os.lstat(path), await node.getattr()
        where = rel or "(root)"
        assert attr.mode == st.st_mode, (where, oct(attr.mode), oct(st.st_mode))
        assert (attr.uid, attr.gid) == (st.st_uid, st.st_gid), where
        want = st.st_mtime_ns if times != "s" else st.st_mtime_ns // 10**9 * 10**9
        assert abs(attr.mtime_ns - want) <= (1000 if times == "float" else 0), where
        if times == "ns":  # GNU tar's PAX headers carry ctime (and atime, which reading moved)
            assert attr.ctime_ns == st.st_ctime_ns, where
        if not stat.S_ISDIR(st.st_mode):
            assert attr.nlink == st.st_nlink, where
            # one host inode <-> one served inode: hard links share it, nothing else does
            assert host_inos.setdefault(st.st_ino, attr.ino) == attr.ino, where
        if stat.S_ISREG(st.st_mode):
            assert attr.size == st.st_size, where
            assert await read_all(node) == path.read_bytes(), where
        elif stat.S_ISLNK(st.st_mode):
            assert await node.readlink() == os.readlink(path), where
            assert attr.size == len(os.fsencode(os.readlink(path))), where
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            assert attr.rdev == st.st_rdev, where
        elif stat.S_ISDIR(st.st_mode):
            host_names = sorted(os.listdir(path))
            served = [e.name for e in await node.readdir(0, 1 << 20)]
            assert served == host_names, where
            subdirs = sum(1 for n in host_names if (path / n).is_dir() and
                          not (path / n).is_symlink())
            assert attr.nlink == 2 + subdirs, where
        if xattrs and not stat.S_ISLNK(st.st_mode):
            host = {n: os.getxattr(path, n) for n in os.listxattr(path)
                    if not n.startswith("security.selinux")}
            served_x = {n: await node.xattr_get(n) for n in await node.xattr_list()}
            assert served_x == host, where
        count += 1
    assert len(set(host_inos.values())) == len(host_inos)
    return count
