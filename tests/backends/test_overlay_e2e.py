"""The overlay end to end: a real server, our client library over TCP, and ``ninep serve``."""

from __future__ import annotations

import asyncio
import errno
import hashlib
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

from ninep.backends.overlay import OverlayBackend
from ninep.backends.overlay import open_backend as open_overlay
from ninep.backends.ram import RamBackend
from ninep.backends.registry import KINDS, open_backend
from ninep.clients.sync import SyncClient
from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Node, OpenFlags, SetAttr
from ninep.vfs.policy import Policy, Rule
from tests.conftest import RunningServer, start_server

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


def lower_image(kind: str, scratch: Path) -> tuple[str, Path]:
    """A lower layer holding hello.txt: a GNU tar archive or a host directory."""
    try:
        KINDS[kind].load()
    except ImportError:
        pytest.skip(f"backends.{kind} is not available")
    seed = scratch / "lower"
    seed.mkdir()
    (seed / "hello.txt").write_bytes(b"hello\n")
    if kind == "passthrough":
        return f"passthrough:{seed}", seed
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("GNU tar is not installed")
    archive = scratch / "image.tar"
    subprocess.run([tar, "-cf", str(archive), "-C", str(seed), "."], check=True)
    return f"tar:{archive}", archive


def fingerprint(path: Path) -> object:
    if path.is_dir():
        return sorted((p.name, p.read_bytes()) for p in path.iterdir())
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", ["tar", "passthrough"])
def test_ninep_serve_mounts_an_overlay_from_the_command_line(kind: str) -> None:
    """``ninep serve --mount /x=overlay,lower=KIND:SOURCE``, used through our client."""
    scratch = Path(tempfile.mkdtemp(prefix="ninep-overlay-"))
    sock = scratch / "9p.sock"
    try:
        spec, image = lower_image(kind, scratch)
        before = fingerprint(image)
        server = subprocess.Popen(
            [sys.executable, "-m", "ninep", "serve", "--listen", f"unix://{sock}",
             "--mount", "/=ram", "--mount", f"/x=overlay,lower={spec},upper=ram"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while not sock.exists():
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
            with SyncClient(f"unix://{sock}", uname="root", n_uname=0) as fs:
                assert fs.read_bytes("x/hello.txt") == b"hello\n"
                fs.write_bytes("x/hello.txt", b"changed\n")
                assert fs.read_bytes("x/hello.txt") == b"changed\n"
                fs.write_bytes("x/new.txt", b"upper\n")
                assert sorted(fs.listdir("x")) == ["hello.txt", "new.txt"]
        finally:
            server.terminate()
            server.wait(10)
            if server.stderr:
                server.stderr.close()
        assert fingerprint(image) == before
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def make_image(kind: str, seed: Path, image: Path) -> str:
    """``seed`` as GNU tar's archive or as an ext2 image made by mke2fs -d."""
    try:
        KINDS[kind].load()
    except ImportError:
        pytest.skip(f"backends.{kind} is not available")
    tool = shutil.which("tar" if kind == "tar" else "mke2fs") or shutil.which("/usr/sbin/mke2fs")
    if tool is None:
        pytest.skip(f"the tool for {kind} images is not installed")
    if kind == "tar":
        command = [tool, "--format=gnu", "-cf", str(image), "-C", str(seed), "."]
    else:
        command = [tool, "-q", "-F", "-t", "ext2", "-d", str(seed), str(image), "8M"]
    subprocess.run(command, check=True, capture_output=True)
    return f"{kind}:{image}"


@pytest.mark.parametrize("kind", ["tar", "ext2"])
@pytest.mark.asyncio
async def test_overlay_over_an_image(kind: str, tmp_path: Path) -> None:
    """The lower layer a real image (GNU tar's archive, mke2fs's ext2), whose bytes never
    change."""
    seed = tmp_path / "seed"
    (seed / "etc").mkdir(parents=True)
    (seed / "etc" / "motd").write_bytes(b"welcome\n")
    (seed / "etc" / "issue").write_bytes(b"Debian\n")
    (seed / "bin").mkdir()
    (seed / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (seed / "bin" / "tool").chmod(0o755)
    os.link(seed / "bin" / "tool", seed / "bin" / "tool-again")
    (seed / "link").symlink_to("etc/motd")
    archive = tmp_path / "image"
    spec = make_image(kind, seed, archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    fs, other = await asyncio.gather(  # two clients' overlays: the archive is read once
        open_backend("overlay", options={"lower": spec}),
        open_backend("overlay", options={"lower": spec}))
    assert isinstance(fs, OverlayBackend) and isinstance(other, OverlayBackend)
    assert fs.lower is other.lower
    root = fs.root
    motd = await (await root.walk("etc")).walk("motd")
    ino = (await motd.getattr()).ino
    handle = await motd.open(OpenFlags(2))
    await handle.write(0, b"W")
    await handle.close()
    assert (await motd.getattr()).ino == ino
    etc = await root.walk("etc")
    await etc.unlink("issue", False)
    assert [e.name for e in await etc.readdir(0, 100)] == ["motd"]
    await etc.unlink("motd", False)
    await root.unlink("etc", True)  # a merged directory, empty as the client sees it
    new_etc = await root.mkdir("etc", 0o755, 0, 0)
    assert await new_etc.readdir(0, 100) == []  # opaque over the archive's etc
    bin_dir = await root.walk("bin")
    tool = await bin_dir.walk("tool")
    await tool.setattr(SetAttr(mode=0o700))  # a lower hard link is copied up alone
    again = await (await bin_dir.walk("tool-again")).getattr()
    assert stat.S_IMODE(again.mode) == 0o755
    await root.rename("link", root, "link2")
    assert await (await root.walk("link2")).readlink() == "etc/motd"
    assert await top_names(root) == ["bin", "etc", "link2"]
    await fs.close()
    assert await top_names(other.root) == ["bin", "etc", "link"]  # none of the first's changes
    assert await (await (await other.root.walk("etc")).walk("issue")).getattr()
    await other.close()
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == digest


async def top_names(directory: Node) -> list[str]:
    return sorted(e.name for e in await directory.readdir(0, 100) if e.name != "lost+found")
