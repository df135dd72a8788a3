"""Hostile requests: numbers and strings a client sends that no host call, struct or
allocation may see unchecked. Each is sent by a raw peer to a real ``ninep serve``
process (a RAM disk at / and a passthrough export at /host) and must get the errno
Linux gives, with no traceback or ERROR in the server's log."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ninep.clients.wire import parse_dirents
from ninep.config.defaults import default_policy, default_ram, default_ram_limits
from ninep.wire import messages as m
from tests.conftest import RawPeer, start_server
from tests.hostile.serverproc import ServerProcess, serve_process

ROOT, DIR, NEW, XATTR = 1, 2, 3, 4
O_RDONLY, O_RDWR = 0, 2
S_IFCHR, S_IFIFO = 0o020000, 0o010000
SETATTR_SIZE, SETATTR_MTIME, SETATTR_MTIME_SET = 0x8, 0x20, 0x100
LOFF_MAX = 2**63 - 1
MOUNTS = {"ram": [], "passthrough": ["host"]}  # where each backend is, from the root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("requests")
    (tmp / "export").mkdir()
    with serve_process(["--mount", "/=ram", "--mount", f"/host=passthrough:{tmp / 'export'}"],
                       tmp) as running:
        yield running
        _assert_clean_log(running)


@pytest.fixture
def peer(server: ServerProcess) -> Iterator[RawPeer]:
    raw = RawPeer(server.address)
    assert isinstance(raw.handshake(fid=ROOT), m.Rattach)
    try:
        yield raw
    finally:
        raw.close()
    _assert_clean_log(server)


def _assert_clean_log(server: ServerProcess) -> None:
    log = server.log_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
    assert server.alive()


def _error(reply: m.Message) -> int:
    assert isinstance(reply, m.Rlerror), reply
    return reply.ecode


def _at(peer: RawPeer, fid: int, where: list[str], *names: str) -> None:
    """Walk ``fid`` to a mount's directory (and on through ``names``)."""
    assert isinstance(peer.rpc(m.Twalk(ROOT, fid, [*where, *names])), m.Rwalk)


def _file(peer: RawPeer, fid: int, where: list[str], name: str) -> None:
    """``fid``: a new file ``name`` in the mount, open for reading and writing."""
    _at(peer, fid, where)
    assert isinstance(peer.rpc(m.Tlcreate(fid, name, O_RDWR, 0o644, 0)), m.Rlcreate)


def _exists(peer: RawPeer, where: list[str], name: str) -> bool:
    reply = peer.rpc(m.Twalk(ROOT, 99, [*where, name]))
    if isinstance(reply, m.Rwalk) and len(reply.qids) == len(where) + 1:
        assert isinstance(peer.rpc(m.Tclunk(99)), m.Rclunk)
        return True
    return False


@pytest.mark.parametrize("kind", MOUNTS)
def test_walk_of_an_empty_name_is_enoent(peer: RawPeer, kind: str) -> None:
    where = MOUNTS[kind]
    _at(peer, DIR, where)
    assert _error(peer.rpc(m.Twalk(DIR, NEW, [""]))) == errno.ENOENT
    assert _error(peer.rpc(m.Twalk(DIR, NEW, ["", ""]))) == errno.ENOENT
    partial = peer.rpc(m.Twalk(ROOT, NEW, ["host", ""]))  # a partial walk: one qid
    assert isinstance(partial, m.Rwalk) and len(partial.qids) == 1
    assert _error(peer.rpc(m.Tclunk(NEW))) == errno.EBADF  # newfid stayed unbound


@pytest.mark.parametrize("kind", MOUNTS)
def test_mknod_of_a_device_number_no_dev_t_holds_is_einval(peer: RawPeer, kind: str) -> None:
    where = MOUNTS[kind]
    _at(peer, DIR, where)
    for major, minor in ((1 << 12, 0), (0, 1 << 20), (1 << 24, 0), (1 << 31, 1 << 31),
                         (2**32 - 1, 2**32 - 1)):
        reply = peer.rpc(m.Tmknod(DIR, f"dev{major}-{minor}", S_IFCHR | 0o600, major, minor, 0))
        assert _error(reply) == errno.EINVAL, (major, minor)
        assert not _exists(peer, where, f"dev{major}-{minor}")
    largest = peer.rpc(m.Tmknod(DIR, "fifo", S_IFIFO | 0o600, (1 << 12) - 1, (1 << 20) - 1, 0))
    assert isinstance(largest, m.Rmknod), largest


@pytest.mark.parametrize("kind", MOUNTS)
def test_mknod_mode_bits_beyond_a_umode_t(peer: RawPeer, kind: str) -> None:
    _at(peer, DIR, MOUNTS[kind])
    # mknod(2) takes a umode_t: the type 0o170000 is none Linux knows (may_mknod)
    assert _error(peer.rpc(m.Tmknod(DIR, "odd", 0xFFFFFFFF, 0, 0, 0))) == errno.EINVAL
    fifo = peer.rpc(m.Tmknod(DIR, "fifo-high-bits", 0xFFFF0000 | S_IFIFO | 0o644, 0, 0, 0))
    assert isinstance(fifo, m.Rmknod), fifo
    assert not _exists(peer, MOUNTS[kind], "odd")


@pytest.mark.parametrize("kind", MOUNTS)
def test_walk_of_a_name_longer_than_255_bytes(peer: RawPeer, kind: str) -> None:
    _at(peer, DIR, MOUNTS[kind])
    assert _error(peer.rpc(m.Twalk(DIR, NEW, ["n" * 256]))) == errno.ENAMETOOLONG
    assert _error(peer.rpc(m.Twalk(DIR, NEW, ["é" * 128]))) == errno.ENAMETOOLONG
    assert _error(peer.rpc(m.Twalk(DIR, NEW, ["n" * 255]))) == errno.ENOENT


@pytest.mark.parametrize("kind", MOUNTS)
def test_lock_ranges_past_the_largest_offset(peer: RawPeer, kind: str) -> None:
    _file(peer, NEW, MOUNTS[kind], "locks")
    wrlck = 1
    # flock64_to_posix_lock: a negative start is EINVAL, an end past OFFSET_MAX EOVERFLOW
    assert _error(peer.rpc(m.Tlock(NEW, wrlck, 0, 2**63, 1, 1, "c"))) == errno.EINVAL
    assert _error(peer.rpc(m.Tlock(NEW, wrlck, 0, 2**64 - 1, 0, 1, "c"))) == errno.EINVAL
    assert _error(peer.rpc(m.Tlock(NEW, wrlck, 0, 10, LOFF_MAX, 1, "c"))) == errno.EOVERFLOW
    assert _error(peer.rpc(m.Tgetlock(NEW, wrlck, 2**63, 0, 1, "c"))) == errno.EINVAL
    whole = peer.rpc(m.Tlock(NEW, wrlck, 0, 10, LOFF_MAX - 9, 1, "c"))  # ends at OFFSET_MAX
    assert isinstance(whole, m.Rlock) and whole.status == 0


@pytest.mark.parametrize("kind", MOUNTS)
def test_offsets_past_the_largest_loff_t(peer: RawPeer, kind: str) -> None:
    where = MOUNTS[kind]
    _file(peer, NEW, where, "offsets")
    for offset in (2**63, 2**64 - 1):
        assert _error(peer.rpc(m.Tread(NEW, offset, 10))) == errno.EINVAL
        assert _error(peer.rpc(m.Twrite(NEW, offset, b"x"))) == errno.EINVAL
    # an end past 2**63 - 1 is EINVAL too: Linux's rw_verify_area, before any filesystem
    assert _error(peer.rpc(m.Twrite(NEW, LOFF_MAX - 4, b"0123456789"))) == errno.EINVAL
    assert _error(peer.rpc(m.Tread(NEW, LOFF_MAX - 4, 10))) == errno.EINVAL
    # below it, the filesystem's own limit: tmpfs takes the largest file, ext4 is EFBIG
    last = peer.rpc(m.Twrite(NEW, LOFF_MAX - 1, b"x"))
    if kind == "ram":
        assert isinstance(last, m.Rwrite) and last.count == 1
    else:
        assert _error(last) == errno.EFBIG


@pytest.mark.parametrize("kind", MOUNTS)
def test_setattr_numbers_out_of_range(peer: RawPeer, kind: str) -> None:
    where = MOUNTS[kind]
    _file(peer, NEW, where, "setattr")

    def setattr(valid: int, size: int = 0, sec: int = 0, nsec: int = 0) -> m.Message:
        return peer.rpc(m.Tsetattr(NEW, valid, 0, 0, 0, size, 0, 0, sec, nsec))

    times = SETATTR_MTIME | SETATTR_MTIME_SET
    assert _error(setattr(SETATTR_SIZE, size=2**63)) == errno.EINVAL  # ftruncate(fd, < 0)
    assert _error(setattr(SETATTR_SIZE, size=2**64 - 1)) == errno.EINVAL
    assert _error(setattr(times, nsec=10**9)) == errno.EINVAL  # utimensat
    assert _error(setattr(times, nsec=2**64 - 1)) == errno.EINVAL
    for sec in (-1, -(2**63), LOFF_MAX):  # time64_t: before 1970, the least, the largest
        assert isinstance(setattr(times, sec=sec), m.Rsetattr), sec
    assert isinstance(setattr(times, sec=-1, nsec=5), m.Rsetattr)
    attr = peer.rpc(m.Tgetattr(NEW, 0x3FFF))
    assert isinstance(attr, m.Rgetattr) and (attr.mtime_sec, attr.mtime_nsec) == (-1, 5)


@pytest.mark.parametrize("kind", MOUNTS)
def test_nul_bytes_in_symlink_targets_and_xattr_names(peer: RawPeer, kind: str) -> None:
    where = MOUNTS[kind]
    _at(peer, DIR, where)
    assert _error(peer.rpc(m.Tsymlink(DIR, "nul", "a\0b", 0))) == errno.EINVAL
    assert not _exists(peer, where, "nul")
    assert _error(peer.rpc(m.Txattrwalk(DIR, XATTR, "user.a\0b"))) == errno.EINVAL
    _at(peer, NEW, where)
    assert _error(peer.rpc(m.Txattrcreate(NEW, "user.a\0b", 1, 0))) == errno.EINVAL
    assert _error(peer.rpc(m.Txattrcreate(NEW, "user." + "n" * 251, 1, 0))) == errno.ERANGE
    assert _error(peer.rpc(m.Txattrcreate(NEW, "user.a", 1, 4))) == errno.EINVAL  # flags


@pytest.mark.parametrize("kind", MOUNTS)
def test_an_xattr_value_short_of_its_size_sets_nothing(server: ServerProcess, peer: RawPeer,
                                                       kind: str) -> None:
    where = MOUNTS[kind]
    _file(peer, DIR, where, "xattr")
    _at(peer, NEW, where, "xattr")
    assert isinstance(peer.rpc(m.Txattrcreate(NEW, "user.short", 5, 0)), m.Rxattrcreate)
    assert isinstance(peer.rpc(m.Twrite(NEW, 0, b"abc")), m.Rwrite)
    # QEMU's v9fs_xattr_fid_clunk: copied_len != len is EINVAL, and nothing is set
    assert _error(peer.rpc(m.Tclunk(NEW))) == errno.EINVAL
    assert _error(peer.rpc(m.Txattrwalk(DIR, XATTR, "user.short"))) == errno.ENODATA
    # the same left pending at a disconnect, and at a Tversion reset: no traceback
    for reset in ("disconnect", "tversion"):
        other = RawPeer(server.address)
        try:
            assert isinstance(other.handshake(fid=ROOT), m.Rattach)
            _at(other, NEW, where, "xattr")
            assert isinstance(other.rpc(m.Txattrcreate(NEW, "user.none", 7, 0)), m.Rxattrcreate)
            if reset == "tversion":
                other.rpc(m.Tversion(65536, "9P2000.L"), tag=m.NOTAG)
                assert isinstance(other.handshake(fid=ROOT), m.Rattach)
        finally:
            other.close()
    assert _error(peer.rpc(m.Txattrwalk(DIR, XATTR, "user.none"))) == errno.ENODATA


def test_a_listing_of_the_default_ram_disk_ends(tmp_path: Path) -> None:
    """The probe of the issue: Treaddir count 400, two Tlcreate between batches."""
    start = 300
    with serve_process([], tmp_path) as server:
        peer = RawPeer(server.address)
        try:
            assert isinstance(peer.handshake(fid=ROOT), m.Rattach)
            assert isinstance(peer.rpc(m.Tmkdir(ROOT, "d", 0o755, 0)), m.Rmkdir)
            for i in range(start):
                _file(peer, NEW, ["d"], f"old{i:04d}")
                assert isinstance(peer.rpc(m.Tclunk(NEW)), m.Rclunk)
            _at(peer, DIR, ["d"])
            assert isinstance(peer.rpc(m.Tlopen(DIR, O_RDONLY)), m.Rlopen)
            seen: list[str] = []
            offset, made = 0, 0
            while entries := parse_dirents(_rreaddir(peer, offset)):
                seen += [e.name for e in entries if e.name not in (".", "..")]
                offset = entries[-1].offset
                for _ in range(2):
                    _file(peer, NEW, ["d"], f"new{made:05d}")
                    assert isinstance(peer.rpc(m.Tclunk(NEW)), m.Rclunk)
                    made += 1
                assert made < 2 * start, f"the listing did not end ({len(seen)} names)"
            assert len(seen) == len(set(seen)), "an entry was listed twice"
            assert {f"old{i:04d}" for i in range(start)} <= set(seen)
            # a Treaddir from offset 0 starts a new listing, with a new end: all are there
            again: list[str] = []
            offset = 0
            while entries := parse_dirents(_rreaddir(peer, offset)):
                again += [e.name for e in entries if e.name not in (".", "..")]
                offset = entries[-1].offset
            assert len(again) == start + made == len(set(again))
        finally:
            peer.close()
        _assert_clean_log(server)


def _rreaddir(peer: RawPeer, offset: int) -> bytes:
    reply = peer.rpc(m.Treaddir(DIR, offset, 400))
    assert isinstance(reply, m.Rreaddir), reply
    return reply.data


def test_the_default_ram_disk_holds_half_the_physical_memory(tmp_path: Path) -> None:
    pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    assert default_ram_limits() == (pages * page // 2, pages // 2)  # tmpfs's defaults
    with serve_process([], tmp_path) as server:
        peer = RawPeer(server.address)
        try:
            assert isinstance(peer.handshake(fid=ROOT), m.Rattach)
            fs = peer.rpc(m.Tstatfs(ROOT))
            assert isinstance(fs, m.Rstatfs)
            assert fs.blocks * fs.bsize == pages * page // 2 // fs.bsize * fs.bsize
            assert fs.files == pages // 2
        finally:
            peer.close()


def test_the_default_ram_disk_answers_enospc_at_its_limit(
        caplog: pytest.LogCaptureFixture) -> None:
    """The same RAM disk the default namespace makes, with a limit small enough to fill."""
    limit = 1 << 20
    running = start_server(lambda: default_policy(ram=default_ram(size_limit=limit,
                                                                  inode_limit=64)))
    peer = RawPeer(("127.0.0.1", running.port))
    try:
        assert isinstance(peer.handshake(fid=ROOT), m.Rattach)
        _file(peer, NEW, [], "big")
        written, reply = 0, None
        while written <= limit:
            reply = peer.rpc(m.Twrite(NEW, written, b"x" * 60000))
            if not isinstance(reply, m.Rwrite):
                break
            written += reply.count
        assert reply is not None and _error(reply) == errno.ENOSPC
        assert written < limit
        for i in range(70):  # the inodes run out too
            reply = peer.rpc(m.Tmkdir(ROOT, f"d{i}", 0o755, 0))
            if not isinstance(reply, m.Rmkdir):
                break
        assert _error(reply) == errno.ENOSPC
        assert isinstance(peer.rpc(m.Tread(NEW, 0, 10)), m.Rread)  # and it still serves
    finally:
        peer.close()
        running.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
