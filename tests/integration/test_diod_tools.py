"""Real clients nobody here wrote: Debian diod's diodls, diodcat and diodload against our server."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess

import pytest

from ninep.wire import messages as m
from tests.conftest import RawPeer, RunningServer

pytestmark = pytest.mark.skipif(shutil.which("diodcat") is None,
                                reason="Debian's diod is not installed (scripts/test installs it)")

O_WRONLY = 1


def run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=timeout, check=False)


def write_file(server: RunningServer, name: str, data: bytes, msize: int = 1 << 20) -> None:
    """Create ``name`` at the root through 9P (Tlcreate + Twrite), pipelining the chunks."""
    peer = RawPeer(("127.0.0.1", server.port), timeout=60)
    peer.handshake(msize=msize)
    peer.rpc(m.Twalk(1, 2, ()))
    assert isinstance(peer.rpc(m.Tlcreate(2, name, O_WRONLY, 0o644, 0)), m.Rlcreate)
    chunk = msize - m.IOHDRSZ
    offsets = range(0, len(data), chunk)
    window = 8
    for index, offset in enumerate(offsets):
        peer.send(index % window, m.Twrite(2, offset, data[offset:offset + chunk]))
        if index >= window - 1:
            _, reply = peer.recv()
            assert isinstance(reply, m.Rwrite), reply
    for _ in range(min(window - 1, len(offsets))):
        _, reply = peer.recv()
        assert isinstance(reply, m.Rwrite), reply
    assert peer.rpc(m.Tclunk(2)) == m.Rclunk()
    peer.close()


def test_diodls_lists_the_default_namespace(ninep_server: RunningServer) -> None:
    result = run("diodls", "-s", ninep_server.hostport, "-a", "", "-l", "/")
    assert result.returncode == 0, result.stderr.decode()
    listing = result.stdout.decode()
    assert re.search(r"^-rw-r--r--.*README$", listing, re.M), listing
    assert re.search(r"^d.* \.$", listing, re.M), listing


def test_diodls_of_the_ctl_namespace(ninep_server: RunningServer) -> None:
    result = run("diodls", "-s", ninep_server.hostport, "-a", "ctl", "/")
    assert result.returncode == 0, result.stderr.decode()
    assert {"null", "zero"} <= set(result.stdout.decode().split())


def test_diodcat_reads_the_readme(ninep_server: RunningServer) -> None:
    result = run("diodcat", "-s", ninep_server.hostport, "-a", "", "README")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.startswith(b"This is ninep")


@pytest.mark.parametrize("msize", [65536, 8192])
def test_diodcat_reads_64_mib_byte_exact(ninep_server: RunningServer, msize: int) -> None:
    data = os.urandom(64 << 20)
    write_file(ninep_server, "big", data)
    result = run("diodcat", "-m", str(msize), "-s", ninep_server.hostport, "-a", "", "big")
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout) == len(data)
    assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(data).digest()


def test_diodcat_of_a_missing_file_fails_cleanly(ninep_server: RunningServer) -> None:
    result = run("diodcat", "-s", ninep_server.hostport, "-a", "", "no-such-file")
    assert result.returncode != 0
    assert b"No such file" in result.stderr


@pytest.mark.parametrize("extra", [["-g"], []], ids=["getattr", "read-write"])
@pytest.mark.parametrize("threads", ["1", "16"])
def test_diodload_runs_without_errors(ninep_server: RunningServer, extra: list[str],
                                      threads: str) -> None:
    result = run("diodload", "-s", ninep_server.hostport, "-n", threads, "-r", "2", *extra)
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    assert "error" not in output.lower(), output
    ops = re.search(r"(\d+) ops/s", output)
    assert ops is not None and int(ops.group(1)) > 0, output


def test_diodls_of_a_missing_path_fails(ninep_server: RunningServer) -> None:
    result = run("diodls", "-s", ninep_server.hostport, "-a", "ctl", "/no-such")
    assert result.returncode != 0
