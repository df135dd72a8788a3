"""The 9p backend end to end: a real front server importing real back servers, seen
through the client library (errnos, qids of two imports, locks, a back server that
dies, stops or restarts)."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from remote_servers import BackServer, start_ninep

from ninep.backends.registry import BackendConfigError, open_backend
from ninep.clients import LOCK_UNLCK, LOCK_WRLCK, Client, Tree
from ninep.vfs.node import OpenFlags
from tests.conftest import free_port
from tests.hostile.serverproc import ServerProcess, serve_process
from tests.integration.policy_helpers import make_pki

ROOT = {"uname": "root", "n_uname": 0}
HANG = 30  # seconds after which a wait is a hang (never a speed assertion)
DIODCAT = shutil.which("diodcat") or "/usr/sbin/diodcat"


def imported(path: str, back: BackServer, extra: str = "") -> str:
    return f"{path}=9p:{back.url},uname=root,uid=0{extra}"


@contextmanager
def front(tmp: Path, *mounts: str) -> Iterator[ServerProcess]:
    args: list[str] = []
    for mount in mounts:
        args += ["--mount", mount]
    with serve_process(args, tmp) as server:
        yield server


@asynccontextmanager
async def attach(url: str) -> AsyncIterator[Tree]:
    async with await Client.connect(url) as client:
        tree = await client.attach("root", "", 0)
        yield tree


def tcp(server: ServerProcess) -> str:
    return f"tcp://127.0.0.1:{server.port}"


async def test_errnos_of_the_back_server_reach_the_client(tmp_path: Path) -> None:
    back = start_ninep(tmp_path, "/=ram", unix=True)
    try:
        with front(tmp_path, "/=ram", imported("/imp", back)) as server:
            async with attach(tcp(server)) as tree:
                await tree.mkdir("imp/d")
                await tree.write_bytes("imp/d/f", b"x")
                file = await tree.walk("imp/d/f")
                cases = [
                    (errno.ENOENT, tree.stat("imp/missing")),
                    (errno.ENOTEMPTY, tree.rmdir("imp/d")),
                    (errno.EEXIST, tree.mkdir("imp/d")),
                    # one name: a walk that fails at its first name carries the errno
                    (errno.ENOTDIR, file.walk(["x"])),
                    (errno.EISDIR, tree.remove("imp/d")),
                    (errno.ENODATA, tree.getxattr("imp/d/f", "user.none")),
                    (errno.EXDEV, tree.rename("imp/d/f", "moved")),  # across mounts
                ]
                for code, call in cases:
                    with pytest.raises(OSError) as caught:
                        await call
                    assert caught.value.errno == code, (errno.errorcode[code], caught.value)
    finally:
        back.stop()


async def test_two_imports_of_colliding_servers_keep_qids_apart(tmp_path: Path) -> None:
    """Two RAM servers number their files alike; imported side by side the client still
    sees one qid per file, and a hard link keeps its file's qid."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_ninep(tmp_path / "a", "/=ram", unix=True)
    second = start_ninep(tmp_path / "b", "/=ram", unix=True)
    try:
        with front(tmp_path, "/=ram", imported("/a", first), imported("/b", second)) as server:
            async with attach(tcp(server)) as tree:
                for top in ("a", "b"):
                    await tree.write_bytes(f"{top}/f", top.encode())
                    await tree.mkdir(f"{top}/d")
                await tree.link("a/f", "a/d/again")
                a, b = await tree.stat("a/f"), await tree.stat("b/f")
                back_a = await _back_stat(first, "f")
                back_b = await _back_stat(second, "f")
                assert back_a == back_b, "the back servers should collide for this test"
                assert a.qid.path != b.qid.path
                assert {a.st_ino, b.st_ino}.isdisjoint({(await tree.stat(p)).st_ino
                                                       for p in ("a/d", "b/d", "a", "b")})
                again = await tree.stat("a/d/again")
                assert again.qid.path == a.qid.path and again.st_nlink == 2
                listed = {e.name: e.qid.path for e in await tree.scandir("a/d")}
                assert listed["again"] == a.qid.path
                assert await tree.read_bytes("b/f") == b"b"
    finally:
        first.stop()
        second.stop()


async def _back_stat(back: BackServer, path: str) -> int:
    async with attach(back.url) as tree:
        return (await tree.stat(path)).qid.path


async def test_locks_conflict_across_the_front_and_the_back(tmp_path: Path) -> None:
    back = start_ninep(tmp_path, "/=ram", unix=True)
    try:
        with front(tmp_path, imported("/", back)) as server:
            async with attach(tcp(server)) as via_front, attach(back.url) as direct:
                await via_front.write_bytes("f", b"data")
                mine = await via_front.open("f", "r+b")
                theirs = await direct.open("f", "r+b")
                await mine.lock(LOCK_WRLCK, 0, 10)
                with pytest.raises(OSError) as caught:
                    await theirs.lock(LOCK_WRLCK, 5, 1)
                assert caught.value.errno == errno.EAGAIN
                held = await theirs.getlock(LOCK_WRLCK, 0, 0)
                assert (held.type, held.start, held.length) == (LOCK_WRLCK, 0, 10)
                await theirs.lock(LOCK_WRLCK, 20, 5)  # no overlap: granted
                seen = await mine.getlock(LOCK_WRLCK, 20, 1)
                assert (seen.type, seen.start, seen.length) == (LOCK_WRLCK, 20, 5)
                await mine.close()  # closing releases what it held on the back server
                await theirs.lock(LOCK_WRLCK, 0, 10)
                await theirs.close()
    finally:
        back.stop()


async def test_a_blocked_lock_through_the_front_is_cancelled_by_tflush(tmp_path: Path) -> None:
    back = start_ninep(tmp_path, "/=ram", unix=True)
    try:
        with front(tmp_path, imported("/", back)) as server:
            async with attach(tcp(server)) as via_front, attach(back.url) as direct, \
                    attach(back.url) as third:
                await direct.write_bytes("f", b"data")
                holder = await direct.open("f", "r+b")
                await holder.lock(LOCK_WRLCK)
                waiter = await via_front.open("f", "r+b")
                blocked = asyncio.ensure_future(waiter.lock(LOCK_WRLCK, block=True))
                await asyncio.sleep(0.5)  # let it reach the back server's wait
                assert not blocked.done()
                blocked.cancel()  # the client library sends Tflush
                with pytest.raises(asyncio.CancelledError):
                    await blocked
                await holder.lock(LOCK_UNLCK)
                other = await third.open("f", "r+b")
                # the flushed request must not have been granted once the holder let go
                await asyncio.wait_for(other.lock(LOCK_WRLCK), HANG)
                assert via_front.client.pending == 0
    finally:
        back.stop()


async def test_a_back_server_restart_is_eio_then_new_fids_work(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "kept").write_bytes(b"on disk")
    back = start_ninep(tmp_path, f"/=passthrough:{export}", unix=True)
    try:
        with front(tmp_path, "/=ram", imported("/imp", back)) as server:
            async with attach(tcp(server)) as tree:
                await tree.write_bytes("imp/f", b"before")
                opened = await tree.open("imp/f", "rb")
                walked = await tree.walk("imp/kept")  # a fid, not open, on the import
                await tree.write_bytes("imp/gone", b"soon")
                vanished = await tree.walk("imp/gone")
                top = await tree.walk("imp")
                back.stop(kill=True)
                (export / "gone").unlink()  # while the back server is down
                with pytest.raises(OSError) as caught:
                    await asyncio.wait_for(top.walk(["f"]), HANG)
                assert caught.value.errno == errno.EIO
                await tree.write_bytes("local", b"ram")  # the other mount answers meanwhile
                assert await tree.read_bytes("local") == b"ram"
                back.start()
                data = await _eventually(lambda: tree.read_bytes("imp/kept"))
                assert data == b"on disk"
                with pytest.raises(OSError) as caught:
                    await opened.pread(0, 6)  # open across the restart: EIO until clunked
                assert caught.value.errno == errno.EIO
                await opened.close()
                assert (await walked.getattr()).size == 7  # re-walked by its path
                await walked.clunk()
                for _ in range(2):  # not found again: EIO until clunked
                    with pytest.raises(OSError) as caught:
                        await vanished.getattr()
                    assert caught.value.errno == errno.EIO
                await vanished.clunk()
                await top.clunk()
                await tree.write_bytes("imp/g", b"after")
                assert await tree.read_bytes("imp/g") == b"after"
            assert "Traceback" not in server.log_text()
    finally:
        back.stop()


async def test_a_stopped_back_server_stalls_no_other_mount(tmp_path: Path) -> None:
    back = start_ninep(tmp_path, "/=ram", unix=True)
    try:
        with front(tmp_path, "/=ram", imported("/imp", back)) as server:
            async with attach(tcp(server)) as tree, attach(tcp(server)) as other:
                await tree.write_bytes("imp/f", b"x")
                await other.write_bytes("local", b"here")
                opened = await tree.open("imp/f", "rb")
                assert back.proc is not None
                os.kill(back.proc.pid, signal.SIGSTOP)
                try:
                    stuck = asyncio.ensure_future(opened.pread(0, 1))
                    await asyncio.sleep(0.2)
                    assert not stuck.done()
                    # another connection and this one both get answers meanwhile
                    assert await asyncio.wait_for(other.read_bytes("local"), HANG) == b"here"
                    assert await asyncio.wait_for(tree.read_bytes("local"), HANG) == b"here"
                    flushed = asyncio.ensure_future(opened.pread(0, 1))
                    await asyncio.sleep(0.2)
                    flushed.cancel()  # Tflush: answered without waiting for the back server
                    with pytest.raises(asyncio.CancelledError):
                        await asyncio.wait_for(flushed, HANG)
                finally:
                    os.kill(back.proc.pid, signal.SIGKILL)
                with pytest.raises(OSError) as caught:  # in flight when it died: EIO
                    await asyncio.wait_for(stuck, HANG)
                assert caught.value.errno == errno.EIO
    finally:
        back.stop()


async def _eventually(call: object) -> bytes:
    """Retry ``call`` (a reconnect is in the background) until it answers."""
    assert callable(call)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG
    while True:
        try:
            result: bytes = await call()
            return result
        except OSError as exc:
            # EIO, or ENOENT from a walk of several names cut short by it (walk(5))
            if exc.errno not in (errno.EIO, errno.ENOENT) or loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_a_sequential_reader_gets_exact_bytes_and_sees_changes_made_meanwhile(
        tmp_path: Path) -> None:
    """Read-ahead (backends/remote/handle.py) serves a sequential reader from blocks asked
    for early; a write through the mount after they were asked for is seen all the same."""
    back = start_ninep(tmp_path, "/=ram", unix=True)
    data = os.urandom(5 * 1024 * 1024 + 123)
    try:
        with front(tmp_path, imported("/", back)) as server:
            async with attach(tcp(server)) as tree:
                await tree.write_bytes("f", data)
                reader = await tree.open("f", "rb")
                chunk = 65536
                got = [await reader.fid.read(0, chunk), await reader.fid.read(chunk, chunk)]
                writer = await tree.open("f", "r+b")
                await writer.pwrite(2 * chunk, b"N" * chunk)  # ahead of the reader
                await writer.close()
                assert await reader.fid.read(2 * chunk, chunk) == b"N" * chunk
                offset = 3 * chunk
                got.append(b"N" * chunk)
                while piece := await reader.fid.read(offset, chunk):
                    got.append(piece)
                    offset += len(piece)
                await reader.close()
                expected = data[:2 * chunk] + b"N" * chunk + data[3 * chunk:]
                assert b"".join(got) == expected
            if shutil.which(DIODCAT):  # a reader nobody here wrote: diodcat, 64 KiB at a time
                result = subprocess.run([DIODCAT, "-s", f"127.0.0.1:{server.port}", "-a", "",
                                         "-m", "65536", "f"], capture_output=True, timeout=120,
                                        check=False)
                assert result.returncode == 0, result.stderr
                assert result.stdout == expected
    finally:
        back.stop()


async def test_a_tls_import_proves_a_certificate_and_a_key(tmp_path: Path) -> None:
    """tls:// with ca/cert/key, and Tauth with auth_key: a back server whose only
    policy wants both lets the import in, and refuses it without the key."""
    pki = make_pki(tmp_path)
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "front_ed25519"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.OpenSSH,
                                           serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    (tmp_path / "authorized_keys").write_bytes(public + b" front@test\n")
    port = free_port()
    (tmp_path / "back.toml").write_text(f"""
[[listen]]
kind = "tls"
address = "127.0.0.1:{port}"
cert = "{pki.server_cert}"
key = "{pki.server_key}"
client_ca = "{pki.ca}"
client_cert = "required"

[auth]
authorized_keys = "{tmp_path / 'authorized_keys'}"

[namespaces.secret]
mounts = [{{ path = "/", backend = "ram" }}]

[[policy]]
name = "alice with her key"
namespace = "secret"
match = {{ cert_cn = "alice", key = "front@test" }}
""")
    back = BackServer([sys.executable, "-m", "ninep", "serve", "--log-level", "warning",
                       "--config", str(tmp_path / "back.toml")],
                      f"tls://127.0.0.1:{port}", tmp_path / "back.log").start()
    cert, cert_key, _ = pki.clients["alice"]
    tls = {"ca": str(pki.ca), "cert": str(cert), "key": str(cert_key)}
    try:
        backend = await open_backend("9p", back.url, {**tls, "auth_key": str(key_file),
                                                      "uname": "root", "uid": 0})
        try:
            node, handle = await backend.root.create("f", OpenFlags(2), 0o644, 0, 0)
            assert await handle.write(0, b"secret") == 6
            assert await handle.read(0, 10) == b"secret"
            await handle.close()
            assert (await node.getattr()).size == 6
        finally:
            await backend.close()
        with pytest.raises(BackendConfigError, match=r"Permission denied|EACCES|refused"):
            await open_backend("9p", back.url, {**tls, "uname": "root", "uid": 0})
    finally:
        back.stop()
