"""The overlay end to end: a real server, our client library over TCP, and ``ninep serve``."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_overlay import seed_lower, snapshot

from backends.overlay import open_backend as open_overlay
from backends.ram import RamBackend
from clients.sync import SyncClient
from tests.conftest import RunningServer, start_server
from vfs.namespace import Namespace
from vfs.policy import Policy, Rule

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served() -> Iterator[tuple[RunningServer, RamBackend, dict[str, tuple[object, ...]]]]:
    """A server whose whole namespace is an overlay over a seeded RAM lower."""
    lowers: list[RamBackend] = []

    async def policy() -> Policy:
        lower = await seed_lower()
        lowers.append(lower)
        overlay = await open_overlay("", {"upper": "ram"}, False, shared_lower=lower)
        return Policy([Rule(await Namespace.build([("/", overlay, False)]), None)])

    running = start_server(policy)
    try:
        yield running, lowers[0], running.call(snapshot(lowers[0].root))
    finally:
        running.stop()
        shutil.rmtree(os.path.dirname(running.unix_path), ignore_errors=True)


def test_overlay_through_a_real_server(
        served: tuple[RunningServer, RamBackend, dict[str, tuple[object, ...]]]) -> None:
    running, lower, before = served
    with SyncClient(running.tcp_url, uname="root", n_uname=0) as fs:
        assert fs.read_bytes("etc/hosts") == b"127.0.0.1 localhost\n"
        ino = fs.stat("etc/hosts").st_ino
        with fs.open("etc/hosts", "r+b") as f:  # copy-up on write, same qid.path
            f.pwrite(0, b"127.0.0.2")
        assert fs.read_bytes("etc/hosts") == b"127.0.0.2 localhost\n"
        assert fs.stat("etc/hosts").st_ino == ino
        fs.chmod("top.txt", 0o600)
        assert stat.S_IMODE(fs.stat("top.txt").st_mode) == 0o600
        fs.rename("top.txt", "docs/top-moved.txt")
        assert not fs.exists("top.txt") and fs.read_bytes("docs/top-moved.txt") == b"top\n"
        fs.remove("etc/passwd")  # whiteout, then the same name again
        assert not fs.exists("etc/passwd")
        fs.write_bytes("etc/passwd", b"new\n")
        assert sorted(fs.listdir("etc")) == ["hosts", "passwd"]
        with pytest.raises(OSError) as exc:
            fs.rmdir("docs")
        assert exc.value.errno == errno.ENOTEMPTY
        with pytest.raises(OSError) as exc:
            fs.rename("docs", "papers")  # a lower directory: EXDEV, as overlayfs says
        assert exc.value.errno == errno.EXDEV
        fs.rmtree("docs")  # rmdir of a merged directory, emptied as the client sees it
        assert "docs" not in fs.listdir("")
        fs.mkdir("docs")  # opaque: the lower contents stay hidden
        assert fs.listdir("docs") == []
        listing = fs.listdir("many")
        assert len(listing) == len(set(listing)) == 40
        assert ".overlay-work" not in fs.listdir("")
    assert running.call(snapshot(lower.root)) == before, "the lower layer was modified"


def test_ninep_serve_mounts_an_overlay_from_the_command_line() -> None:
    """``--mount /x=overlay,lower=...``: a host directory below when passthrough exists."""
    scratch = Path(tempfile.mkdtemp(prefix="ninep-overlay-"))
    sock = scratch / "9p.sock"
    lower_spec = "ram"
    try:
        import backends.passthrough  # noqa: F401
    except ImportError:
        seeded = False
    else:
        (scratch / "lower").mkdir()
        (scratch / "lower" / "hello.txt").write_bytes(b"hello\n")
        lower_spec, seeded = f"passthrough:{scratch / 'lower'}", True
    server = subprocess.Popen(
        [sys.executable, "-m", "ninep", "serve", "--listen", f"unix://{sock}",
         "--mount", "/=ram", "--mount", f"/x=overlay,lower={lower_spec},upper=ram"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        with SyncClient(f"unix://{sock}", uname="root", n_uname=0) as fs:
            if seeded:
                assert fs.read_bytes("x/hello.txt") == b"hello\n"
                fs.write_bytes("x/hello.txt", b"changed\n")
                assert fs.read_bytes("x/hello.txt") == b"changed\n"
            fs.write_bytes("x/new.txt", b"upper\n")
            assert fs.read_bytes("x/new.txt") == b"upper\n"
            assert "new.txt" in fs.listdir("x")
        if seeded:
            assert (scratch / "lower" / "hello.txt").read_bytes() == b"hello\n"
            assert sorted(os.listdir(scratch / "lower")) == ["hello.txt"]
    finally:
        server.terminate()
        server.wait(10)
        if server.stderr:
            server.stderr.close()
        shutil.rmtree(scratch, ignore_errors=True)
