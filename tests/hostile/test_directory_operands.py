"""A directory operand that is not a directory (found by the network fuzzer): every
request that takes a directory fid answers ENOTDIR, as Linux does, on every backend
of a real ``ninep serve`` process; and an ext2 image stays sound (``e2fsck -fn``)
after renames into a symlink or a file, which once wrote directory entries there."""

from __future__ import annotations

import errno
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ninep.wire import messages as m
from tests.conftest import RawPeer
from tests.hostile.serverproc import ServerProcess, serve_process

ROOT = 1
O_RDWR = 0o2
S_IFIFO = 0o010000
AT_REMOVEDIR = 0x200
BACKENDS = ["ram", "pt", "ext2", "ovl"]


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(f"/usr/sbin/{name}")
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    tmp = tmp_path_factory.mktemp("dirops")
    image = tmp / "ext2.img"
    subprocess.run([_tool("mke2fs"), "-q", "-F", "-t", "ext2", "-b", "1024", str(image), "8M"],
                   check=True, capture_output=True)
    (tmp / "export").mkdir()
    mounts = ["/=ram", "/ram=ram", f"/pt=passthrough:{tmp / 'export'}", f"/ext2=ext2:{image}",
              "/ovl=overlay,lower=ram,upper=ram"]
    with serve_process([arg for mount in mounts for arg in ("--mount", mount)], tmp) as server:
        yield server, image
    log = server.log_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


@pytest.fixture
def peer(served: tuple[ServerProcess, Path]) -> Iterator[RawPeer]:
    raw = RawPeer(served[0].address)
    assert isinstance(raw.handshake(fid=ROOT), m.Rattach)
    try:
        yield raw
    finally:
        raw.close()


def _ok(reply: m.Message, kind: type[m.Message]) -> None:
    assert isinstance(reply, kind), reply


def _errno(reply: m.Message) -> str:
    assert isinstance(reply, m.Rlerror), f"expected an error, got {reply}"
    return errno.errorcode.get(reply.ecode, str(reply.ecode))


def _prepare(peer: RawPeer, mount: str, tag: str) -> dict[str, int]:
    """In ``mount``: a file f, an executable file x, a symlink l -> f and a directory d,
    each with a fid of its own (unopened)."""
    _ok(peer.rpc(m.Twalk(ROOT, 10, [mount])), m.Rwalk)
    for name, mode in ((f"f{tag}", 0o644), (f"x{tag}", 0o755)):
        _ok(peer.rpc(m.Twalk(10, 11, [])), m.Rwalk)
        _ok(peer.rpc(m.Tlcreate(11, name, O_RDWR, mode, 0)), m.Rlcreate)
        _ok(peer.rpc(m.Tclunk(11)), m.Rclunk)
    _ok(peer.rpc(m.Tsymlink(10, f"l{tag}", f"f{tag}", 0)), m.Rsymlink)
    _ok(peer.rpc(m.Tmkdir(10, f"d{tag}", 0o755, 0)), m.Rmkdir)
    fids = {}
    for number, name in enumerate(("f", "x", "l", "d"), start=20):
        _ok(peer.rpc(m.Twalk(10, number, [f"{name}{tag}"])), m.Rwalk)
        fids[name] = number
    return fids


@pytest.mark.parametrize("mount", BACKENDS)
def test_a_rename_into_a_file_or_symlink_is_enotdir(peer: RawPeer, mount: str) -> None:
    fids = _prepare(peer, mount, "r")
    for into in ("l", "x", "f"):
        # Trename of the file f into l, x, f itself: Linux's rename("f", "l/moved")
        assert _errno(peer.rpc(m.Trename(fids["f"], fids[into], "moved"))) == "ENOTDIR", into
        assert _errno(peer.rpc(m.Trenameat(10, "fr", fids[into], "moved"))) == "ENOTDIR", into
        assert _errno(peer.rpc(m.Trenameat(fids[into], "moved", 10, "other"))) == "ENOTDIR"
    _ok(peer.rpc(m.Trename(fids["f"], fids["d"], "moved")), m.Rrename)  # a directory still works


@pytest.mark.parametrize("mount", BACKENDS)
def test_every_request_on_a_directory_fid_checks_it(peer: RawPeer, mount: str) -> None:
    fids = _prepare(peer, mount, "o")
    for kind in ("f", "x", "l"):
        fid = fids[kind]
        requests: list[m.Message] = [
            m.Tmkdir(fid, "new", 0o755, 0), m.Tsymlink(fid, "new", "target", 0),
            m.Tmknod(fid, "new", S_IFIFO | 0o644, 0, 0, 0), m.Tlink(fid, fids["d"], "new"),
            m.Tunlinkat(fid, "new", 0), m.Tunlinkat(fid, "new", AT_REMOVEDIR),
            m.Twalk(fid, 30, ["new"]), m.Twalk(fid, 30, [".."]), m.Tlcreate(fid, "new", O_RDWR,
                                                                            0o644, 0)]
        for request in requests:
            assert _errno(peer.rpc(request)) == "ENOTDIR", (kind, request)


def test_the_fuzzers_reproduction_leaves_a_sound_image(tmp_path: Path) -> None:
    """The fuzzer's case, alone on a fresh image: Trename of a file into a symlink to
    it, then 300 renames into a symlink with a 1,000-byte target (its Treadlink
    once grew past what a reply can carry), then a clean stop and e2fsck -fn."""
    image = tmp_path / "ext2.img"
    subprocess.run([_tool("mke2fs"), "-q", "-F", "-t", "ext2", "-b", "1024", str(image), "8M"],
                   check=True, capture_output=True)
    with serve_process(["--mount", f"/=ext2:{image}"], tmp_path) as server:
        peer = RawPeer(server.address)
        peer.handshake()
        _ok(peer.rpc(m.Twalk(1, 2, [])), m.Rwalk)
        _ok(peer.rpc(m.Tlcreate(2, "f", O_RDWR, 0o644, 0)), m.Rlcreate)
        _ok(peer.rpc(m.Twalk(1, 3, [])), m.Rwalk)
        _ok(peer.rpc(m.Tsymlink(3, "l", "f", 0)), m.Rsymlink)
        _ok(peer.rpc(m.Tsymlink(3, "long", "t" * 1000, 0)), m.Rsymlink)
        _ok(peer.rpc(m.Twalk(1, 4, ["f"])), m.Rwalk)
        _ok(peer.rpc(m.Twalk(1, 5, ["l"])), m.Rwalk)
        _ok(peer.rpc(m.Twalk(1, 6, ["long"])), m.Rwalk)
        assert _errno(peer.rpc(m.Trename(4, 5, "moved"))) == "ENOTDIR"
        for index in range(300):
            _ok(peer.rpc(m.Tlcreate(3, f"n{index}", O_RDWR, 0o644, 0)), m.Rlcreate)
            _ok(peer.rpc(m.Tclunk(3)), m.Rclunk)
            _ok(peer.rpc(m.Twalk(1, 3, [])), m.Rwalk)
            assert _errno(peer.rpc(m.Trenameat(3, f"n{index}", 6, "x" * 200))) == "ENOTDIR"
        reply = peer.rpc(m.Treadlink(6))
        assert isinstance(reply, m.Rreadlink) and reply.target == "t" * 1000
        peer.close()
    result = subprocess.run([_tool("e2fsck"), "-fn", str(image)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    log = server.log_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
