"""ninep/server/admission.py against a real server process: connections over
max_connections or max_connections_per_peer are closed at accept, before any 9P is read
or any TLS handshake is made; they hold no descriptor and are logged once per peer."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ninep.certs import make_ca, make_server
from ninep.wire import messages as m
from tests.conftest import free_port, wait_for_port
from tests.hostile.serverproc import ServerProcess, serve_process

ROOT = Path(__file__).resolve().parents[2]
TVERSION = m.Tversion(65536, "9P2000.L")


def versioned(address: tuple[str, int], source: str = "127.0.0.1") -> socket.socket | None:
    """A connection from ``source`` that sent a Tversion: the socket if the server
    answered Rversion, None if it closed the connection without a reply."""
    sock = socket.socket()
    sock.settimeout(10)
    sock.bind((source, 0))  # any of 127.0.0.0/8 is this host on Linux
    sock.connect(address)
    try:
        sock.sendall(m.encode(m.NOTAG, TVERSION))
        data = b""
        while len(data) < 4 or len(data) < int.from_bytes(data[:4], "little"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
    except ConnectionError:
        sock.close()
        return None
    _tag, reply = m.decode(data)
    assert isinstance(reply, m.Rversion) and reply.version == "9P2000.L"
    return sock


def refusals(server: ServerProcess, peer: str) -> int:
    return sum(1 for line in server.log_text().splitlines()
               if "connection refused" in line and f"{peer}:" in line)


def admitted_once_released(address: tuple[str, int]) -> socket.socket:
    """A connection admitted once the server has given back a closed one's place,
    which it does when everything the closed one held is released (its fids
    clunked), a few turns of its event loop after the close."""
    for _ in range(400):
        sock = versioned(address)
        if sock is not None:
            return sock
        time.sleep(0.05)
    raise AssertionError("no place was given back")


def refused_metric(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith("ninep_connections_refused_total ")))


def test_past_max_connections_new_ones_are_closed_without_a_reply(tmp_path: Path) -> None:
    metrics_port = free_port()
    args = ["--max-connections", "20", "--metrics", f"tcp://127.0.0.1:{metrics_port}"]
    with serve_process(args, tmp_path) as server:
        baseline = server.open_fds()
        results = [versioned(server.address) for _ in range(30)]
        admitted = [p for p in results if p is not None]
        try:
            assert len(admitted) == 20 and results[:20] == admitted  # the first 20
            assert server.open_fds() <= baseline + 20 + 4
            assert refusals(server, "127.0.0.1") == 1  # not 10
            assert "max_connections of 20" in server.log_text()
            assert refused_metric(metrics_port) == 10
            for peer in admitted[:5]:
                peer.close()
            admitted[5:] = [*admitted[5:],
                            *(admitted_once_released(server.address) for _ in range(5))]
            assert versioned(server.address) is None  # 20 again
            assert server.open_fds() <= baseline + 20 + 4
            assert server.alive()
        finally:
            for peer in admitted:
                if peer is not None:
                    peer.close()


def test_max_connections_per_peer_counts_each_address(tmp_path: Path) -> None:
    args = ["--max-connections", "50", "--max-connections-per-peer", "3"]
    with serve_process(args, tmp_path) as server:
        # (wait_for_port's probe holds a place of 127.0.0.1 until the server saw it close)
        first: list[socket.socket] = []
        try:
            first += [admitted_once_released(server.address) for _ in range(3)]
            assert versioned(server.address) is None  # a 4th from 127.0.0.1
            other = versioned(server.address, source="127.0.0.2")
            assert other is not None
            first.append(other)
            assert refusals(server, "127.0.0.1") == 1
            assert "max_connections_per_peer of 3" in server.log_text()
        finally:
            for peer in first:
                peer.close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """A TLS listener, with at most 2 connections per peer: (port, CA file, log)."""
    make_ca(tmp_path / "ca")
    make_server(tmp_path / "ca", tmp_path / "srv", "ninep.test", ips=["127.0.0.1"])
    port = free_port()
    config = tmp_path / "server.toml"
    config.write_text(textwrap.dedent(f"""
        [server]
        max_connections_per_peer = 2

        [[listen]]
        kind = "tls"
        address = "127.0.0.1:{port}"
        cert = "{tmp_path / 'srv' / 'server.crt'}"
        key = "{tmp_path / 'srv' / 'server.key'}"

        [namespaces.main]
        mounts = [{{ path = "/", backend = "ram" }}]

        [[policy]]
        namespace = "main"
        """))
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for_port(port, proc)
        # its probe holds a place of 127.0.0.1 until the server saw it close
        wait_for_log(log, "TLS handshake failed", 1)
        yield port, tmp_path / "ca" / "ca.crt", log
    finally:
        proc.terminate()
        proc.wait(20)


def wait_for_log(log: Path, text: str, count: int) -> None:
    for _ in range(400):
        if log.read_text().count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged {count} times")


def tls_connect(port: int, ca: Path, source: str = "127.0.0.1") -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))
    raw = socket.socket()
    raw.settimeout(10)
    raw.bind((source, 0))
    raw.connect(("127.0.0.1", port))
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_a_tls_peer_over_its_limit_gets_no_handshake(tls_server: tuple[int, Path, Path]) -> None:
    port, ca, log = tls_server
    held = [tls_connect(port, ca), tls_connect(port, ca)]
    try:
        # the server closes it at accept: the client's handshake meets EOF or a reset,
        # not a certificate
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_connect(port, ca)
        held.append(tls_connect(port, ca, source="127.0.0.2"))  # another address
        text = log.read_text()
        assert "127.0.0.1: connection refused" in text
        assert "max_connections_per_peer of 2" in text
        assert text.count("TLS handshake") == 1  # wait_for_port's probe: none was tried
    finally:
        for sock in held:
            sock.close()


def test_tls_handshakes_in_progress_count(tls_server: tuple[int, Path, Path]) -> None:
    port, ca, log = tls_server
    silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    try:  # two connections that never start their handshake hold the peer's places
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_connect(port, ca)
    finally:
        for sock in silent:
            sock.close()
    # their handshakes fail when they close (logged), which gives the places back
    wait_for_log(log, "TLS handshake failed", 3)  # and wait_for_port's probe
    tls_connect(port, ca).close()
