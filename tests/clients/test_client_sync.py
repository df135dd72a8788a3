"""The blocking SyncClient facade, used the way a plain script would."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Iterator

import pytest

from ninep.clients import LOCK_UNLCK, LOCK_WRLCK, SyncClient, SyncTree
from tests.clients.targets import Target


@pytest.fixture
def fs(target: Target) -> Iterator[SyncTree]:
    """A SyncTree rooted in a fresh directory, on its own SyncClient."""
    name = f"s-{uuid.uuid4().hex[:12]}"
    with SyncClient(target.url, aname=target.aname, uname=target.uname,
                    n_uname=target.n_uname, msize=target.msize) as client:
        client.mkdir(name)
        sub = client.subtree(name)
        yield sub
        sub.close()
        client.rmtree(name)


def test_sync_round_trip(fs: SyncTree) -> None:
    data = os.urandom(300_000)
    with fs.open("big", "wb") as f:
        assert f.write(data) == len(data)
        assert f.tell() == len(data)
    with fs.open("big", "rb") as f:
        assert f.read(10) == data[:10]
        f.seek(-10, os.SEEK_END)
        assert f.read() == data[-10:]
        assert f.pread(5, 5) == data[5:10]
        assert f.stat().st_size == len(data)
    assert hashlib.sha256(fs.read_bytes("big")).digest() == hashlib.sha256(data).digest()
    with fs.open("t.txt", "w") as f:
        f.write("text ✓\n")
    with fs.open("t.txt") as f:
        assert f.read() == "text ✓\n"


def test_sync_namespace_operations(fs: SyncTree) -> None:
    fs.makedirs("a/b")
    fs.write_bytes("a/b/f", b"1")
    fs.symlink("f", "a/b/l")
    fs.link("a/b/f", "a/h")
    assert sorted(fs.listdir("a/b")) == ["f", "l"]
    assert {e.name for e in fs.scandir("a")} == {"b", "h"}
    assert fs.readlink("a/b/l") == "f"
    assert fs.stat("a/h").st_nlink == 2
    fs.rename("a/h", "a/g")
    fs.chmod("a/g", 0o600)
    assert fs.stat("a/g").st_mode & 0o777 == 0o600
    fs.truncate("a/g", 0)
    fs.utime("a/g", ns=(10, 20))
    assert fs.stat("a/g").st_mtime_ns == 20
    fs.setxattr("a/g", "user.k", b"v")
    assert fs.getxattr("a/g", "user.k") == b"v"
    assert fs.listxattr("a/g") == ["user.k"]
    fs.removexattr("a/g", "user.k")
    assert fs.statfs().f_bsize > 0
    assert fs.exists("a/g")
    fs.remove("a/g")
    with pytest.raises(FileNotFoundError) as info:
        fs.stat("a/g")
    assert info.value.filename == "a/g"
    fs.rmtree("a")
    assert fs.listdir() == []


def test_sync_locks(fs: SyncTree) -> None:
    fs.write_bytes("f", b"")
    with fs.open("f", "r+b") as a, fs.open("f", "r+b") as b:
        fs.lock(a, LOCK_WRLCK, proc_id=1)
        with pytest.raises(BlockingIOError):
            b.lock(LOCK_WRLCK, proc_id=2)
        assert fs.getlock(b, LOCK_WRLCK, proc_id=2).type == LOCK_WRLCK
        a.lock(LOCK_UNLCK, proc_id=1)
        b.lock(LOCK_WRLCK, proc_id=2)


def test_sync_from_many_threads(fs: SyncTree) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            fs.write_bytes(f"w{n}", bytes([n]) * 1000)
            assert fs.read_bytes(f"w{n}") == bytes([n]) * 1000
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(fs.listdir()) == 16


def test_sync_second_attach_and_close(target: Target) -> None:
    client = SyncClient(target.url, aname=target.aname, uname=target.uname,
                        n_uname=target.n_uname, msize=target.msize)
    other = client.attach(target.uname, target.aname, target.n_uname)
    assert other.stat("").is_dir()
    other.close()
    client.close()
    client.close()  # idempotent


def test_sync_connect_refused() -> None:
    import socket
    # bound but not listening: refused, and no other socket of a parallel test (the
    # kernel suite's servers bind port 0 meanwhile) can take the port before the connect;
    # the threads of other tests' clients (daemons, closed or not) are not this one's
    before = {t for t in threading.enumerate() if t.name == "ninep-client"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            SyncClient(f"tcp://127.0.0.1:{port}")
    assert not [t for t in threading.enumerate() if t.name == "ninep-client"
                and t not in before]
