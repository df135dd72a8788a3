"""Host descriptors and threads one passthrough client can take, on a real ``ninep serve``
started under a low RLIMIT_NOFILE: a greedy client gets EMFILE (logged once), blocked
FIFO opens are bounded and cancellable, and everyone else goes on.

Bounds are counts (descriptors, threads, log lines), never times.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ninep.backends.passthrough.handle import FIFO_WAITS_PER_CONNECTION
from ninep.wire import messages as m
from tests.conftest import RawPeer, free_port, wait_for_port
from tests.hostile.serverproc import ServerProcess

NOFILE = 256
O_RDONLY = 0


@contextmanager
def limited_server(export: Path, tmp: Path, nofile: int = NOFILE,
                   soft: int | None = None) -> Iterator[ServerProcess]:
    """``ninep serve`` of ``export`` on passthrough, with RLIMIT_NOFILE soft/nofile."""
    port = free_port()
    log = tmp / "server.log"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft or nofile, nofile))

    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ninep", "serve", "--log-level", "info",
             "--listen", f"tcp://127.0.0.1:{port}", "--mount", f"/=passthrough:{export}"],
            stdout=out, stderr=subprocess.STDOUT, preexec_fn=limit)
    try:
        wait_for_port(port, proc, 30)
        yield ServerProcess(proc, port, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _open(peer: RawPeer, fid: int, newfid: int, name: str, tag: int = 1) -> m.Message:
    reply = peer.rpc(m.Twalk(fid, newfid, (name,)), tag=tag)
    if isinstance(reply, m.Rlerror):
        return reply
    return peer.rpc(m.Tlopen(newfid, O_RDONLY), tag=tag)


def test_a_greedy_client_gets_emfile_and_others_go_on(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    for i in range(400):  # more than the process may open at 256
        (export / f"f{i:04}").write_bytes(b"x")
    (export / "other").write_bytes(b"still served")
    with limited_server(export, tmp_path) as server:
        greedy = RawPeer(server.address)
        greedy.handshake()
        opened, refusal = 0, None
        for i in range(400):
            reply = _open(greedy, 1, 100 + i, f"f{i:04}")
            if isinstance(reply, m.Rlerror):
                refusal = reply.ecode
                break
            opened += 1
        assert refusal == errno.EMFILE, f"{opened} opens, then {refusal}"
        assert opened >= 16, "the share of one connection is too small to be useful"
        for i in range(5):  # more refusals: no more log lines
            reply = _open(greedy, 1, 600 + i, f"f{399 - i:04}")
            assert isinstance(reply, m.Rlerror) and reply.ecode == errno.EMFILE
        assert server.open_fds() < NOFILE - 32, "no room left for sockets"

        other = RawPeer(server.address)  # accepted, attached, served
        assert isinstance(other.handshake(), m.Rattach)
        assert isinstance(_open(other, 1, 2, "other"), m.Rlopen)
        reply = other.rpc(m.Tread(2, 0, 100))
        assert isinstance(reply, m.Rread) and bytes(reply.data) == b"still served"
        assert isinstance(greedy.rpc(m.Tclunk(100)), m.Rclunk)  # a clunk gives one back
        assert isinstance(_open(greedy, 1, 700, "f0399"), m.Rlopen)
        other.close()
        greedy.close()
        refusals = [line for line in server.log_text().splitlines() if "EMFILE" in line]
        assert len(refusals) == 1, refusals
        assert "Traceback" not in server.log_text()


def test_the_soft_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    with limited_server(tmp_path, tmp_path, nofile=512, soft=200) as server:
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text().splitlines()
        line = next(x for x in limits if x.startswith("Max open files"))
        assert line.split()[3:5] == ["512", "512"]


def _threads(server: ServerProcess) -> int:
    return server.status("Threads")


def _in_fifo_open(server: ServerProcess) -> int:
    """Threads of the server waiting in open(2) of a FIFO (wchan: wait_for_partner)."""
    count = 0
    for task in os.listdir(f"/proc/{server.proc.pid}/task"):
        try:
            wchan = Path(f"/proc/{server.proc.pid}/task/{task}/wchan").read_text()
        except OSError:
            continue  # the thread ended
        count += wchan == "wait_for_partner"
    return count


def _settle(server: ServerProcess, fifo_waiters: int, threads: int) -> tuple[int, int]:
    """(FIFO waiters, threads) once they are at most these (or what they are after 20 s)."""
    for _ in range(200):
        now = _in_fifo_open(server), _threads(server)
        if now[0] <= fifo_waiters and now[1] <= threads:
            return now
        time.sleep(0.1)
    return _in_fifo_open(server), _threads(server)


def test_blocked_fifo_opens_are_bounded_flushed_and_released(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    os.mkfifo(export / "lonely")  # nobody ever writes
    os.mkfifo(export / "busy")
    writer = os.open(export / "busy", os.O_RDWR | os.O_NONBLOCK)  # a writer present
    try:
        with limited_server(export, tmp_path, nofile=1024) as server:
            other = RawPeer(server.address)
            other.handshake()
            assert isinstance(_open(other, 1, 2, "busy"), m.Rlopen)
            baseline = _threads(server)  # warm: what serving a client started is there

            greedy = RawPeer(server.address)
            greedy.handshake()
            for i in range(40):
                assert isinstance(greedy.rpc(m.Twalk(1, 100 + i, ("lonely",))), m.Rwalk)
            for i in range(40):
                greedy.send(100 + i, m.Tlopen(100 + i, O_RDONLY))
            refused = {}  # beyond the share of one connection: EAGAIN at once
            while len(refused) < 40 - FIFO_WAITS_PER_CONNECTION:
                tag, reply = greedy.recv()
                assert isinstance(reply, m.Rlerror) and reply.ecode == errno.EAGAIN
                refused[tag] = reply
            assert 100 not in refused  # the first one waits
            assert _in_fifo_open(server) <= FIFO_WAITS_PER_CONNECTION
            assert _threads(server) <= baseline + FIFO_WAITS_PER_CONNECTION
            assert isinstance(_open(other, 1, 3, "busy"), m.Rlopen)  # still served

            greedy.send(1000, m.Tflush(100))
            assert greedy.recv() == (1000, m.Rflush())  # and no reply to the open

            greedy.close()  # its waiting opens end, and their threads
            waiters, threads = _settle(server, 0, baseline)
            assert waiters == 0 and threads <= baseline

            stuck = RawPeer(server.address)  # waiting in open(2) when SIGTERM comes
            stuck.handshake()
            assert isinstance(stuck.rpc(m.Twalk(1, 2, ("lonely",))), m.Rwalk)
            stuck.send(5, m.Tlopen(2, O_RDONLY))
            time.sleep(0.2)
            server.proc.send_signal(signal.SIGTERM)
            try:
                server.proc.wait(20)
            except subprocess.TimeoutExpired:
                pytest.fail("SIGTERM did not stop a server with a FIFO open waiting")
            stuck.close()
            other.close()
            assert "Traceback" not in server.log_text()
    finally:
        os.close(writer)


def test_a_fifo_open_flushed_or_dropped_at_once_is_released(tmp_path: Path) -> None:
    """Tflush (or the close) in the same segment as the Tlopen: it reaches the server
    before the open waits, and must still end it."""
    export = tmp_path / "export"
    export.mkdir()
    os.mkfifo(export / "lonely")
    with limited_server(export, tmp_path, nofile=1024) as server:
        peer = RawPeer(server.address)
        peer.handshake()
        assert isinstance(peer.rpc(m.Twalk(1, 2, ("lonely",))), m.Rwalk)
        peer.send_raw(m.encode(5, m.Tlopen(2, O_RDONLY)) + m.encode(6, m.Tflush(5)))
        assert peer.recv() == (6, m.Rflush())
        for _ in range(20):  # more than the export's FIFO_WAITS, each gone at once
            gone = RawPeer(server.address)
            gone.handshake()
            gone.send_raw(m.encode(2, m.Twalk(1, 2, ("lonely",)))
                          + m.encode(3, m.Tlopen(2, O_RDONLY)))
            gone.close()
        assert _settle(server, 0, 1 << 20)[0] == 0, "FIFO opens of closed connections wait"
        peer.close()
        assert "Traceback" not in server.log_text()
