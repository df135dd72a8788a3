"""``ninep serve``'s listeners as an operator starts them: --listen beside --config, and
socket activation by systemd's own tool (contrib/systemd)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ninep.wire import messages as m
from tests.conftest import RawPeer, free_port, wait_for_port

NINEP = [sys.executable, "-m", "ninep"]
RAM = ('[namespaces.data]\nmounts = [{ path = "/", backend = "ram" }]\n\n'
       '[[policy]]\nnamespace = "data"\n')


def test_listen_beside_a_config_with_listeners_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "ninep.toml"
    config.write_text('[[listen]]\nkind = "unix"\npath = "ninep.sock"\n\n' + RAM)
    result = subprocess.run([*NINEP, "serve", "--config", str(config),
                             "--listen", "tcp://127.0.0.1:1"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert (f"ninep serve: --listen beside {config}, which has [[listen]] tables"
            in result.stderr)
    assert not (tmp_path / "ninep.sock").exists()


def serve_config(tmp_path: Path, listen: str = "") -> Path:
    config = tmp_path / "ninep.toml"
    config.write_text(listen + RAM)
    return config


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate (Debian: systemd) is not installed")
def test_activated_by_systemd_socket_activate_on_the_first_connection(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """systemd's own tool holds the socket, starts the server at the first connection with
    LISTEN_FDS/LISTEN_FDNAMES, and the connection that woke it is served."""
    port = free_port()
    config = serve_config(tmp_path, '[[listen]]\nkind = "systemd"\nname = "ninep"\n\n')
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}",
                             "--fdname=ninep", *NINEP, "serve", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    procs.append(proc)
    deadline = time.monotonic() + 20
    while True:  # the activator binds first; the server is not running yet
        try:
            peer = RawPeer(("127.0.0.1", port), timeout=30)
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    assert isinstance(peer.handshake(), m.Rattach)
    peer.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert "(systemd ninep)" in (tmp_path / "server.log").read_text()


def test_ready_reloading_and_stopping_are_told_to_notify_socket(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """Type=notify: READY=1 comes only once the listener accepts (sd_notify(3))."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    port = free_port()
    config = serve_config(tmp_path, f'[[listen]]\nkind = "tcp"\naddress = "127.0.0.1:{port}"\n\n')
    proc = subprocess.Popen([*NINEP, "serve", "--config", str(config)],
                            env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")},
                            stderr=subprocess.DEVNULL)
    procs.append(proc)
    ready = notify.recv(4096).decode().split("\n")
    assert ready[0] == "READY=1" and ready[1] == f"STATUS=listening on tcp://127.0.0.1:{port}"
    socket.create_connection(("127.0.0.1", port), 1).close()  # accepting already
    proc.send_signal(signal.SIGHUP)
    reloading = notify.recv(4096).decode().split("\n")
    assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
    assert notify.recv(4096) == b"READY=1"
    proc.send_signal(signal.SIGTERM)
    assert notify.recv(4096) == b"STOPPING=1"
    assert proc.wait(20) == 0
    notify.close()


def test_an_abstract_notify_socket(tmp_path: Path) -> None:
    from ninep.server.sd_notify import notify

    name = f"ninep-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        os.environ["NOTIFY_SOCKET"] = "@" + name
        try:
            assert notify("READY=1")
        finally:
            del os.environ["NOTIFY_SOCKET"]
        assert sock.recv(100) == b"READY=1"
    assert not notify("READY=1")  # not started by systemd: nothing to tell


def test_serve_logs_what_check_config_would_warn_about(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    config = serve_config(tmp_path, f'[[listen]]\nkind = "tcp"\naddress = "127.0.0.1:{port}"\n\n')
    config.write_text(config.read_text() + '\n[[policy]]\nname = "root"\nnamespace = "data"\n'
                      'match = { peer_uid = 0 }\n')
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*NINEP, "serve", "--config", str(config)], stdout=out,
                                stderr=subprocess.STDOUT)
    procs.append(proc)
    wait_for_port(port, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert (f"WARNING ninep: {config}: policy 'root' matches on peer_uid, which only a UNIX "
            "socket's peer has") in log.read_text()
