"""A real ``ninep serve --workers 3`` and a way to tell which worker serves a connection.

How a test knows the worker: every worker's log lines carry ``worker N [PID]``
(ninep/cli.py), and at debug level the transport logs ``connection from
tcp:127.0.0.1:PORT`` when it accepts; the client's own local port names the line.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ninep.clients.client import Client
from ninep.clients.tree import Tree
from tests.hostile.serverproc import ServerProcess, serve_process

WORKERS = 3


def local_port(client: Client) -> int:
    protocol = client._protocol
    assert protocol is not None and protocol.transport is not None
    return int(protocol.transport.get_extra_info("sockname")[1])


async def worker_pid(server: ServerProcess, client: Client) -> int:
    """The pid of the worker that accepted ``client``'s connection, from its log line."""
    pattern = re.compile(r"worker \d+ \[(\d+)\] \S+: connection from tcp:127\.0\.0\.1:"
                         rf"{local_port(client)}$", re.M)
    for _ in range(200):
        found = pattern.search(server.log_text())
        if found:
            return int(found.group(1))
        await asyncio.sleep(0.05)
    raise AssertionError(f"no log line for port {local_port(client)}:\n{server.log_text()}")


def worker_pids(server: ServerProcess) -> set[int]:
    """The supervisor's children now."""
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(c) for c in children}


async def connect(server: ServerProcess, aname: str = "") -> tuple[Client, Tree]:
    client = await Client.connect(f"tcp://127.0.0.1:{server.port}")
    return client, await client.attach("root", aname)


async def spread(server: ServerProcess, want: int = 2,
                 tries: int = 60) -> dict[int, tuple[Client, Tree]]:
    """Connections until ``want`` workers hold one each: {worker pid: (client, tree)};
    the others are closed. The kernel picks the worker: a few tries are needed."""
    by_worker: dict[int, tuple[Client, Tree]] = {}
    extra = []
    for _ in range(tries):
        client, tree = await connect(server)
        pid = await worker_pid(server, client)
        if pid in by_worker:
            extra.append(client)
        else:
            by_worker[pid] = (client, tree)
        if len(by_worker) >= want:
            break
    for client in extra:
        await client.close()
    assert len(by_worker) >= want, f"{tries} connections landed on {len(by_worker)} workers"
    return by_worker


@pytest.fixture
def export(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    root.mkdir()
    (root / "hello").write_bytes(b"hello from the host\n")
    (root / "dir").mkdir()
    return root


def wait_ready(server: ServerProcess) -> None:
    """Until the supervisor says every worker accepts (it binds before it forks, so the
    port answers earlier)."""
    for _ in range(600):
        if "workers serving" in server.log_text():
            return
        assert server.alive(), server.log_text()
        time.sleep(0.05)
    raise AssertionError(server.log_text())


@pytest.fixture
def workers_server(tmp_path: Path, export: Path) -> Iterator[ServerProcess]:
    with serve_process(["--workers", str(WORKERS), "--mount", f"/=passthrough:{export}"],
                       tmp_path, log_level="debug") as server:
        wait_ready(server)
        yield server


@pytest.fixture
async def closing() -> AsyncIterator[list[Client]]:
    clients: list[Client] = []
    yield clients
    for client in clients:
        try:
            await client.close()
        except OSError:
            pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
