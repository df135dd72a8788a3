"""Shared fixtures: a real ninep server on 127.0.0.1 in a background thread, and a raw 9P peer."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ninep.server.listeners import ListenAddress, Server
from ninep.server.session import ServerLimits
from ninep.vfs.policy import Policy
from ninep.wire import messages as m

os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


@dataclass
class RunningServer:
    """A server running on its own event loop thread."""

    server: Server
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    port: int
    unix_path: str

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.unix_path}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def call(self, coro: Awaitable[Any]) -> Any:
        """Run a coroutine on the server's loop (to inspect or seed backends)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now (for a server started as a process)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """Wait until the server process ``proc`` listens on ``port``; fail with its output
    if it exits first, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the server did not start listening")


def start_server(make_policy: Callable[[], Awaitable[Policy]],
                 limits: ServerLimits | None = None) -> RunningServer:
    """Start a Server on 127.0.0.1:0 and a temporary UNIX socket, in a thread."""
    import uvloop

    loop = uvloop.new_event_loop()
    ready = threading.Event()
    def run_loop() -> None:
        asyncio.set_event_loop(loop)
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run_loop, daemon=True)
    thread.start()
    ready.wait()
    sockdir = tempfile.mkdtemp(prefix="ninep-test-")
    unix_path = os.path.join(sockdir, "9p.sock")

    async def boot() -> tuple[Server, int]:
        server = Server(await make_policy(), limits)
        bound = await server.listen(ListenAddress("tcp", "127.0.0.1", 0))
        await server.listen(ListenAddress("unix", path=unix_path))
        return server, int(bound[0].rsplit(":", 1)[1])

    server, port = asyncio.run_coroutine_threadsafe(boot(), loop).result(30)
    return RunningServer(server, loop, thread, port, unix_path)


@pytest.fixture
def ninep_server() -> Iterator[RunningServer]:
    """The embedded default namespace on a fresh server."""
    from ninep.config.defaults import default_policy

    running = start_server(default_policy)
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(os.path.dirname(running.unix_path), ignore_errors=True)


class RawPeer:
    """A blocking 9P peer speaking raw frames, for protocol-level tests."""

    def __init__(self, address: str | tuple[str, int], timeout: float = 10.0) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.buf = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, tag: int, msg: m.Message) -> None:
        self.sock.sendall(m.encode(tag, msg))

    def recv(self) -> tuple[int, m.Message]:
        """The next reply; raises ConnectionError when the server closed."""
        while True:
            if len(self.buf) >= 4:
                (size,) = struct.unpack_from("<I", self.buf)
                if len(self.buf) >= size:
                    frame, self.buf = self.buf[:size], self.buf[size:]
                    return m.decode(frame)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk

    def rpc(self, msg: m.Message, tag: int = 1) -> m.Message:
        self.send(tag, msg)
        rtag, reply = self.recv()
        assert rtag == tag, f"reply tag {rtag} for request tag {tag}"
        return reply

    def closed_by_server(self) -> bool:
        """True when the server has closed (EOF or reset) within the timeout."""
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def handshake(self, msize: int = 65536, aname: str = "", n_uname: int = 0,
                  fid: int = 1) -> m.Message:
        reply = self.rpc(m.Tversion(msize, "9P2000.L"), tag=m.NOTAG)
        assert isinstance(reply, m.Rversion) and reply.version == "9P2000.L"
        return self.rpc(m.Tattach(fid, m.NOFID, "root", aname, n_uname))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_peer(ninep_server: RunningServer) -> Iterator[Callable[..., RawPeer]]:
    peers: list[RawPeer] = []

    def connect(unix: bool = False, timeout: float = 10.0) -> RawPeer:
        address: str | tuple[str, int] = (ninep_server.unix_path if unix
                                          else ("127.0.0.1", ninep_server.port))
        peer = RawPeer(address, timeout)
        peers.append(peer)
        return peer

    yield connect
    for peer in peers:
        peer.close()
