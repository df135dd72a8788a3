"""Memory a connection can take in the transport, measured on a real ``ninep serve``.

Each bound is a size from docs/architecture.md "Flow control" (the write
buffer's high-water mark plus what requests in progress hold, per connection)
with slack for the interpreter; the figures they replace are in bench/README.md.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ninep.wire import messages as m
from tests.conftest import RawPeer, free_port, wait_for_port
from tests.hostile.serverproc import ServerProcess, serve_process
from tests.integration.policy_helpers import Pki, make_pki, tls_peer

MIB = 1 << 20
O_RDWR = 2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with serve_process([], tmp_path) as running:
        yield running


def _peers(server: ServerProcess, count: int, timeout: float = 30.0) -> list[RawPeer]:
    return [RawPeer(server.address, timeout=timeout) for _ in range(count)]


def _big_file(peer: RawPeer, msize: int, name: str) -> bytes:
    """A RAM file of one msize of data, created and left open on fid 2."""
    data = bytes(range(256)) * (msize // 256)
    assert isinstance(peer.rpc(m.Twalk(1, 2, ())), m.Rwalk)
    assert isinstance(peer.rpc(m.Tlcreate(2, name, O_RDWR, 0o644, 0)), m.Rlcreate)
    step = msize - 23  # Twrite's header: size type tag fid offset count
    for offset in range(0, len(data), step):
        reply = peer.rpc(m.Twrite(2, offset, data[offset:offset + step]))
        assert isinstance(reply, m.Rwrite)
    return data


def _still_answered(server: ServerProcess) -> None:
    """Another client gets through the whole handshake and a Tgetattr."""
    other = RawPeer(server.address, timeout=60)
    try:
        assert isinstance(other.handshake(msize=8192), m.Rattach)
        assert isinstance(other.rpc(m.Tgetattr(1, 0x7FF)), m.Rgetattr)
    finally:
        other.close()


@pytest.mark.parametrize(("connections", "msize", "burst"), [(1, MIB, 400), (3, 256 << 10, 800)],
                         ids=["one-at-1MiB", "three-at-256KiB"])
def test_a_burst_of_reads_never_read_back_takes_bounded_memory(
        server: ServerProcess, connections: int, msize: int, burst: int) -> None:
    # Before the fix each reply of a chunk was written inline whatever the write
    # buffer held: 400 x 1 MiB grew the server by ~400 MiB (10,000 by 2.9 GB).
    _burst(server, _peers(server, connections), msize, burst, lambda: _still_answered(server))


def _burst(server: ServerProcess, peers: list[RawPeer], msize: int, burst: int,
           meanwhile: Callable[[], None]) -> None:
    """Each peer sends ``burst`` Treads of a whole msize at once and reads nothing
    until ``meanwhile`` has run; then every reply must come, and the server's peak
    growth stay under the bound."""
    expected = b""
    for i, peer in enumerate(peers):
        peer.handshake(msize=msize)
        expected = _big_file(peer, msize, f"big{i}")
        peer.rpc(m.Tread(2, 0, msize - 11))  # buffers and code paths warmed up
    count = msize - 11  # a full Rread
    expected = expected[:count]
    before = server.rss_kib()
    frames = b"".join(m.encode(tag, m.Tread(2, 0, count)) for tag in range(burst))
    for peer in peers:
        peer.send_raw(frames)  # and read nothing back for now
    meanwhile()
    peak_growth = server.status("VmHWM") - before
    for peer in peers:  # every reply comes, whole and in any order, once read
        tags = set()
        for _ in range(burst):
            tag, reply = peer.recv()
            assert isinstance(reply, m.Rread) and reply.data == expected, tag
            tags.add(tag)
        assert tags == set(range(burst))
    peak_growth = max(peak_growth, server.status("VmHWM") - before)
    # per connection: 4 x msize of write buffer + one reply over it; 64 MiB is slack
    assert peak_growth < 64 * 1024, f"the server grew by {peak_growth} KiB"
    assert "Traceback" not in server.log_text()


def test_a_burst_of_cold_passthrough_reads_takes_bounded_memory(tmp_path: Path) -> None:
    # A read the page cache cannot answer waits for a thread, holding its reply's
    # buffer: such requests counted only against max_inflight (256 x 1 MiB). Here
    # every Tread asks for another MiB of a file just dropped from the page cache.
    export = tmp_path / "export"
    export.mkdir()
    mibs = 128
    with (export / "cold").open("wb") as f:
        for i in range(mibs):
            f.write(struct.pack("<Q", i) * (MIB // 8))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    with serve_process(["--mount", f"/=passthrough:{export}"], tmp_path) as server:
        peer = RawPeer(server.address, timeout=60)
        peer.handshake(msize=MIB)
        assert isinstance(peer.rpc(m.Twalk(1, 2, ("cold",))), m.Rwalk)
        assert isinstance(peer.rpc(m.Tlopen(2, os.O_RDONLY)), m.Rlopen)
        before = server.rss_kib()
        order = [(i * 37) % mibs for i in range(mibs)]  # no sequential readahead
        count = MIB - 11
        peer.send_raw(b"".join(m.encode(i, m.Tread(2, i * MIB, count)) for i in order))
        _still_answered(server)
        for _ in range(mibs):
            tag, reply = peer.recv()
            expected = (struct.pack("<Q", tag) * (MIB // 8))[:count]
            assert isinstance(reply, m.Rread) and reply.data == expected, tag
        growth = server.status("VmHWM") - before
        # 4 MiB of write buffer + 16 MiB of waiting reads, one reply over each
        assert growth < 48 * 1024, f"the server grew by {growth} KiB"


def test_a_flush_gets_through_while_waiting_requests_hold_their_budget(
        tmp_path: Path) -> None:
    # Reads of an empty FIFO wait (cancellably) for a writer, each holding its
    # 1 MiB buffer: 17 of them fill the budget of waiting requests, so a Tgetattr
    # behind them waits too; a Tflush of one of the reads must not.
    export = tmp_path / "export"
    export.mkdir()
    os.mkfifo(export / "fifo")
    with serve_process(["--mount", f"/=passthrough:{export}"], tmp_path) as server:
        peer = RawPeer(server.address, timeout=30)
        peer.handshake(msize=MIB)
        assert isinstance(peer.rpc(m.Twalk(1, 2, ("fifo",))), m.Rwalk)
        assert isinstance(peer.rpc(m.Tlopen(2, os.O_RDWR)), m.Rlopen)  # no wait for a peer
        peer.send_raw(b"".join(m.encode(tag, m.Tread(2, 0, MIB - 11)) for tag in range(17)))
        peer.send(100, m.Tgetattr(1, 0x7FF))  # held back behind 17 MiB of waiting reads
        peer.send(101, m.Tflush(3))
        assert peer.recv() == (101, m.Rflush())  # and no Rread for tag 3
        assert peer.recv()[0] == 100  # the flushed read freed room for the getattr
        with (export / "fifo").open("wb") as writer:  # the other reads end with data
            writer.write(b"x" * 16)
            writer.flush()
            tag, reply = peer.recv()
            assert isinstance(reply, m.Rread) and reply.data == b"x" * 16 and tag != 3


def test_a_burst_over_tls_takes_bounded_memory(tmp_path: Path) -> None:
    # TLS buffers on its own (the SSL protocol's backlog): the same bound holds
    with _tls_server(tmp_path) as (server, pki):
        def still_answered() -> None:
            other = tls_peer(server.port, pki, None)
            assert isinstance(other.handshake(msize=8192), m.Rattach)
            other.close()
        _burst(server, [tls_peer(server.port, pki, None)], MIB, 400, still_answered)


class _Pipes:
    """The two pipes of ``ninep serve --stdio``, as the socket RawPeer expects."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.write_fd, self.read_fd = proc.stdin.fileno(), proc.stdout.fileno()

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.write_fd, view):]

    def recv(self, size: int) -> bytes:
        return os.read(self.read_fd, size)


def test_a_burst_over_stdio_pipes_takes_bounded_memory(tmp_path: Path) -> None:
    log = (tmp_path / "stdio.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--stdio"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    try:
        peer = RawPeer.__new__(RawPeer)  # a RawPeer over the pipes
        peer.sock, peer.buf = _Pipes(proc), b""  # type: ignore[assignment]
        _burst(ServerProcess(proc, 0, tmp_path / "stdio.log"), [peer], MIB, 400, lambda: None)
    finally:
        proc.kill()
        proc.wait()
        log.close()


def test_large_headers_before_tversion_are_refused_at_the_size_field(
        server: ServerProcess) -> None:
    # Before Tversion only a frame a Tversion can be is accepted; a size field of
    # 1 MiB used to be buffered in full (500 connections pinned 556 MB).
    before = server.rss_kib()
    peers = _peers(server, 100, timeout=10)
    header = struct.pack("<IBH", MIB, m.Tversion.type, m.NOTAG)
    body = bytes(MIB - len(header) - 1)  # stops one byte short of a whole frame
    for peer in peers:
        try:
            peer.send_raw(header + body)
        except OSError:  # refused as soon as the size field was read
            pass
    _still_answered(server)
    growth = server.rss_kib() - before
    assert growth < 16 * 1024, f"the server grew by {growth} KiB"
    assert all(peer.closed_by_server() for peer in peers)
    for peer in peers:
        peer.close()
    assert "before Tversion" in server.log_text()


def test_a_tversion_of_normal_size_is_still_accepted(server: ServerProcess) -> None:
    peer = RawPeer(server.address)
    version = "9P2000.x" + "x" * 200  # refused by name, not by size
    reply = peer.rpc(m.Tversion(8192, version), m.NOTAG)
    assert isinstance(reply, m.Rversion) and reply.version == "unknown"
    assert isinstance(peer.handshake(), m.Rattach)
    peer.close()


def _silent_and_chatty_are_closed(running: ServerProcess) -> None:
    mounted = RawPeer(running.address, timeout=10)
    assert isinstance(mounted.handshake(), m.Rattach)
    silent = RawPeer(running.address, timeout=20)
    chatty = RawPeer(running.address, timeout=20)  # talks, but never negotiates
    chatty.send(1, m.Tattach(1, m.NOFID, "root", "", 0))
    assert chatty.recv()[1] == m.Rlerror(errno.EPROTO)
    assert silent.closed_by_server()
    assert chatty.closed_by_server()
    # a negotiated connection idle for longer than the timeout is not touched
    assert isinstance(mounted.rpc(m.Tgetattr(1, 0x7FF)), m.Rgetattr)
    log = running.log_text()
    assert log.count("no Tversion within 1 s") == 2
    assert f"127.0.0.1:{silent.sock.getsockname()[1]}" in log
    for peer in (mounted, silent, chatty):
        peer.close()


def test_connections_that_never_negotiate_are_closed_after_the_timeout(
        tmp_path: Path) -> None:
    with serve_process(["--handshake-timeout", "1"], tmp_path) as running:
        _silent_and_chatty_are_closed(running)


def test_the_timeout_can_be_set_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "ninep.toml"
    config.write_text('[server]\nhandshake_timeout = 1\n\n'
                      '[namespaces.scratch]\nmounts = [{ path = "/", backend = "ram" }]\n\n'
                      '[[policy]]\nname = "anyone"\nnamespace = "scratch"\n')
    with serve_process(["--config", str(config)], tmp_path) as running:
        _silent_and_chatty_are_closed(running)


@contextmanager
def _tls_server(tmp_path: Path, server_table: str = "") -> Iterator[tuple[ServerProcess, Pki]]:
    """``ninep serve`` with one TLS listener (serve_process's --listen is plain TCP)."""
    pki = make_pki(tmp_path)
    port = free_port()
    config = tmp_path / "tls.toml"
    config.write_text(f'[server]\n{server_table}\n'
                      f'[[listen]]\nkind = "tls"\naddress = "127.0.0.1:{port}"\n'
                      f'cert = "{pki.server_cert}"\nkey = "{pki.server_key}"\n\n'
                      '[namespaces.scratch]\nmounts = [{ path = "/", backend = "ram" }]\n\n'
                      '[[policy]]\nname = "anyone"\nnamespace = "scratch"\n')
    log = tmp_path / "tls.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, 30)
        yield ServerProcess(proc, port, log), pki
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_tls_handshakes_and_then_tversion_share_the_configured_timeout(
        tmp_path: Path) -> None:
    with _tls_server(tmp_path, "handshake_timeout = 1\n") as (server, pki):
        silent = RawPeer(server.address, timeout=20)  # never starts its handshake
        assert silent.closed_by_server()
        secure = tls_peer(server.port, pki, None)  # handshakes, then says nothing
        secure.sock.settimeout(20)
        assert secure.closed_by_server()
        text = server.log_text()
        assert "TLS handshake failed: SSL handshake is taking longer than 1.0 seconds" in text
        assert "no Tversion within 1 s" in text


def test_the_default_timeout_leaves_a_slow_client_time(server: ServerProcess) -> None:
    peer = RawPeer(server.address, timeout=3)
    assert not peer.closed_by_server()  # 3 s of silence: well inside the default
    assert isinstance(peer.handshake(), m.Rattach)
    peer.sock.shutdown(socket.SHUT_RDWR)
    peer.close()


def test_a_timeout_out_of_range_is_refused_before_serving(tmp_path: Path) -> None:
    serve = [sys.executable, "-m", "ninep", "serve", "--listen", "tcp://127.0.0.1:1"]
    done = subprocess.run([*serve, "--handshake-timeout", "0"], capture_output=True, timeout=60)
    assert done.returncode == 2
    assert b"--handshake-timeout 0: must be more than 0 and at most 3600" in done.stderr
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nhandshake_timeout = 0\n\n'
                      '[namespaces.scratch]\nmounts = [{ path = "/", backend = "ram" }]\n\n'
                      '[[policy]]\nname = "anyone"\nnamespace = "scratch"\n')
    done = subprocess.run([*serve, "--config", str(config)], capture_output=True, timeout=60)
    assert done.returncode == 2
    assert b"[server]: handshake_timeout: 0 is out of range 1..3600" in done.stderr
