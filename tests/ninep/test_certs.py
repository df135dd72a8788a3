"""ninep cert: the certificates it makes work in a real TLS handshake, and only with their CA."""

from __future__ import annotations

import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ninep.certs import cert_fingerprint, make_ca, make_client, make_server, make_ssh_keypair
from ninep.cli import main
from ninep.server.auth import key_fingerprint


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
               hostname: str = "localhost") -> tuple[str, dict[str, object] | None]:
    """A TLS handshake over a real localhost TCP connection; returns (version, peer cert)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    result: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                result["peer"] = tls.getpeercert()
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            result["error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=hostname) as tls:
            assert tls.recv(2) == b"ok"
            version = tls.version() or ""
    finally:
        thread.join(10)
        listener.close()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return version, result["peer"]  # type: ignore[return-value]


def _contexts(ca: Path, server: Path, client: Path | None, client_ca: Path | None = None,
              version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> tuple[ssl.SSLContext,
                                                                        ssl.SSLContext]:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    server_ctx.maximum_version = version
    server_ctx.load_cert_chain(server / "server.crt", server / "server.key")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(client_ca or ca / "ca.crt")
    client_ctx = ssl.create_default_context(cafile=str(ca / "ca.crt"))
    client_ctx.maximum_version = version
    if client is not None:
        client_ctx.load_cert_chain(client / "alice.crt", client / "alice.key")
    return server_ctx, client_ctx


@pytest.fixture(params=["p256", "ed25519"])
def pki(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    kind = request.param
    make_ca(tmp_path / "ca", key_type=kind)
    make_server(tmp_path / "ca", tmp_path / "server", "localhost", ips=["127.0.0.1"],
                key_type=kind)
    make_client(tmp_path / "ca", tmp_path / "client", "alice", key_type=kind)
    return tmp_path


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_handshake_with_required_client_certificate(pki: Path, version: ssl.TLSVersion) -> None:
    server_ctx, client_ctx = _contexts(pki / "ca", pki / "server", pki / "client",
                                       version=version)
    negotiated, peer = _handshake(server_ctx, client_ctx)
    assert negotiated == {"TLSv1_3": "TLSv1.3", "TLSv1_2": "TLSv1.2"}[version.name]
    assert peer is not None
    subject = dict(item[0] for item in peer["subject"])  # type: ignore[index, misc]
    assert subject["commonName"] == "alice"


def test_ip_san_verifies(pki: Path) -> None:
    server_ctx, client_ctx = _contexts(pki / "ca", pki / "server", pki / "client")
    _handshake(server_ctx, client_ctx, hostname="127.0.0.1")


def test_client_without_certificate_is_refused(pki: Path) -> None:
    server_ctx, client_ctx = _contexts(pki / "ca", pki / "server", None)
    with pytest.raises((ssl.SSLError, OSError)):
        _handshake(server_ctx, client_ctx)


def test_client_certificate_of_another_ca_is_refused(pki: Path, tmp_path: Path) -> None:
    make_ca(tmp_path / "other")
    make_client(tmp_path / "other", tmp_path / "mallory", "alice")
    server_ctx, client_ctx = _contexts(pki / "ca", pki / "server", tmp_path / "mallory")
    with pytest.raises((ssl.SSLError, OSError)):
        _handshake(server_ctx, client_ctx)


def test_server_certificate_of_another_ca_is_refused(pki: Path, tmp_path: Path) -> None:
    make_ca(tmp_path / "other")
    server_ctx, _ = _contexts(pki / "ca", pki / "server", pki / "client")
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "other" / "ca.crt"))
    client_ctx.load_cert_chain(pki / "client" / "alice.crt", pki / "client" / "alice.key")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server_ctx, client_ctx)


def test_private_keys_are_0600_and_ca_is_not_replaced(pki: Path) -> None:
    for key in (pki / "ca" / "ca.key", pki / "server" / "server.key", pki / "client" / "alice.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(ValueError, match="already exists"):
        make_ca(pki / "ca")


def test_fingerprint_is_sha256_of_der(pki: Path) -> None:
    pem = (pki / "client" / "alice.crt").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    import hashlib
    assert cert_fingerprint(pem) == cert_fingerprint(der) == hashlib.sha256(der).hexdigest()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_accepts_and_verifies_them(pki: Path) -> None:
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in",
                           str(pki / "server" / "server.crt")],
                          check=True, capture_output=True, text=True).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    assert "TLS Web Server Authentication" in text
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(pki / "ca" / "ca.crt"),
                             str(pki / "client" / "alice.crt")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    fp = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in",
                         str(pki / "client" / "alice.crt")],
                        check=True, capture_output=True, text=True).stdout
    assert fp.split("=", 1)[1].strip().replace(":", "").lower() == cert_fingerprint(
        (pki / "client" / "alice.crt").read_bytes())


def test_keygen_writes_an_openssh_key_pair(tmp_path: Path) -> None:
    private, public, fingerprint = make_ssh_keypair(tmp_path / "id", comment="alice@laptop")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    kind, data, comment = public.read_text().split()
    assert (kind, comment) == ("ssh-ed25519", "alice@laptop")
    import base64
    assert key_fingerprint(base64.b64decode(data)) == fingerprint
    if shutil.which("ssh-keygen"):
        out = subprocess.run(["ssh-keygen", "-l", "-f", str(public)], check=True,
                             capture_output=True, text=True).stdout
        assert fingerprint in out
    with pytest.raises(ValueError, match="already exists"):
        make_ssh_keypair(tmp_path / "id")


def test_cli_prints_files_and_fingerprints(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "ca", "--out", str(tmp_path / "ca"), "--name", "Test CA"]) == 0
    assert main(["cert", "server", "--ca", str(tmp_path / "ca"), "--out", str(tmp_path / "s"),
                 "--name", "files.example", "--ip", "10.0.0.1", "--dns", "nas"]) == 0
    assert main(["cert", "client", "--ca", str(tmp_path / "ca"), "--out", str(tmp_path / "c"),
                 "--name", "bob"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 's' / 'server.crt'}" in out
    assert f"wrote {tmp_path / 'c' / 'bob.key'}" in out
    bob = cert_fingerprint((tmp_path / "c" / "bob.crt").read_bytes())
    assert f"fingerprint {bob}" in out
    assert main(["cert", "fingerprint", str(tmp_path / "c" / "bob.crt")]) == 0
    assert capsys.readouterr().out.strip() == bob
    assert main(["cert", "keygen", "--out", str(tmp_path / "k" / "id")]) == 0
    assert "fingerprint SHA256:" in capsys.readouterr().out
    assert main(["cert", "server", "--ca", str(tmp_path / "nope"), "--out", str(tmp_path / "x"),
                 "--name", "h"]) == 1
    assert "--ca" in capsys.readouterr().err
