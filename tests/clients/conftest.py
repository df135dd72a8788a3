"""Fixtures for the client tests: a real 9P2000.L server (diod, or ninep) and a work dir.

The server is chosen by the ``target`` fixture, parametrized from the environment
variable NINEP_CLIENT_SERVERS (comma-separated, default "ninep,diod"; "ninep" uses the
project's own server from tests/conftest.py). Every test gets a fresh directory
on the server and a Tree rooted there (``tree``), so tests never see each other.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from ninep.clients import Client, Tree
from tests.clients.targets import DIOD_QUIRKS, Target

DIOD = shutil.which("diod") or "/usr/sbin/diod"
SERVERS = [s.strip() for s in os.environ.get("NINEP_CLIENT_SERVERS", "ninep,diod").split(",") if s]
DIOD_MSIZE = 65536  # diod caps msize at 64 KiB


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"diod exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"diod did not listen on port {port}")


@pytest.fixture(scope="session")
def diod_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """diod on a free 127.0.0.1 port exporting a temporary directory."""
    if not os.path.exists(DIOD):
        pytest.skip("diod is not installed (apt-get install diod)")
    export = tmp_path_factory.mktemp("diod-export")
    for parent in [export, *export.parents]:  # diod drops to the user: keep the path traversable
        if parent != parent.parent:
            os.chmod(parent, os.stat(parent).st_mode | 0o755)
    port = free_port()
    # diod's log goes to a file: a pipe nobody reads fills up and stalls it
    log = open(export.parent / "diod.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([DIOD, "-f", "-n", "-c", "/dev/null", "-d", "0", "-e", str(export),
                             "-l", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=log,
                            cwd=export.parent)  # a diod crash leaves its core there, not here
    try:
        wait_for_port(port, proc)
        yield Target("diod", f"tcp://127.0.0.1:{port}", str(export), msize=DIOD_MSIZE,
                     quirks=DIOD_QUIRKS)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def ninep_target(request: pytest.FixtureRequest) -> Target:
    """The project's own server (tests/conftest.py ``ninep_server``), RAM root."""
    running = request.getfixturevalue("ninep_server")
    return Target("ninep", running.tcp_url, "", n_uname=0)


@pytest.fixture(params=SERVERS)
def target(request: pytest.FixtureRequest) -> Target:
    """The server under test."""
    return request.getfixturevalue(f"{request.param}_target")  # type: ignore[no-any-return]


@pytest.fixture
def quirk(target: Target, request: pytest.FixtureRequest) -> object:
    """Call quirk(name) to xfail the test on servers known to get it wrong."""
    def mark(name: str) -> None:
        if name in target.quirks:
            request.applymarker(pytest.mark.xfail(reason=f"{target.name}: {name}", strict=True))
    return mark


@pytest_asyncio.fixture
async def client(target: Target) -> AsyncIterator[Client]:
    """A connected client."""
    async with await Client.connect(target.url, target.msize) as connected:
        yield connected


@pytest_asyncio.fixture
async def workdir(client: Client, target: Target) -> AsyncIterator[str]:
    """A fresh directory for this test, removed afterwards."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    root = await client.attach(target.uname, target.aname, target.n_uname)
    await root.mkdir(name, 0o755)
    yield name
    try:
        await root.rmtree(name)
    except OSError:
        pass
    await root.close()


@pytest_asyncio.fixture
async def tree(client: Client, target: Target, workdir: str) -> AsyncIterator[Tree]:
    """A Tree rooted at this test's fresh directory."""
    root = await client.attach(target.uname, target.aname, target.n_uname)
    sub = await root.subtree(workdir)
    await root.close()
    yield sub
    await sub.close()
