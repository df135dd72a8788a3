"""The embedded RAM default with --workers 3: worker 0 owns the disk, the others reach
it through the 9p backend, and every client sees one tree, one set of qids and locks."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ninep.clients import LOCK_UNLCK, LOCK_WRLCK, Client
from tests.hostile.serverproc import ServerProcess, serve_process
from tests.workers.conftest import WORKERS, spread, wait_ready


@pytest.fixture
def ram_server(tmp_path: Path) -> Iterator[ServerProcess]:
    with serve_process(["--workers", str(WORKERS)], tmp_path, log_level="debug") as server:
        wait_ready(server)
        yield server


async def test_every_worker_serves_the_one_ram_disk(ram_server: ServerProcess,
                                                     closing: list[Client]) -> None:
    by_worker = await spread(ram_server, want=WORKERS, tries=120)
    closing += [client for client, _ in by_worker.values()]
    trees = [tree for _, tree in by_worker.values()]
    for tree in trees:  # worker 0's README, as every worker shows it
        assert (await tree.read_bytes("README")).startswith(b"This is ninep")
    for index, writer in enumerate(trees):
        await writer.mkdir(f"d{index}")
        await writer.write_bytes(f"d{index}/f", b"from %d" % index)
        for reader in trees:  # at once, through every other worker
            assert await reader.read_bytes(f"d{index}/f") == b"from %d" % index
    for path in ("", "README", "d0", "d1/f", "d2/f"):
        inos = {(await tree.stat(path)).st_ino for tree in trees}
        assert len(inos) == 1, (path, inos)
    assert sorted(await trees[0].listdir("")) == sorted(await trees[2].listdir(""))


async def test_ram_locks_conflict_across_workers(ram_server: ServerProcess,
                                                 closing: list[Client]) -> None:
    by_worker = await spread(ram_server, want=WORKERS, tries=120)
    closing += [client for client, _ in by_worker.values()]
    trees = [tree for _, tree in by_worker.values()]
    await trees[0].write_bytes("locked", b"x" * 64)
    files = [await tree.open("locked", "r+b") for tree in trees]
    await files[0].lock(LOCK_WRLCK, 0, 0, proc_id=1)
    for other in files[1:]:
        with pytest.raises(BlockingIOError):
            await other.lock(LOCK_WRLCK, 0, 0, proc_id=2)
    await files[0].lock(LOCK_UNLCK, 0, 0, proc_id=1)
    await files[1].lock(LOCK_WRLCK, 0, 0, proc_id=2)
    for other in (files[0], files[2]):
        with pytest.raises(BlockingIOError):
            await other.lock(LOCK_WRLCK, 0, 0, proc_id=3)
    waiting = asyncio.ensure_future(files[2].lock(LOCK_WRLCK, 0, 0, block=True, proc_id=3))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await files[1].lock(LOCK_UNLCK, 0, 0, proc_id=2)
    await asyncio.wait_for(waiting, 30)
    for f in files:
        await f.close()


CONFIG = """
[server]
workers = {workers}

[namespaces.main]
mounts = [
  {{ path = "/", backend = "ram" }},
  {{ path = "/version", backend = "inline", source = "{version}" }},
]

[[policy]]
name = "everyone"
namespace = "main"
"""


async def test_a_config_files_ram_disk_is_one_tree_and_survives_a_reload(
        tmp_path: Path, closing: list[Client]) -> None:
    config = tmp_path / "ninep.toml"
    config.write_text(CONFIG.format(workers=WORKERS, version="one"))
    with serve_process(["--config", str(config)], tmp_path, log_level="debug") as server:
        wait_ready(server)
        by_worker = await spread(server, want=WORKERS, tries=120)
        closing += [client for client, _ in by_worker.values()]
        trees = [tree for _, tree in by_worker.values()]
        await trees[1].write_bytes("kept", b"written before the reload")
        for tree in trees:
            assert await tree.read_bytes("kept") == b"written before the reload"
        inos = {(await tree.stat("kept")).st_ino for tree in trees}
        assert len(inos) == 1
        config.write_text(CONFIG.format(workers=WORKERS, version="two"))
        os.kill(server.proc.pid, signal.SIGHUP)
        for _ in range(200):
            if server.log_text().count("ninep.server.listeners: reloaded") == WORKERS:
                break
            await asyncio.sleep(0.05)
        assert server.log_text().count("ninep.server.listeners: reloaded") == WORKERS
        for client, _ in by_worker.values():  # a new attach on each worker
            tree = await client.attach("root", "")
            assert await tree.read_bytes("version") == b"two\n"
            assert await tree.read_bytes("kept") == b"written before the reload"
            assert (await tree.stat("kept")).st_ino in inos
