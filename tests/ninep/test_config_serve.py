"""``ninep serve --config`` as a real process: SIGHUP reloads, stdio, systemd sockets, errors."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ninep.wire import messages as m
from tests.conftest import RawPeer, free_port, wait_for_port
from tests.integration.policy_helpers import Pki, attach, make_pki, peer_on, read_file, tls_peer

NINEP = [sys.executable, "-m", "ninep"]


def namespaces(who: str) -> str:
    return textwrap.dedent(f"""
        [namespaces.main]
        mounts = [{{ path = "/", backend = "ram" }},
                  {{ path = "/who", backend = "inline", source = "{who}" }}]

        [[policy]]
        namespace = "main"
    """)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            proc.kill()
            proc.communicate()


def serve(procs: list[subprocess.Popen[str]], *args: str, **kw: object) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*NINEP, "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]
    procs.append(proc)
    return proc


def who(port: int, aname: str = "") -> bytes:
    peer = RawPeer(("127.0.0.1", port))
    try:
        assert isinstance(attach(peer, aname), m.Rattach)
        return read_file(peer, ("who",))
    finally:
        peer.close()


def wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sighup_applies_a_valid_config_and_keeps_the_old_one_when_invalid(
        tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    listen = f'[[listen]]\nkind = "tcp"\naddress = "127.0.0.1:{port}"\n'
    config = tmp_path / "ninep.toml"
    config.write_text(listen + namespaces("first"))
    proc = serve(procs, "--config", str(config))
    wait_for_port(port, proc)
    old = RawPeer(("127.0.0.1", port))
    assert isinstance(attach(old), m.Rattach)
    old.rpc(m.Twalk(1, 2, ()))
    assert isinstance(old.rpc(m.Tlcreate(2, "kept", 1, 0o644, 0)), m.Rlcreate)
    assert who(port) == b"first\n"

    config.write_text(listen + namespaces("second"))
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: who(port) == b"second\n", "the reloaded namespace")
    assert read_file(old, ("who",)) == b"first\n"  # an attach keeps its namespace
    # the RAM disk is the same instance in both configs: it survives the reload
    fresh = RawPeer(("127.0.0.1", port))
    attach(fresh)
    assert isinstance(fresh.rpc(m.Twalk(1, 2, ("kept",))), m.Rwalk)

    log = StderrLines(proc)
    config.write_text(listen + namespaces("third").replace('backend = "ram"', 'backend = "nosuch"'))
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload rejected" in log.text(), "the rejection")
    assert "unknown backend 'nosuch'" in log.text() and str(config) in log.text()
    assert who(port) == b"second\n"  # the running configuration stayed


class StderrLines:
    """The server's stderr as it comes, read by a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stderr is not None
        stream = proc.stderr
        threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")),
                         daemon=True).start()

    def text(self) -> str:
        return "".join(self.lines)


def test_sighup_reloads_the_tls_certificate(tmp_path: Path,
                                            procs: list[subprocess.Popen[str]]) -> None:
    pki = make_pki(tmp_path)
    port = free_port()
    server_cert = tmp_path / "live.pem"
    server_cert.write_bytes(pki.server_cert.read_bytes())
    config = tmp_path / "ninep.toml"
    config.write_text(textwrap.dedent(f"""
        [[listen]]
        kind = "tls"
        address = "127.0.0.1:{port}"
        cert = "live.pem"
        key = "{pki.server_key}"
    """) + namespaces("tls"))
    proc = serve(procs, "--config", str(config))
    wait_for_port(port, proc)

    def served_cert() -> bytes:
        peer = tls_peer(port, pki, None)
        try:
            der = peer.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
            assert isinstance(attach(peer), m.Rattach)
            return bytes(der)
        finally:
            peer.close()

    first = served_cert()
    assert served_cert() == first
    server_cert.write_bytes(_reissue(pki))  # same CA and key, a new certificate
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: served_cert() != first, "the new certificate")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert "TLS certificate" in err and "reloaded" in err


def test_a_rejected_reload_changes_nothing_not_even_the_certificate(
        tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    pki = make_pki(tmp_path)
    port = free_port()
    server_cert = tmp_path / "live.pem"
    server_cert.write_bytes(pki.server_cert.read_bytes())
    config = tmp_path / "ninep.toml"
    listen = textwrap.dedent(f"""
        [[listen]]
        kind = "tls"
        address = "127.0.0.1:{port}"
        cert = "live.pem"
        key = "{pki.server_key}"
    """)
    config.write_text(listen + namespaces("tls"))
    proc = serve(procs, "--config", str(config))
    log = StderrLines(proc)
    wait_for_port(port, proc)

    def served_cert() -> bytes:
        peer = tls_peer(port, pki, None)
        try:
            return bytes(peer.sock.getpeercert(binary_form=True))  # type: ignore[attr-defined]
        finally:
            peer.close()

    first = served_cert()
    server_cert.write_bytes(_reissue(pki))  # a new certificate, and a config that is bad
    config.write_text(listen + namespaces("tls").replace('backend = "ram"', 'backend = "nosuch"'))
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload rejected" in log.text(), "the rejection")
    assert served_cert() == first
    assert "reloaded" not in log.text()


def _reissue(pki: Pki) -> bytes:
    """The server certificate signed again by the same CA (new serial, same key)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    old = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca.with_suffix(".key").read_bytes(), None)
    now = datetime.datetime.now(datetime.UTC)
    new = (x509.CertificateBuilder().subject_name(old.subject).issuer_name(ca.subject)
           .public_key(old.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(days=1))
           .not_valid_after(now + datetime.timedelta(days=7))
           .add_extension(old.extensions.get_extension_for_class(
               x509.SubjectAlternativeName).value, critical=False)
           .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    return new.public_bytes(serialization.Encoding.PEM)


def test_stdio_over_pipes(procs: list[subprocess.Popen[str]]) -> None:
    proc = subprocess.Popen([*NINEP, "serve", "--stdio"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(m.encode(m.NOTAG, m.Tversion(65536, "9P2000.L")))
        proc.stdin.write(m.encode(1, m.Tattach(1, m.NOFID, "root", "", 0)))
        proc.stdin.flush()
        replies = [_read_frame(proc.stdout) for _ in range(2)]
        # the walk uses the attached fid: sent once the attach is answered, as a 9P
        # client must (replies to different tags may come in any order, and the
        # attach looks its uname up on a thread)
        proc.stdin.write(m.encode(2, m.Twalk(1, 2, ("README",))))
        proc.stdin.flush()
        replies.append(_read_frame(proc.stdout))
        assert isinstance(replies[0][1], m.Rversion) and isinstance(replies[1][1], m.Rattach)
        assert isinstance(replies[2][1], m.Rwalk) and len(replies[2][1].qids) == 1
    finally:
        proc.stdin.close()  # EOF: the one connection is over and the server exits
        proc.wait(timeout=20)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == 0, err


def _read_frame(stream: object) -> tuple[int, m.Message]:
    header = stream.read(4)  # type: ignore[attr-defined]
    size = int.from_bytes(header, "little")
    return m.decode(header + stream.read(size - 4))  # type: ignore[attr-defined]


def test_stdio_on_a_socket_has_peer_credentials(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    config = tmp_path / "ninep.toml"
    config.write_text(textwrap.dedent(f"""
        [[listen]]
        kind = "stdio"
        [namespaces.main]
        mounts = [{{ path = "/who", backend = "inline", source = "uid {os.getuid()}" }}]
        [[policy]]
        namespace = "main"
        match = {{ transport = "stdio", peer_uid = {os.getuid()} }}
    """))
    proc = subprocess.Popen([*NINEP, "serve", "--config", str(config)],  # kind = "stdio"
                            stdin=theirs, stdout=theirs, stderr=subprocess.PIPE, text=True)
    theirs.close()
    ours.settimeout(20)
    peer = peer_on(ours)
    assert isinstance(attach(peer), m.Rattach)
    assert read_file(peer, ("who",)) == f"uid {os.getuid()}\n".encode()
    ours.close()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_systemd_socket_activation(tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    sock_path = tmp_path / "activated.sock"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(sock_path))
    unix.listen()
    # systemd starts the service with the sockets at fds 3, 4, ... and LISTEN_PID = its pid
    launcher = textwrap.dedent(f"""
        import os, sys
        os.dup2({listener.fileno()}, 3)
        os.dup2({unix.fileno()}, 4)
        os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="2",
                          LISTEN_FDNAMES="web:local")
        os.execv(sys.executable, [sys.executable, "-m", "ninep", "serve"])
    """)
    proc = subprocess.Popen([sys.executable, "-c", launcher],
                            pass_fds=(listener.fileno(), unix.fileno()),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    listener.close()
    unix.close()
    wait_for_port(port, proc)
    peer = RawPeer(("127.0.0.1", port))
    assert isinstance(attach(peer), m.Rattach)
    peer.close()
    local = RawPeer(str(sock_path))
    assert isinstance(attach(local), m.Rattach)
    local.close()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert "(systemd web)" in err and "(systemd local)" in err


def test_a_unix_listener_gets_its_socket_mode(tmp_path: Path,
                                              procs: list[subprocess.Popen[str]]) -> None:
    sock = tmp_path / "9p.sock"
    config = tmp_path / "ninep.toml"
    config.write_text('[[listen]]\nkind = "unix"\npath = "9p.sock"\nmode = "0660"\n'
                      + namespaces("unix"))
    proc = serve(procs, "--config", str(config))
    wait_for(lambda: sock.exists() or proc.poll() is not None, "the socket")
    assert stat.S_IMODE(sock.stat().st_mode) == 0o660
    peer = RawPeer(str(sock))
    assert isinstance(attach(peer), m.Rattach)
    assert read_file(peer, ("who",)) == b"unix\n"
    peer.close()


@pytest.mark.parametrize(("text", "needle"), [
    ("[[policy]]\nnamespace = 'x'\n", "[[policy]] #1: namespace: no namespace 'x'"),
    ("[namespaces.a]\nmounts = [{ path = '/', backend = 'ram', options = { bogus = 1 } }]\n"
     "[[policy]]\nnamespace = 'a'\n", "unknown option 'bogus'"),
    ("this is not toml", "not valid TOML"),
])
def test_a_bad_config_stops_the_server_before_it_listens(tmp_path: Path, text: str,
                                                         needle: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = subprocess.run([*NINEP, "serve", "--config", str(config)], capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and str(config) in lines[0], result.stderr
