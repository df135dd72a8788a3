"""The storage the kernel suite's backend shares serve: an ext2 image, a host directory, a tar.

The server under test mounts them at /ext2, /pt and /tar of its namespace, and an
overlay (a RAM upper over the same archive) at /ovl, and (import_store.py) another
server's RAM disk at /imp and an ext2 image stored there at /inner; the backend
shares run the scenarios there (Share.base). After the boot the host judges what
the guest left behind: ``e2fsck -fn`` on both images, the archive's bytes unchanged
by the overlay, and (test_kernel.py) the tar tree the guest listed against the
archive's content.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .import_store import ImportStore

__all__ = ["BackendStore", "TarEntry", "parse_manifest", "seed_manifest"]

#: When the seed tree was "made": every entry gets this mtime.
SEED_MTIME = 1_600_000_000


@dataclass(frozen=True)
class TarEntry:
    """One line of a tree manifest: what the guest's ``ls`` and ``md5sum`` saw."""

    kind: str  # "F", "D" or "L"
    path: str
    detail: str  # F: "size mode uid gid mtime nlink md5"; D: "mode uid gid"; L: target


def _write_seed(root: Path) -> None:
    files = {
        "README": b"served from a gzip'd tar archive\n",
        "empty": b"",
        "bin/big.bin": hashlib.sha256(b"seed").digest() * (8 * 1024 * 1024 // 32 + 3),
        "deep/" + "/".join(f"level{i}" for i in range(12)) + "/leaf.txt": b"deep\n",
        "long/" + "n" * 150 + ".txt": b"a name longer than ustar's 100 bytes\n",
    }
    for i in range(300):
        files[f"many/file{i:04d}"] = f"{i}\n".encode() * (i + 1)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho tool\n")
    (root / "bin" / "tool").chmod(0o755)
    os.link(root / "README", root / "README.hardlink")
    (root / "link-to-readme").symlink_to("README")
    (root / "dangling").symlink_to("/nonexistent/target")
    (root / "private").mkdir(mode=0o700)
    (root / "private" / "secret").write_bytes(b"for uid 1234 only\n")
    (root / "private" / "secret").chmod(0o600)
    for path in (root / "private", root / "private" / "secret"):
        os.chown(path, 1234, 1234)
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (SEED_MTIME, SEED_MTIME), follow_symlinks=False)


def seed_manifest(root: Path) -> list[TarEntry]:
    """The manifest the guest should print for the seed tree at ``root``."""
    out = []
    for path in sorted(root.rglob("*")):
        rel = "./" + str(path.relative_to(root))
        st = path.lstat()
        if path.is_symlink():
            out.append(TarEntry("L", rel, os.readlink(path)))
        elif path.is_dir():
            out.append(TarEntry("D", rel, f"{st.st_mode & 0o7777:o} {st.st_uid} {st.st_gid}"))
        else:
            md5 = hashlib.md5(path.read_bytes()).hexdigest()
            out.append(TarEntry("F", rel, f"{st.st_size} {st.st_mode & 0o7777:o} {st.st_uid} "
                                          f"{st.st_gid} {int(st.st_mtime)} {st.st_nlink} {md5}"))
    return out


def parse_manifest(output: str) -> list[TarEntry]:
    """The ``@@TREE`` lines a guest scenario printed."""
    out = []
    for line in output.splitlines():
        if line.startswith("@@TREE "):
            kind, _, rest = line[len("@@TREE "):].partition(" ")
            path, _, detail = rest.partition(" ")
            out.append(TarEntry(kind, path, detail))
    return sorted(out, key=lambda e: e.path)


class BackendStore:
    """Makes the image, directory and archive in ``workdir``; the server's --mount flags."""

    #: What the host checks after the boot (host_checks).
    HOST_CHECKS = ("ext2_image_e2fsck_clean", "tar_archive_unchanged",
                   *ImportStore.HOST_CHECKS)

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.image = workdir / "ext2.img"
        self.export = workdir / "export"
        self.seed = workdir / "seed"
        self.archive = workdir / "seed.tar.gz"
        self.archive_sha256 = ""
        self.imports = ImportStore(workdir / "import")  # /imp and /inner: a back server

    def create(self) -> None:
        self.export.mkdir(parents=True)
        _write_seed(self.seed)
        subprocess.run(["tar", "--format=pax", "-czf", str(self.archive), "-C", str(self.seed),
                        "."], check=True, capture_output=True)
        self.archive_sha256 = _sha256(self.archive)
        subprocess.run([_sbin("mke2fs"), "-q", "-F", "-t", "ext2", "-b", "4096", "-I", "256",
                        str(self.image), "512M"], check=True, capture_output=True)
        self.imports.create()

    def mount_args(self) -> list[str]:
        return ["--mount", f"/ext2=ext2:{self.image}",
                "--mount", f"/pt=passthrough:{self.export}",
                "--mount", f"/tar=tar:{self.archive}",
                "--mount", f"/ovl=overlay,lower=tar:{self.archive},upper=ram",
                *self.imports.mount_args()]

    def host_checks(self) -> dict[str, tuple[bool, str]]:
        """After the server stopped: (passed, report) for each of HOST_CHECKS."""
        fsck = subprocess.run([_sbin("e2fsck"), "-fn", str(self.image)],
                              capture_output=True, text=True)
        now = _sha256(self.archive)
        return {
            "ext2_image_e2fsck_clean": (fsck.returncode == 0, fsck.stdout + fsck.stderr),
            "tar_archive_unchanged": (now == self.archive_sha256,
                                      f"sha256 {self.archive_sha256} before, {now} after"),
            **self.imports.host_checks(),
        }

    def remove(self) -> None:
        shutil.rmtree(self.seed, ignore_errors=True)
        shutil.rmtree(self.export, ignore_errors=True)
        self.image.unlink(missing_ok=True)
        self.imports.remove()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sbin(tool: str) -> str:
    return shutil.which(tool) or f"/usr/sbin/{tool}"
