"""A FUSE-mounted tree as GNU ls, cp, tar and diff see it: like the same files kept locally."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

MTIME_NS = 1_600_000_000_123_456_789  # an mtime with nanoseconds, for cp -a and tar to carry


def make_sample_tree(root: Path) -> None:
    """Files that cross the mount's limits: bigger than msize and FUSE's 128 KiB reads,
    a directory longer than one Treaddir, modes, symlinks, hard links, nanosecond mtimes."""
    rng = random.Random(9)
    root.mkdir()
    (root / "empty").write_bytes(b"")
    (root / "hello.txt").write_text("hello, fuse\n")
    (root / "big.bin").write_bytes(rng.randbytes(1536 * 1024 + 17))
    (root / "private").write_bytes(b"secret")
    os.chmod(root / "private", 0o600)
    (root / "tool.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "tool.sh", 0o755)
    deep = root / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "leaf").write_bytes(rng.randbytes(70_000))
    os.symlink("../../../hello.txt", deep / "up-link")
    os.symlink("nowhere", root / "dangling")
    os.link(root / "hello.txt", root / "a" / "hard-link")
    many = root / "many"
    many.mkdir()
    for n in range(300):  # ~100 bytes a dirent: two Treaddir replies at msize 16 KiB
        (many / f"entry-{n:04d}-{'x' * 80}").write_text(str(n))
    os.chmod(root / "a" / "b", 0o750)
    for path in [*sorted(root.rglob("*"), key=lambda p: -len(p.parts)), root]:
        os.utime(path, ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, timeout=120)


def listing(directory: Path) -> list[str]:
    """``ls -lRn`` with full times, less what a file system may differ in and be right:
    block counts ("total"), and a directory's own size and link count."""
    out = run("ls", "-lRn", "--time-style=full-iso", ".", cwd=directory)
    assert out.returncode == 0, out.stderr
    lines = []
    for line in out.stdout.decode().splitlines():
        if line.startswith("total "):
            continue
        fields = line.split()
        if line.startswith("d") and len(fields) > 5:
            fields[1] = fields[4] = "-"
        lines.append(" ".join(fields))
    return lines


def test_cp_a_into_the_mount_diff_ls_and_tar_agree(workdir: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    make_sample_tree(local)
    copied = workdir / "copy"
    done = run("cp", "-a", str(local), str(copied))
    assert done.returncode == 0, done.stderr
    diff = run("diff", "-r", "--no-dereference", str(local), str(copied))
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert listing(copied) == listing(local)
    tars = [run("tar", "--sort=name", "--format=posix", "--pax-option=delete=atime,delete=ctime",
                "-cf", "-", ".", cwd=where) for where in (local, copied)]
    assert tars[0].returncode == 0 and tars[1].returncode == 0, tars[1].stderr
    assert tars[1].stdout == tars[0].stdout  # names, modes, owners, mtimes, links, data


def test_cp_a_out_of_the_mount_and_tar_x_into_it(workdir: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    make_sample_tree(local)
    archive = tmp_path / "sample.tar"
    assert run("tar", "--format=posix", "-cf", str(archive), "-C", str(local), ".").returncode == 0
    unpacked = workdir / "unpacked"
    unpacked.mkdir()
    done = run("tar", "-xpf", str(archive), "-C", str(unpacked))
    assert done.returncode == 0, done.stderr
    back = tmp_path / "back"
    done = run("cp", "-a", str(unpacked), str(back))
    assert done.returncode == 0, done.stderr
    diff = run("diff", "-r", "--no-dereference", str(local), str(back))
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert listing(back) == listing(local)
    assert os.stat(unpacked / "a" / "hard-link").st_ino == os.stat(unpacked / "hello.txt").st_ino
