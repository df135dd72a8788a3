"""ninep mount, up to mount(2): TLS, Tauth, the relay and the option string, with a real server.

This machine's kernel has no 9p module, so the test plays the kernel: it speaks
9P over the fd the helper would hand to mount(2), exactly as v9fs would
(Tversion, then attaches with NOFID). tests/kernel does the real mount.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from ninep.certs import make_ca, make_client, make_server
from ninep.cli import main
from ninep.mount.helper import (
    Endpoint,
    authenticate,
    connect,
    mount_9p,
    mount_options,
    parse_endpoint,
    spawn_relay,
    tls_context,
)
from ninep.wire import messages as m
from tests.auth_policy import SECRET_FILE, AuthServer, auth_server
from tests.conftest import RawPeer


class _SocketPeer(RawPeer):
    """RawPeer over an existing socket (the kernel's end)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(20)
        self.buf = b""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AuthServer]:
    yield from auth_server(tmp_path)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    make_ca(tmp_path / "ca")
    make_server(tmp_path / "ca", tmp_path / "srv", "localhost", ips=["127.0.0.1"])
    make_client(tmp_path / "ca", tmp_path / "cli", "laptop")
    return tmp_path


@pytest.fixture
def tls_port(server: AuthServer, pki: Path) -> Iterator[int]:
    """A TLS listener (client certificate required) on the test server's loop."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "srv" / "server.crt", pki / "srv" / "server.key")
    ctx.load_verify_locations(pki / "ca" / "ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    running = server.running

    async def listen() -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: running.server.connection("tls"),
                                        "127.0.0.1", 0, ssl=ctx)

    listener = running.call(listen())
    yield int(listener.sockets[0].getsockname()[1])
    running.loop.call_soon_threadsafe(listener.close)


def _client_tls(pki: Path) -> ssl.SSLContext:
    return tls_context(str(pki / "ca" / "ca.crt"), str(pki / "cli" / "laptop.crt"),
                       str(pki / "cli" / "laptop.key"))


def _as_kernel(sock: socket.socket, aname: str = "secret", n_uname: int = 1000) -> _SocketPeer:
    """What v9fs does first on a trans=fd mount: Tversion, Tattach(afid=NOFID)."""
    peer = _SocketPeer(sock)
    reply = peer.rpc(m.Tversion(131072, "9P2000.L"), tag=m.NOTAG)
    assert isinstance(reply, m.Rversion)
    reply = peer.rpc(m.Tattach(1, m.NOFID, "", aname, n_uname))
    if isinstance(reply, m.Rlerror):
        raise OSError(reply.ecode, os.strerror(reply.ecode))
    assert isinstance(reply, m.Rattach)
    return peer


def _read_file(peer: _SocketPeer, name: str) -> bytes:
    assert isinstance(peer.rpc(m.Twalk(1, 2, (name,))), m.Rwalk)
    assert isinstance(peer.rpc(m.Tlopen(2, 0)), m.Rlopen)
    data, offset = b"", 0
    while True:
        reply = peer.rpc(m.Tread(2, offset, 65536))
        assert isinstance(reply, m.Rread)
        if not reply.data:
            break
        data += reply.data
        offset += len(reply.data)
    peer.rpc(m.Tclunk(2))
    return data


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


# --- pure parts -------------------------------------------------------------------

def test_parse_endpoint() -> None:
    assert parse_endpoint("files.example") == Endpoint("tcp", "files.example", 5640)
    assert parse_endpoint("10.0.0.2:564") == Endpoint("tcp", "10.0.0.2", 564)
    assert parse_endpoint("tcp://[::1]:99") == Endpoint("tcp", "::1", 99)
    assert parse_endpoint("unix:///run/9p.sock") == Endpoint("unix", path="/run/9p.sock")
    assert parse_endpoint("/run/9p.sock") == Endpoint("unix", path="/run/9p.sock")
    for bad in ("http://x", "unix://", "host:notaport"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)


def test_mount_options() -> None:
    flags, data = mount_options(5, "secret", "alice", "ro,nosuid,msize=262144,cache=loose")
    assert flags == 1 | 2
    assert data == ("trans=fd,rfdno=5,wfdno=5,version=9p2000.L,aname=secret,uname=alice,"
                    "msize=262144,cache=loose")
    assert mount_options(3)[1] == "trans=fd,rfdno=3,wfdno=3,version=9p2000.L"
    for bad in ("trans=tcp", "rfdno=1", "port=1", "aname=x"):
        with pytest.raises(ValueError):
            mount_options(3, extra=bad)


# --- against a real server ---------------------------------------------------------

def test_tcp_auth_then_kernel_attaches_with_nofid(server: AuthServer) -> None:
    sock = connect(Endpoint("tcp", "127.0.0.1", server.running.port))
    with sock:
        assert authenticate(sock, str(server.alice_file), "root", "secret") == \
            server.alice_fingerprint
        peer = _as_kernel(sock)
        assert _read_file(peer, SECRET_FILE) == b"secret\n"


def test_unix_socket_without_auth_cannot_reach_the_key_namespace(server: AuthServer) -> None:
    sock = connect(Endpoint("unix", path=server.running.unix_path))
    with sock, pytest.raises(PermissionError):
        _as_kernel(sock)


def test_wrong_auth_key_fails_before_mounting(server: AuthServer) -> None:
    sock = connect(Endpoint("tcp", "127.0.0.1", server.running.port))
    with sock, pytest.raises(PermissionError, match="refused the key"):
        authenticate(sock, str(server.mallory_file), "root", "secret")
    sock = connect(Endpoint("tcp", "127.0.0.1", server.running.port))
    with sock, pytest.raises(PermissionError, match="no policy gives it aname 'elsewhere'"):
        authenticate(sock, str(server.alice_file), "root", "elsewhere")


def test_tls_relay_carries_the_kernel_session(server: AuthServer, pki: Path,
                                              tls_port: int) -> None:
    sock = connect(Endpoint("tcp", "127.0.0.1", tls_port), _client_tls(pki), "localhost")
    assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.3", "TLSv1.2")
    kernel_end, pid = spawn_relay(sock)  # Tauth goes through the relay, as in ninep mount
    try:
        authenticate(kernel_end, str(server.alice_file), "root", "secret")
        _, data = mount_options(kernel_end.fileno(), "secret", "", "")
        assert f"rfdno={kernel_end.fileno()},wfdno={kernel_end.fileno()}" in data
        peer = _as_kernel(kernel_end, n_uname=0)  # root may write the RAM root
        assert _read_file(peer, SECRET_FILE) == b"secret\n"
        # a few MiB each way: the relay's buffering and backpressure
        blob = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32)
        assert isinstance(peer.rpc(m.Twalk(1, 3, ())), m.Rwalk)
        assert isinstance(peer.rpc(m.Tlcreate(3, "big", 0o2, 0o644, 0)), m.Rlcreate)
        for offset in range(0, len(blob), 65000):
            reply = peer.rpc(m.Twrite(3, offset, blob[offset:offset + 65000]))
            assert isinstance(reply, m.Rwrite) and reply.count == len(blob[offset:offset + 65000])
        peer.rpc(m.Tclunk(3))
        assert _read_file(peer, "big") == blob
    finally:
        kernel_end.close()  # what unmount does: the relay sees EOF and exits
    assert _wait(pid) == 0


def test_tls_without_client_certificate_is_refused(pki: Path, tls_port: int) -> None:
    ctx = tls_context(str(pki / "ca" / "ca.crt"), None, None)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        sock = connect(Endpoint("tcp", "127.0.0.1", tls_port), ctx, "localhost")
        sock.sendall(m.encode(m.NOTAG, m.Tversion(8192, "9P2000.L")))
        if not sock.recv(1):  # TLS 1.3: the refusal arrives after the handshake
            raise ConnectionError("closed")


def _has_9p() -> bool:
    try:
        return "9p" in Path("/proc/filesystems").read_text().split()
    except OSError:
        return False


@pytest.mark.skipif(_has_9p(), reason="this kernel can mount 9p: tests/kernel covers it")
def test_mount_call_reports_a_clear_error(tmp_path: Path) -> None:
    a, b = socket.socketpair()
    with a, b, pytest.raises(OSError) as info:
        mount_9p("9p:test", str(tmp_path), 0, mount_options(a.fileno())[1])
    assert info.value.errno in (errno.ENODEV, errno.EPERM)


@pytest.mark.skipif(_has_9p(), reason="this kernel can mount 9p: tests/kernel covers it")
def test_cli_runs_up_to_mount_and_cleans_up(server: AuthServer, pki: Path, tls_port: int,
                                            tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["mount", "--tls", "--ca", str(pki / "ca" / "ca.crt"),
                 "--cert", str(pki / "cli" / "laptop.crt"), "--key", str(pki / "cli" /
                                                                         "laptop.key"),
                 "--server-name", "localhost", "--auth-key", str(server.alice_file),
                 "--aname", "secret", "-o", "ro", f"127.0.0.1:{tls_port}", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"key {server.alice_fingerprint} accepted" in err
    assert "mount " in err and ("9p module" in err or "not permitted" in err)
    assert main(["mount", "--ca", "x", "127.0.0.1:1", str(tmp_path)]) == 1
    assert "need --tls" in capsys.readouterr().err


def test_relay_ends_when_the_server_goes_away(pki: Path) -> None:
    """A TLS peer that echoes 1 MiB and closes: the kernel's end sees all of it, then EOF."""
    import threading

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "srv" / "server.crt", pki / "srv" / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    size = 1 << 20

    def echo_then_close() -> None:
        conn, _ = listener.accept()
        with ctx.wrap_socket(conn, server_side=True) as tls:
            got = 0
            while got < size:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                tls.sendall(chunk)
                got += len(chunk)

    thread = threading.Thread(target=echo_then_close)
    thread.start()
    try:
        client = tls_context(str(pki / "ca" / "ca.crt"), None, None)
        sock = connect(Endpoint("tcp", "127.0.0.1", listener.getsockname()[1]), client,
                       "localhost")
        kernel_end, pid = spawn_relay(sock)
        payload = os.urandom(size)
        writer = threading.Thread(target=kernel_end.sendall, args=(payload,))
        writer.start()
        kernel_end.settimeout(20)
        received = bytearray()
        while True:
            chunk = kernel_end.recv(1 << 16)
            if not chunk:
                break
            received += chunk
        writer.join(10)
        assert bytes(received) == payload
        kernel_end.close()
        assert _wait(pid) == 0
    finally:
        thread.join(10)
        listener.close()
