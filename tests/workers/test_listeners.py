"""Every kind of listener the supervisor binds, served by --workers 3: TLS and UNIX from
a config file, and systemd's sockets (systemd-socket-activate)."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ninep.wire import messages as m
from tests.conftest import RawPeer, free_port
from tests.integration.policy_helpers import attach, make_pki, peer_on, read_file, tls_peer
from tests.workers.conftest import WORKERS

NAMESPACE = """
[namespaces.main]
mounts = [
  {{ path = "/", backend = "passthrough", source = "{export}" }},
  {{ path = "/who", backend = "inline", source = "served" }},
]

[[policy]]
name = "all"
namespace = "main"
"""


def wait_log(log: Path, text: str, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while True:
        got = log.read_text(errors="replace")
        if text in got:
            return got
        assert proc.poll() is None and time.monotonic() < deadline, got
        time.sleep(0.05)


def unix_peer(path: Path) -> RawPeer:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return peer_on(sock)


def workers_of(log: Path, transport: str) -> set[str]:
    return set(re.findall(rf"worker \d+ \[(\d+)\] \S+: connection from {transport}:",
                          log.read_text(errors="replace")))


def test_tls_and_unix_listeners(tmp_path: Path, export: Path) -> None:
    pki = make_pki(tmp_path)
    port = free_port()
    sock_path = tmp_path / "9p.sock"
    config = tmp_path / "ninep.toml"
    config.write_text(textwrap.dedent(f"""
        [server]
        workers = {WORKERS}

        [[listen]]
        kind = "tls"
        address = "127.0.0.1:{port}"
        cert = "{pki.server_cert}"
        key = "{pki.server_key}"

        [[listen]]
        kind = "unix"
        path = "{sock_path}"
        mode = "0600"
    """) + NAMESPACE.format(export=export))
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--config", str(config),
                                 "--log-level", "debug"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_log(log, "workers serving", proc)
        assert sock_path.stat().st_mode & 0o777 == 0o600
        for transport, connect in (("tls", lambda: tls_peer(port, pki, None)),
                                   ("unix", lambda: unix_peer(sock_path))):
            for _ in range(40):
                peer = connect()
                assert isinstance(attach(peer), m.Rattach)
                assert read_file(peer, ("who",)) == b"served\n"
                peer.close()
                if len(workers_of(log, transport)) >= 2:
                    break
            assert len(workers_of(log, transport)) >= 2, transport
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not sock_path.exists()  # the supervisor bound it, and removes it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate (Debian: systemd) is not installed")
def test_systemd_sockets(tmp_path: Path, export: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}",
                                 "--fdname=ninep", sys.executable, "-m", "ninep", "serve",
                                 "--workers", str(WORKERS), "--log-level", "debug",
                                 "--mount", f"/=passthrough:{export}"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:  # the activator binds first and starts the server on a connection
            try:
                peer = RawPeer(("127.0.0.1", port), timeout=30)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        assert isinstance(peer.handshake(), m.Rattach)
        peer.close()
        text = wait_log(log, "workers serving", proc)
        assert "(systemd ninep)" in text
        for _ in range(40):
            peer = RawPeer(("127.0.0.1", port), timeout=30)
            assert isinstance(peer.handshake(), m.Rattach)
            peer.close()
            if len(workers_of(log, "tcp")) >= 2:
                break
        assert len(workers_of(log, "tcp")) >= 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
