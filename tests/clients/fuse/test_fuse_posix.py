"""Plain file operations through the FUSE mount (os.*, fcntl), checked as on a local disk.

The client suite's cases for Tree, done here by the kernel through ``ninep fuse``:
sizes that cross msize and FUSE's request size, handles that outlive their names,
errnos, and POSIX locks that reach the server (another 9P client sees them).
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import select
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ninep.clients import LOCK_UNLCK, LOCK_WRLCK, SyncClient
from tests.hostile.serverproc import ServerProcess

FLOCK = "hhqqi4x"  # struct flock on Linux x86-64: l_type, l_whence, l_start, l_len, l_pid


def test_large_file_pread_pwrite_and_truncate(workdir: Path) -> None:
    data = random.Random(1).randbytes(700_000)
    path = workdir / "big"
    path.write_bytes(data)
    assert path.stat().st_size == len(data)
    assert path.read_bytes() == data
    fd = os.open(path, os.O_RDWR)
    try:
        assert os.pread(fd, 50_000, 123_457) == data[123_457:173_457]
        assert os.pwrite(fd, b"Z" * 40_000, 600_000) == 40_000
        os.ftruncate(fd, 650_000)
        assert os.fstat(fd).st_size == 650_000
    finally:
        os.close(fd)
    expect = data[:600_000] + b"Z" * 40_000 + data[640_000:650_000]
    assert path.read_bytes() == expect
    os.truncate(path, 700_001)  # growing leaves a hole of zeros
    assert path.read_bytes() == expect + bytes(50_001)
    with open(path, "ab") as f:
        f.write(b"tail")
    assert path.read_bytes().endswith(bytes(10) + b"tail")


def test_open_flags_and_errnos(workdir: Path) -> None:
    path = workdir / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.write(fd, b"0123456789")
    os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 & ~_umask()
    with pytest.raises(FileExistsError):
        os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert path.stat().st_size == 0
    with pytest.raises(FileNotFoundError):
        (workdir / "missing").read_bytes()
    with pytest.raises(IsADirectoryError):
        os.open(workdir, os.O_WRONLY)
    with pytest.raises(NotADirectoryError):
        os.listdir(path)
    (workdir / "d").mkdir()
    (workdir / "d" / "x").write_bytes(b"")
    with pytest.raises(OSError) as raised:
        os.rmdir(workdir / "d")
    assert raised.value.errno == errno.ENOTEMPTY
    with pytest.raises(FileExistsError):
        os.mkdir(workdir / "d")


def test_a_handle_outlives_its_name(workdir: Path) -> None:
    path = workdir / "doomed"
    path.write_bytes(b"still here")
    fd = os.open(path, os.O_RDWR)
    try:
        os.unlink(path)
        assert not path.exists()
        assert os.pread(fd, 100, 0) == b"still here"
        os.pwrite(fd, b"!", 10)
        os.ftruncate(fd, 5)  # Tsetattr and Tgetattr on the open fid: the name is gone
        assert os.fstat(fd).st_size == 5
    finally:
        os.close(fd)
    moved = workdir / "moved"
    (workdir / "old").write_bytes(b"abc")
    fd = os.open(workdir / "old", os.O_RDONLY)
    try:
        os.rename(workdir / "old", moved)
        assert os.read(fd, 10) == b"abc"
    finally:
        os.close(fd)


def test_rename_links_and_listing(workdir: Path) -> None:
    (workdir / "a").write_bytes(b"a")
    (workdir / "b").write_bytes(b"b")
    os.rename(workdir / "a", workdir / "b")  # replaces b
    assert (workdir / "b").read_bytes() == b"a"
    assert not (workdir / "a").exists()
    done = subprocess.run(["mv", "-n", str(workdir / "b"), str(workdir / "c")])
    assert done.returncode == 0 and (workdir / "c").read_bytes() == b"a"
    (workdir / "b").write_bytes(b"keep")
    subprocess.run(["mv", "-n", str(workdir / "c"), str(workdir / "b")])  # renameat2 NOREPLACE
    assert (workdir / "b").read_bytes() == b"keep"
    os.symlink("b", workdir / "sym")
    assert os.readlink(workdir / "sym") == "b"
    assert stat.S_ISLNK(os.lstat(workdir / "sym").st_mode)
    assert (workdir / "sym").read_bytes() == b"keep"
    os.link(workdir / "b", workdir / "hard")
    assert os.stat(workdir / "hard").st_ino == os.stat(workdir / "b").st_ino
    assert os.stat(workdir / "b").st_nlink == 2
    many = workdir / "many"
    many.mkdir()
    names = {f"n{i:04d}-{'y' * 60}" for i in range(500)}
    for name in names:
        (many / name).write_bytes(b"")
    listed = os.listdir(many)
    assert len(listed) == len(names) and set(listed) == names  # none twice, none missed
    os.rename(many, workdir / "renamed")
    assert len(os.listdir(workdir / "renamed")) == 500


def test_modes_times_statvfs_and_xattrs(workdir: Path) -> None:
    path = workdir / "f"
    path.write_bytes(b"x")
    os.chmod(path, 0o4751)
    assert stat.S_IMODE(path.stat().st_mode) == 0o4751
    os.utime(path, ns=(1_000_000_001, 2_000_000_002))
    info = path.stat()
    assert (info.st_atime_ns, info.st_mtime_ns) == (1_000_000_001, 2_000_000_002)
    # touch -m sets the mtime alone (UTIME_OMIT for the atime)
    assert subprocess.run(["touch", "-m", "-d", "@5", str(path)]).returncode == 0
    info = path.stat()
    assert (info.st_atime_ns, info.st_mtime_ns) == (1_000_000_001, 5_000_000_000)
    before = time.time_ns()
    os.utime(path)  # both set to the server's now
    assert path.stat().st_mtime_ns >= before - 5_000_000_000
    os.chown(path, 1234, 5678)
    os.chown(path, -1, 42)  # -1 leaves the owner as it is
    info = path.stat()
    assert (info.st_uid, info.st_gid) == (1234, 42)
    os.mkfifo(workdir / "fifo", 0o600)
    assert stat.S_ISFIFO(os.lstat(workdir / "fifo").st_mode)
    vfs = os.statvfs(workdir)
    assert vfs.f_bsize > 0 and vfs.f_namemax > 0 and vfs.f_blocks >= vfs.f_bfree
    os.setxattr(path, "user.colour", b"blue")
    assert os.getxattr(path, "user.colour") == b"blue"
    assert "user.colour" in os.listxattr(path)
    os.removexattr(path, "user.colour")
    with pytest.raises(OSError) as raised:
        os.getxattr(path, "user.colour")
    assert raised.value.errno == errno.ENODATA


# --- POSIX locks --------------------------------------------------------------

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
print("locked", flush=True)
sys.stdin.read()
"""

WAITER = """
import fcntl, os, signal, sys
fd = os.open(sys.argv[1], os.O_RDWR)
if sys.argv[2] == "interrupt":
    def interrupt(*_):  # raising, so that Python does not retry the call after EINTR
        raise InterruptedError
    signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(1)
print("waiting", flush=True)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
except InterruptedError:
    print("interrupted", flush=True)
else:
    print("got it", flush=True)
"""


def _line(proc: subprocess.Popen[str]) -> str:
    """The child's next line; a child stuck for a minute fails the test instead of hanging it."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    assert ready, "the child printed nothing for 60 s"
    return proc.stdout.readline()


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_posix_locks_reach_the_server(workdir: Path, fuse_server: ServerProcess) -> None:
    path = workdir / "locked"
    path.write_bytes(bytes(100))
    holder = _python(HOLDER, str(path))
    try:
        assert _line(holder) == "locked\n"
        fd = os.open(path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 20)  # no overlap
            query = struct.pack(FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 5, 1, 0)
            kind, _, start, length, pid = struct.unpack(FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK,
                                                                           query))
            assert (kind, start, length, pid) == (fcntl.F_WRLCK, 0, 10, holder.pid)
            # Another 9P client, not through this kernel, sees the holder's lock.
            url = f"tcp://127.0.0.1:{fuse_server.port}"
            with SyncClient(url, uname="root") as other, \
                    other.open(f"{workdir.name}/locked", "r+b") as f:
                assert f.getlock(LOCK_WRLCK, 0, 10).type != LOCK_UNLCK
                assert holder.stdin is not None
                holder.stdin.close()  # the holder exits: its close releases the lock
                assert holder.wait(30) == 0
                assert f.getlock(LOCK_WRLCK, 0, 10).type == LOCK_UNLCK
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
        finally:
            os.close(fd)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("how", ["wait", "interrupt"])
def test_a_blocking_lock_waits_and_can_be_interrupted(workdir: Path, how: str) -> None:
    path = workdir / "contended"
    path.write_bytes(bytes(100))
    fd = os.open(path, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
    waiter = _python(WAITER, str(path), how)
    try:
        assert _line(waiter) == "waiting\n"
        if how == "interrupt":
            assert _line(waiter) == "interrupted\n"
            assert waiter.wait(30) == 0
            # The flushed Tlock left nothing behind: a third process gets the lock at once.
            fcntl.lockf(fd, fcntl.LOCK_UN, 10, 0)
            check = subprocess.run([sys.executable, "-c", HOLDER, str(path)], input="",
                                   capture_output=True, text=True, timeout=30)
            assert check.stdout == "locked\n"
        else:
            time.sleep(0.5)  # long enough for a lock that does not wait to be taken
            assert waiter.poll() is None
            fcntl.lockf(fd, fcntl.LOCK_UN, 10, 0)
            assert _line(waiter) == "got it\n"
            assert waiter.wait(30) == 0
    finally:
        os.close(fd)
        waiter.kill()
        waiter.wait()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
