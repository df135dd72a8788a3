"""The backends the shared acceptance suite (test_contract.py) runs against, opened via the registry.

A writable case starts empty; a read-only case is built from the seed tree
(``make_seed``) the way a user would build it: a tar archive by GNU tar, an
ext2 image by ``mke2fs -d``, a host directory served as is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from remote_servers import import_server, start_diod, start_ninep

from ninep.backends.registry import KINDS, open_backend
from ninep.vfs.node import Backend

__all__ = ["READ_ONLY", "SEED_FILES", "WRITABLE", "BackendCase", "make_seed"]

#: file path -> content of the seed tree every read-only case serves
SEED_FILES: dict[str, bytes] = {
    "empty": b"",
    "hello.txt": b"hello, world\n",
    "dir/nested/deep.bin": bytes(range(256)) * 4099,  # ~1 MiB, not block-aligned
    "dir/a": b"a" * 4097,
    "n" * 255: b"a name of 255 bytes\n",
}
SEED_SYMLINKS = {"link-to-hello": "hello.txt", "dir/up": "../hello.txt"}
SEED_HARDLINK = ("hello.txt", "dir/hello-again.txt")


def make_seed(root: Path) -> Path:
    """Write the seed tree under ``root`` (fixed times and modes, so tools reproduce them)."""
    for rel, data in SEED_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o640 if rel == "dir/a" else 0o644)
    for rel, target in SEED_SYMLINKS.items():
        (root / rel).symlink_to(target)
    os.link(root / SEED_HARDLINK[0], root / SEED_HARDLINK[1])
    (root / "emptydir").mkdir()
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789),
                 follow_symlinks=False)
    return root


Maker = Callable[[Path], Awaitable[Backend]]


@dataclass(frozen=True)
class BackendCase:
    """One backend configuration the acceptance suite runs against."""

    name: str
    kind: str
    make: Maker  # (a scratch directory) -> an opened backend
    features: frozenset[str] = frozenset()  # "xattr", "mknod", "hardlink"
    check: Callable[[Path], None] | None = field(default=None)  # after close
    quirks: frozenset[str] = frozenset()  # a real server's known departures (tests/clients)

    def require(self) -> None:
        try:
            KINDS[self.kind].load()
        except ImportError as exc:
            pytest.skip(f"backend {self.kind!r} is not available: {exc}")

    def has(self, feature: str) -> bool:
        return feature in self.features


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(f"/usr/sbin/{name}") or shutil.which(f"/sbin/{name}")
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/setup-env --with-test-tools)")
    return path


def _mke2fs(image: Path, seed: Path | None = None, size: str = "64M") -> Path:
    args = [_tool("mke2fs"), "-q", "-F", "-t", "ext2", "-b", "1024", "-I", "256", "-N", "4096"]
    if seed is not None:
        args += ["-d", str(seed)]
    subprocess.run([*args, str(image), size], check=True, capture_output=True,
                   env={**os.environ, "E2FSPROGS_FAKE_TIME": "1600000000"})
    return image


def _e2fsck_clean(scratch: Path) -> None:
    result = subprocess.run([_tool("e2fsck"), "-fn", str(scratch / "fs.img")],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"e2fsck -fn found problems:\n{result.stdout}{result.stderr}"


async def _ram(scratch: Path) -> Backend:
    return await open_backend("ram")


async def _passthrough(scratch: Path) -> Backend:
    (scratch / "export").mkdir()
    return await open_backend("passthrough", str(scratch / "export"))


async def _ext2(scratch: Path) -> Backend:
    return await open_backend("ext2", str(_mke2fs(scratch / "fs.img")))


async def _overlay(scratch: Path) -> Backend:
    return await open_backend("overlay", options={"lower": "ram", "upper": "ram"})


async def _tar_ro(scratch: Path) -> Backend:
    seed = make_seed(scratch / "seed")
    archive = scratch / "seed.tar"
    subprocess.run([_tool("tar"), "--format=pax", "-cf", str(archive), "-C", str(seed), "."],
                   check=True, capture_output=True)
    return await open_backend("tar", str(archive))


async def _ext2_ro(scratch: Path) -> Backend:
    image = _mke2fs(scratch / "fs.img", make_seed(scratch / "seed"))
    return await open_backend("ext2", str(image), read_only=True)


async def _passthrough_ro(scratch: Path) -> Backend:
    return await open_backend("passthrough", str(make_seed(scratch / "seed")), read_only=True)


async def _9p_ram(scratch: Path) -> Backend:
    return await import_server(start_ninep(scratch, "/=ram", unix=True))


async def _9p_passthrough(scratch: Path) -> Backend:
    (scratch / "export").mkdir()
    return await import_server(start_ninep(scratch, f"/=passthrough:{scratch / 'export'}"))


async def _9p_ext2(scratch: Path) -> Backend:
    return await import_server(start_ninep(scratch, f"/=ext2:{_mke2fs(scratch / 'fs.img')}"))


async def _9p_diod(scratch: Path) -> Backend:
    (scratch / "export").mkdir()
    return await import_server(start_diod(scratch, scratch / "export"),
                               aname=str(scratch / "export"), msize="65536")


async def _9p_ext2_ro(scratch: Path) -> Backend:
    image = _mke2fs(scratch / "fs.img", make_seed(scratch / "seed"))
    return await import_server(start_ninep(scratch, f"/=ext2:{image},ro"))


WRITABLE = [
    BackendCase("ram", "ram", _ram, frozenset({"xattr", "mknod", "hardlink"})),
    BackendCase("passthrough", "passthrough", _passthrough,
                frozenset({"xattr", "mknod", "hardlink"})),
    BackendCase("ext2", "ext2", _ext2, frozenset({"xattr", "mknod", "hardlink"}),
                check=_e2fsck_clean),
    BackendCase("overlay", "overlay", _overlay, frozenset({"xattr", "mknod", "hardlink"})),
    # the 9p backend importing real servers: ours over each backend, and Debian's diod
    BackendCase("9p-ram", "9p", _9p_ram, frozenset({"xattr", "mknod", "hardlink"})),
    BackendCase("9p-passthrough", "9p", _9p_passthrough,
                frozenset({"xattr", "mknod", "hardlink"})),
    BackendCase("9p-ext2", "9p", _9p_ext2, frozenset({"xattr", "mknod", "hardlink"}),
                check=_e2fsck_clean),
    BackendCase("9p-diod", "9p", _9p_diod, frozenset({"xattr", "mknod", "hardlink"}),
                quirks=frozenset({"unlinked-fid-by-path"})),
]

READ_ONLY = [
    BackendCase("tar", "tar", _tar_ro),
    BackendCase("ext2-ro", "ext2", _ext2_ro, check=_e2fsck_clean),
    BackendCase("passthrough-ro", "passthrough", _passthrough_ro),
    BackendCase("9p-ext2-ro", "9p", _9p_ext2_ro, check=_e2fsck_clean),
]
