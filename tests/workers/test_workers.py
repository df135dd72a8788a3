"""``ninep serve --workers 3``: one tree, one set of qids and one set of locks for every
connection, whichever worker serves it; a dead worker replaced; SIGHUP to every worker."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import struct
from pathlib import Path

import pytest

from ninep.clients import LOCK_RDLCK, LOCK_UNLCK, LOCK_WRLCK, Client
from tests.hostile.serverproc import ServerProcess, serve_process
from tests.workers.conftest import (
    WORKERS,
    alive,
    connect,
    spread,
    wait_ready,
    worker_pid,
    worker_pids,
)

_FLOCK = struct.Struct("@hhqqi4x")


def host_ofd_lock(fd: int, lock_type: int, start: int = 0, length: int = 0) -> bool:
    """F_OFD_SETLK from this (host) process; False when a lock conflicts."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(lock_type, os.SEEK_SET, start, length, 0))
    except BlockingIOError:
        return False
    return True


def host_ofd_probe(fd: int, lock_type: int) -> int:
    """F_OFD_GETLK over the whole file: the type of a conflicting lock, or F_UNLCK."""
    got = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _FLOCK.pack(lock_type, os.SEEK_SET, 0, 0, 0))
    return int(_FLOCK.unpack(got)[0])


async def test_connections_land_on_different_workers(workers_server: ServerProcess,
                                                      closing: list[Client]) -> None:
    assert len(worker_pids(workers_server)) == WORKERS
    by_worker = await spread(workers_server, want=2)
    closing += [client for client, _ in by_worker.values()]
    assert set(by_worker) <= worker_pids(workers_server)


async def test_one_tree_and_one_qid_everywhere(workers_server: ServerProcess, export: Path,
                                               closing: list[Client]) -> None:
    by_worker = await spread(workers_server, want=2)
    closing += [client for client, _ in by_worker.values()]
    (writer_pid, (_, writer)), (reader_pid, (_, reader)) = list(by_worker.items())[:2]
    assert writer_pid != reader_pid
    # written through one worker, read back through another at once
    await writer.write_bytes("dir/new", b"written by worker %d" % writer_pid)
    assert await reader.read_bytes("dir/new") == b"written by worker %d" % writer_pid
    assert (export / "dir" / "new").read_bytes() == b"written by worker %d" % writer_pid
    assert sorted(await reader.listdir("")) == sorted(await writer.listdir("")) == \
        ["dir", "hello"]
    for path in ("", "hello", "dir", "dir/new"):
        assert (await writer.stat(path)).st_ino == (await reader.stat(path)).st_ino, path


async def test_locks_conflict_across_workers(workers_server: ServerProcess,
                                             closing: list[Client]) -> None:
    by_worker = await spread(workers_server, want=2)
    closing += [client for client, _ in by_worker.values()]
    (_, (_, one)), (_, (_, two)) = list(by_worker.items())[:2]
    await one.write_bytes("shared", b"x" * 100)
    a = await one.open("shared", "r+b")
    b = await two.open("shared", "r+b")
    await a.lock(LOCK_WRLCK, 0, 10, proc_id=1)
    with pytest.raises(BlockingIOError):
        await b.lock(LOCK_WRLCK, 5, 10, proc_id=2)
    assert (await b.getlock(LOCK_RDLCK, 0, 0, proc_id=2)).type == LOCK_WRLCK
    # Linux's v9fs asks with type UNLCK (v9fs_file_getlock): "any lock here?"
    assert (await b.getlock(LOCK_UNLCK, 5, 10, proc_id=2)).type == LOCK_WRLCK
    await b.lock(LOCK_WRLCK, 10, 10, proc_id=2)  # bytes 10..19 are free
    # a blocking request waits for the other worker's unlock
    waiting = asyncio.ensure_future(b.lock(LOCK_WRLCK, 0, 10, block=True, proc_id=2))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await a.lock(LOCK_UNLCK, 0, 10, proc_id=1)
    await asyncio.wait_for(waiting, 30)
    with pytest.raises(BlockingIOError):
        await a.lock(LOCK_RDLCK, 0, 0, proc_id=1)
    await b.lock(LOCK_UNLCK, 0, 0, proc_id=2)  # its host description goes with its ranges
    await a.lock(LOCK_WRLCK, 0, 0, proc_id=1)
    await b.close()
    await a.close()


async def test_locks_conflict_with_a_host_process(workers_server: ServerProcess, export: Path,
                                                  closing: list[Client]) -> None:
    client, tree = await connect(workers_server)
    closing.append(client)
    (export / "data").write_bytes(b"y" * 50)
    fd = os.open(export / "data", os.O_RDWR)
    try:
        assert host_ofd_lock(fd, fcntl.F_WRLCK, 0, 20)
        f = await tree.open("data", "r+b")
        with pytest.raises(BlockingIOError):
            await f.lock(LOCK_RDLCK, 10, 5, proc_id=7)
        assert (await f.getlock(LOCK_WRLCK, 0, 0, proc_id=7)).type == LOCK_WRLCK
        await f.lock(LOCK_WRLCK, 20, 0, proc_id=7)  # past the host's range
        # and the client's lock is seen by the host
        assert host_ofd_probe(fd, fcntl.F_RDLCK) == fcntl.F_WRLCK
        assert not host_ofd_lock(fd, fcntl.F_RDLCK, 30, 1)
        waiting = asyncio.ensure_future(f.lock(LOCK_WRLCK, 0, 20, block=True, proc_id=7))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        assert host_ofd_lock(fd, fcntl.F_UNLCK, 0, 20)
        await asyncio.wait_for(waiting, 30)
        await f.lock(LOCK_UNLCK, 0, 0, proc_id=7)
        assert host_ofd_lock(fd, fcntl.F_WRLCK, 0, 0)
        await f.close()
    finally:
        os.close(fd)


async def test_a_flushed_lock_wait_takes_nothing_after(workers_server: ServerProcess,
                                                      export: Path,
                                                      closing: list[Client]) -> None:
    """A Tlock waiting on a host process's lock is cancelled by Tflush (the client's
    task cancelled), and the server does not take the lock once the host lets go."""
    client, tree = await connect(workers_server)
    closing.append(client)
    (export / "flushed").write_bytes(b"z" * 10)
    fd = os.open(export / "flushed", os.O_RDWR)
    other = os.open(export / "flushed", os.O_RDWR)
    try:
        assert host_ofd_lock(fd, fcntl.F_WRLCK)
        f = await tree.open("flushed", "r+b")
        waiting = asyncio.ensure_future(f.lock(LOCK_WRLCK, block=True, proc_id=9))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert host_ofd_lock(fd, fcntl.F_UNLCK)
        await asyncio.sleep(1.0)  # past the server's longest look-again interval
        assert host_ofd_lock(other, fcntl.F_WRLCK)  # nobody took it meanwhile
        assert await tree.read_bytes("hello") == b"hello from the host\n"
        await f.close()
    finally:
        os.close(fd)
        os.close(other)


async def test_a_killed_worker_is_replaced_while_the_others_serve(
        workers_server: ServerProcess, closing: list[Client]) -> None:
    by_worker = await spread(workers_server, want=2)
    closing += [client for client, _ in by_worker.values()]
    (victim, (victim_client, victim_tree)), (survivor, (_, survivor_tree)) = \
        list(by_worker.items())[:2]
    before = worker_pids(workers_server)
    os.kill(victim, signal.SIGKILL)
    for _ in range(200):
        if not alive(victim) and len(worker_pids(workers_server)) == WORKERS:
            break
        await asyncio.sleep(0.05)
    after = worker_pids(workers_server)
    assert victim not in after and len(after) == WORKERS and survivor in after
    assert len(after - before) == 1
    assert f"(pid {victim}) died: killed by signal 9 (SIGKILL)" in workers_server.log_text()
    with pytest.raises(OSError):  # its clients see their connection closed
        await victim_tree.read_bytes("hello")
    assert await survivor_tree.read_bytes("hello") == b"hello from the host\n"
    # the new worker serves too
    replacement = (after - before).pop()
    fresh = await spread(workers_server, want=WORKERS, tries=120)
    closing += [client for client, _ in fresh.values()]
    assert replacement in fresh
    assert await fresh[replacement][1].read_bytes("hello") == b"hello from the host\n"
    del victim_client


CONFIG = """
[server]
workers = {workers}

[namespaces.main]
mounts = [
  {{ path = "/", backend = "passthrough", source = "{export}" }},
  {{ path = "/version", backend = "inline", source = "{version}" }},
]

[[policy]]
name = "everyone"
namespace = "main"
"""


async def test_sighup_reaches_every_worker(tmp_path: Path, export: Path,
                                           closing: list[Client]) -> None:
    config = tmp_path / "ninep.toml"
    config.write_text(CONFIG.format(workers=WORKERS, export=export, version="one"))
    with serve_process(["--config", str(config)], tmp_path, log_level="debug") as server:
        wait_ready(server)
        by_worker = await spread(server, want=WORKERS, tries=120)
        clients = [client for client, _ in by_worker.values()]
        closing += clients
        for _, tree in by_worker.values():
            assert await tree.read_bytes("version") == b"one\n"
        config.write_text(CONFIG.format(workers=WORKERS, export=export, version="two"))
        os.kill(server.proc.pid, signal.SIGHUP)
        for _ in range(200):
            if server.log_text().count("ninep.server.listeners: reloaded") == WORKERS:
                break
            await asyncio.sleep(0.05)
        assert server.log_text().count("ninep.server.listeners: reloaded") == WORKERS
        for pid, (client, _) in by_worker.items():  # a new attach on each worker
            assert await worker_pid(server, client) == pid
            tree = await client.attach("root", "")
            assert await tree.read_bytes("version") == b"two\n", pid
        # an invalid file is rejected once, by the supervisor, and nothing changes
        config.write_text("[server]\nworkers = [\n")
        os.kill(server.proc.pid, signal.SIGHUP)
        for _ in range(200):
            if "reload rejected" in server.log_text():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        log = server.log_text()
        assert log.count("reload rejected") == 1
        assert log.count("ninep.server.listeners: reloaded") == WORKERS
        for client in clients:
            tree = await client.attach("root", "")
            assert await tree.read_bytes("version") == b"two\n"


async def test_sigterm_drains_every_worker(tmp_path: Path, export: Path) -> None:
    with serve_process(["--workers", str(WORKERS), "--mount", f"/=passthrough:{export}"],
                       tmp_path) as server:
        wait_ready(server)
        pids = worker_pids(server)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
    assert not any(alive(pid) for pid in pids)
    assert server.log_text().count("ninep: stopping") == WORKERS


def test_a_per_user_image_of_a_config_file_is_refused_with_workers(tmp_path: Path) -> None:
    import subprocess
    import sys
    config = tmp_path / "per-user.toml"
    config.write_text('[server]\nworkers = 2\n[namespaces.main]\nmounts = [\n'
                      '  { path = "/", backend = "ext2", source = "/srv/{uname}.img" },\n]\n'
                      '[[policy]]\nname = "all"\nnamespace = "main"\n')
    result = subprocess.run([sys.executable, "-m", "ninep", "serve", "--config", str(config),
                             "--listen", "tcp://127.0.0.1:0"], capture_output=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert b"one process per expansion of their placeholders" in result.stderr
    assert b"main: / (ext2)" in result.stderr


async def test_a_lock_of_a_closed_connection_is_released_on_the_host(
        workers_server: ServerProcess, export: Path) -> None:
    client, tree = await connect(workers_server)
    (export / "gone").write_bytes(b"z" * 10)
    f = await tree.open("gone", "r+b")
    await f.lock(LOCK_WRLCK, 0, 0, proc_id=3)
    fd = os.open(export / "gone", os.O_RDWR)
    try:
        assert host_ofd_probe(fd, fcntl.F_RDLCK) == fcntl.F_WRLCK
        await client.close()
        for _ in range(200):
            if host_ofd_probe(fd, fcntl.F_WRLCK) == fcntl.F_UNLCK:
                break
            await asyncio.sleep(0.05)
        assert host_ofd_probe(fd, fcntl.F_WRLCK) == fcntl.F_UNLCK
    finally:
        os.close(fd)
