"""Debian's diod tools against --workers 3: their connections spread over the workers
(the worker's pid on each "connection from" log line says where), and each gets the
same bytes and the same listing."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.serverproc import ServerProcess, serve_process
from tests.workers.conftest import WORKERS, wait_ready

pytestmark = pytest.mark.skipif(shutil.which("diodcat") is None,
                                reason="Debian's diod is not installed (scripts/test installs it)")

_CONNECTION = re.compile(r"worker \d+ \[(\d+)\] \S+: connection from tcp:", re.M)


def served_by(server: ServerProcess) -> list[int]:
    """The worker pid of every connection accepted so far, in order."""
    return [int(pid) for pid in _CONNECTION.findall(server.log_text())]


@pytest.fixture
def tools_server(tmp_path: Path, export: Path) -> Iterator[ServerProcess]:
    (export / "big").write_bytes(os.urandom(8 << 20))
    with serve_process(["--workers", str(WORKERS), "--mount", f"/=passthrough:{export}"],
                       tmp_path, log_level="debug") as server:
        wait_ready(server)
        yield server


def test_parallel_diodcats_spread_over_workers_and_read_exact_bytes(
        tools_server: ServerProcess, export: Path) -> None:
    want = hashlib.sha256((export / "big").read_bytes()).hexdigest()
    hostport = f"127.0.0.1:{tools_server.port}"
    for _ in range(5):  # the kernel picks the worker: a few rounds until two served
        procs = [subprocess.Popen(["diodcat", "-s", hostport, "-a", "", "big"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(8)]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
            assert hashlib.sha256(out).hexdigest() == want
        if len(set(served_by(tools_server))) >= 2:
            break
    assert len(set(served_by(tools_server))) >= 2, tools_server.log_text()


def test_diodls_sees_one_tree_through_every_worker(tools_server: ServerProcess) -> None:
    hostport = f"127.0.0.1:{tools_server.port}"
    listings: dict[int, str] = {}
    for _ in range(60):
        result = subprocess.run(["diodls", "-s", hostport, "-a", "", "-l", "/"],
                                capture_output=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr.decode()
        listings[served_by(tools_server)[-1]] = result.stdout.decode()
        if len(listings) == WORKERS:
            break
    assert len(listings) >= 2
    names = {tuple(sorted(line.split()[-1] for line in text.splitlines()))
             for text in listings.values()}
    assert len(names) == 1 and {"big", "dir", "hello"} <= set(next(iter(names)))


def test_diodload_on_the_ctl_files(tools_server: ServerProcess) -> None:
    result = subprocess.run(["diodload", "-s", f"127.0.0.1:{tools_server.port}", "-g",
                             "-n", "8", "-r", "1"], capture_output=True, timeout=60,
                            check=False, text=True)
    assert result.returncode == 0, result.stderr
    assert re.search(r"diodload: [1-9]\d* ops/s", result.stdout + result.stderr)
    assert len(set(served_by(tools_server))) >= 2


def test_diodcat_of_the_ram_default_through_every_worker(tmp_path: Path) -> None:
    with serve_process(["--workers", str(WORKERS)], tmp_path, log_level="debug") as server:
        wait_ready(server)
        seen = set()
        for _ in range(60):
            result = subprocess.run(["diodcat", "-s", f"127.0.0.1:{server.port}", "-a", "",
                                     "README"], capture_output=True, timeout=60, check=False)
            assert result.returncode == 0, result.stderr.decode()
            assert result.stdout.startswith(b"This is ninep")
            seen.add(served_by(server)[-1])
            if len(seen) == WORKERS:
                break
        assert len(seen) >= 2
