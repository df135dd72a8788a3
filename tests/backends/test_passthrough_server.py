"""The passthrough backend end to end: ``ninep serve --mount /data=passthrough:DIR`` with our
client and diod's tools, a blocked read that does not stall other clients, and QEMU's
mapped-xattr layout written through the server."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ninep.backends.registry import open_backend
from ninep.clients import Client, SyncClient
from ninep.vfs.namespace import Namespace
from ninep.vfs.policy import Policy, Rule
from tests.conftest import RunningServer, free_port, start_server, wait_for_port

needs_diod = pytest.mark.skipif(shutil.which("diodcat") is None,
                                reason="Debian's diod is not installed")


def serve(export: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--listen",
                             f"tcp://127.0.0.1:{port}", "--mount",
                             f"/data=passthrough:{export}{''.join(extra)}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_port(port, proc)
    return proc, port


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def test_serve_a_host_directory_to_our_client_and_diods(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "sub").mkdir()
    os.symlink("../big.bin", tmp_path / "sub" / "link")
    proc, port = serve(tmp_path)
    try:
        with SyncClient(f"tcp://127.0.0.1:{port}", uname="root", n_uname=0) as client:
            assert client.read_bytes("data/big.bin") == data
            client.write_bytes("data/sub/new.txt", b"written through 9P\n")
            assert client.readlink("data/sub/link") == "../big.bin"
            assert sorted(client.listdir("data/sub")) == ["link", "new.txt"]
            client.rename("data/sub/new.txt", "data/moved.txt")
            assert client.stat("data/big.bin").st_ino & ((1 << 48) - 1) == \
                os.stat(tmp_path / "big.bin").st_ino
        assert (tmp_path / "moved.txt").read_bytes() == b"written through 9P\n"
        if shutil.which("diodcat"):
            cat = subprocess.run(["diodcat", "-m", "65536", "-s", f"127.0.0.1:{port}", "-a", "",
                                  "data/big.bin"], capture_output=True, timeout=60, check=False)
            assert cat.returncode == 0, cat.stderr
            assert hashlib.sha256(cat.stdout).digest() == hashlib.sha256(data).digest()
            ls = subprocess.run(["diodls", "-s", f"127.0.0.1:{port}", "-a", "", "-l", "/data"],
                                capture_output=True, text=True, timeout=60, check=False)
            assert ls.returncode == 0, ls.stderr
            assert {"big.bin", "sub", "moved.txt"} <= {line.split()[-1]
                                                      for line in ls.stdout.splitlines()}
    finally:
        stop(proc)


@pytest.mark.parametrize("source,needle", [
    ("/nonexistent/export", "no such directory"),
    ("/etc/hostname", "not a directory"),
])
def test_a_bad_source_is_one_line_at_start(source: str, needle: str) -> None:
    result = subprocess.run([sys.executable, "-m", "ninep", "serve", "--listen",
                             "tcp://127.0.0.1:1", "--mount", f"/data=passthrough:{source}"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and source in lines[0] and needle in lines[0], result.stderr


needs_setpriv = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                   reason="needs root and setpriv to run a server as nobody")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@needs_setpriv
def test_an_unreadable_source_is_one_line_at_start() -> None:
    private = Path(tempfile.mkdtemp(prefix="ninep-private-"))
    try:
        private.chmod(0o700)
        result = subprocess.run([*NOBODY, sys.executable, "-m", "ninep", "serve", "--listen",
                                 "tcp://127.0.0.1:1", "--mount", f"/data=passthrough:{private}"],
                                capture_output=True, text=True, timeout=30, check=False)
    finally:
        private.rmdir()
    assert result.returncode == 2
    assert result.stderr.strip() == (f"ninep serve: --mount '/data=passthrough:{private}': "
                                     f"passthrough source {private}: cannot read it")


@needs_setpriv
def test_an_unprivileged_server_defaults_to_mapped_xattr() -> None:
    export = Path(tempfile.mkdtemp(prefix="ninep-export-"))
    try:
        export.chmod(0o777)
        port = free_port()
        proc = subprocess.Popen([*NOBODY, sys.executable, "-m", "ninep", "serve", "--listen",
                                 f"tcp://127.0.0.1:{port}", "--mount",
                                 f"/data=passthrough:{export}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_port(port, proc)
            with SyncClient(f"tcp://127.0.0.1:{port}", uname="root", n_uname=0) as client:
                client.write_bytes("data/f", b"x")
                client.chown("data/f", 1234, 5678)  # stored, though the server is nobody
                st = client.stat("data/f")
                assert (st.st_uid, st.st_gid) == (1234, 5678)
        finally:
            stop(proc)
        host = os.stat(export / "f")
        assert (host.st_uid, host.st_mode) == (65534, 0o100600)
        assert struct.unpack("<I", os.getxattr(export / "f", "user.virtfs.uid"))[0] == 1234
    finally:
        shutil.rmtree(export)


@pytest.fixture
def mapped_server(tmp_path: Path) -> Iterator[RunningServer]:
    yield from _server(tmp_path, {"security_model": "mapped-xattr"})


@pytest.fixture
def plain_server(tmp_path: Path) -> Iterator[RunningServer]:
    yield from _server(tmp_path, {})


def _server(export: Path, options: dict[str, object]) -> Iterator[RunningServer]:
    async def policy() -> Policy:
        backend = await open_backend("passthrough", str(export), dict(options))
        return Policy([Rule(await Namespace.build([("/", backend, False)]))])

    running = start_server(policy)
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(os.path.dirname(running.unix_path), ignore_errors=True)


async def test_a_blocked_read_does_not_stall_another_clients_getattr(
        plain_server: RunningServer, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "f").write_bytes(b"x")
    # our own end of the FIFO, so the client's open does not wait; no data yet
    writer = os.open(tmp_path / "fifo", os.O_RDWR | os.O_NONBLOCK)
    try:
        async with await Client.connect(plain_server.tcp_url) as one, \
                await Client.connect(plain_server.unix_url) as two:
            reader_tree = await one.attach(uname="root", n_uname=0)
            other_tree = await two.attach(uname="root", n_uname=0)
            fifo = await reader_tree.walk("fifo")
            await fifo.lopen(0)
            read = asyncio.ensure_future(fifo.read(0, 100))  # blocks in a server thread
            await asyncio.sleep(0.2)
            assert not read.done()
            for _ in range(20):  # answered while the read is still blocked
                assert (await asyncio.wait_for(other_tree.stat("f"), 10)).st_size == 1
            assert not read.done(), "the read finished early: the test proved nothing"
            os.write(writer, b"at last")
            assert await asyncio.wait_for(read, 10) == b"at last"
            await fifo.clunk()
    finally:
        os.close(writer)


async def test_files_made_through_the_server_carry_qemus_xattrs(
        mapped_server: RunningServer, tmp_path: Path) -> None:
    # the export's root as QEMU would show it: owned by uid 1000 through its xattr
    os.setxattr(tmp_path, "user.virtfs.uid", struct.pack("<I", 1000))
    async with await Client.connect(mapped_server.tcp_url) as client:
        tree = await client.attach(uname="user", n_uname=1000, gid=1000)
        await tree.write_bytes("file", b"content")
        await tree.mkdir("dir", 0o750)
        await tree.symlink("file", "link")
        await tree.chmod("file", 0o640)
        st = await tree.stat("file")
        assert (st.st_uid, st.st_gid, st.st_mode) == (1000, 1000, 0o100640)
        assert "user.virtfs.uid" not in await tree.listxattr("file")
        with pytest.raises(OSError) as exc:
            await tree.setxattr("file", "user.virtfs.uid", b"\0\0\0\0")
        assert exc.value.errno == errno.EACCES

    def stored(name: str) -> dict[str, int]:
        out = {}
        for key in os.listxattr(tmp_path / name):
            raw = os.getxattr(tmp_path / name, key)
            out[key] = struct.unpack("<I" if len(raw) == 4 else "<Q", raw)[0]
        return out

    assert stored("file") == {"user.virtfs.uid": 1000, "user.virtfs.gid": 1000,
                              "user.virtfs.mode": 0o100640}
    assert stored("dir") == {"user.virtfs.uid": 1000, "user.virtfs.gid": 1000,
                             "user.virtfs.mode": 0o40750}
    assert stored("link")["user.virtfs.mode"] == 0o120777
    assert (tmp_path / "link").read_bytes() == b"file"
    assert os.stat(tmp_path / "file").st_mode == 0o100600
    assert os.stat(tmp_path / "file").st_uid == os.geteuid()
