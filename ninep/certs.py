"""``ninep cert``: a small CA, server and client certificates, fingerprints, and Tauth key pairs.

Certificate keys are ECDSA P-256 by default (every TLS stack accepts them) or
Ed25519 (``--key-type ed25519``; OpenSSL 1.1.1+ accepts it in TLS 1.3 and 1.2,
Python's ``ssl`` included). Private keys are written PKCS#8 PEM, mode 0600.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertFiles",
    "add_cert_commands",
    "cert_fingerprint",
    "make_ca",
    "make_client",
    "make_server",
    "make_ssh_keypair",
]

CertKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
KEY_TYPES = ("p256", "ed25519")
CA_CERT, CA_KEY = "ca.crt", "ca.key"


@dataclass(frozen=True, slots=True)
class CertFiles:
    """What one ``ninep cert`` command wrote."""

    cert: Path
    key: Path
    fingerprint: str


def cert_fingerprint(der_or_pem: bytes) -> str:
    """Lowercase hex SHA-256 of the certificate's DER (64 digits, no colons): what policies match.

    The same digest ``openssl x509 -noout -fingerprint -sha256`` prints with colons.
    """
    der = der_or_pem
    if b"-----BEGIN" in der_or_pem:
        der = x509.load_pem_x509_certificate(der_or_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _new_key(key_type: str) -> CertKey:
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"--key-type {key_type!r}: expected one of {', '.join(KEY_TYPES)}")


def _hash_for(key: CertKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _write_private(path: Path, data: bytes) -> None:
    """Create (or replace) a private file with mode 0600 from the first byte on."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an umask or an older file must not widen it
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_key(path: Path, key: CertKey) -> None:
    _write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


def _write_cert(path: Path, cert: x509.Certificate) -> str:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_fingerprint(cert.public_bytes(serialization.Encoding.DER))


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    if days < 1:
        raise ValueError(f"--days {days}: must be at least 1")
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)


def _name(cn: str) -> x509.Name:
    if not cn:
        raise ValueError("--name: must not be empty")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(out: Path, name: str = "ninep CA", days: int = 3650,
            key_type: str = "p256") -> CertFiles:
    """A self-signed CA (ca.crt, ca.key) in ``out``; refuses to overwrite an existing one."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / CA_KEY).exists():
        raise ValueError(f"{out / CA_KEY}: already exists; refusing to replace a CA")
    key = _new_key(key_type)
    start, end = _validity(days)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, _hash_for(key)))
    _write_key(out / CA_KEY, key)
    return CertFiles(out / CA_CERT, out / CA_KEY, _write_cert(out / CA_CERT, cert))


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, CertKey]:
    try:
        cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--ca {ca_dir}: cannot load {CA_CERT}/{CA_KEY}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError(f"--ca {ca_dir}: {CA_KEY} is neither ECDSA nor Ed25519")
    return cert, key


def _issue(ca_dir: Path, out: Path, stem: str, cn: str, days: int, key_type: str,
           usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> CertFiles:
    ca_cert, ca_key = _load_ca(ca_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = _new_key(key_type)
    start, end = _validity(days)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(cn)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(min(end, ca_cert.not_valid_after_utc))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, False, ec_key_agreement(key), False, False,
                                            False, False, False, False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, _hash_for(ca_key))
    _write_key(out / f"{stem}.key", key)
    return CertFiles(out / f"{stem}.crt", out / f"{stem}.key",
                     _write_cert(out / f"{stem}.crt", cert))


def ec_key_agreement(key: CertKey) -> bool:
    """ECDSA keys may also do ECDH in TLS 1.2 static suites; harmless to allow, as openssl does."""
    return isinstance(key, ec.EllipticCurvePrivateKey)


def make_server(ca_dir: Path, out: Path, name: str, ips: list[str] | None = None,
                dns: list[str] | None = None, days: int = 825,
                key_type: str = "p256") -> CertFiles:
    """A server certificate for ``name`` (also a SAN: a DNS name, or an IP if it parses as one)."""
    sans: list[x509.GeneralName] = []
    for text in [name, *(dns or [])]:
        sans.append(_ip_or_dns(text))
    for text in ips or []:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(text)))
        except ValueError:
            raise ValueError(f"--ip {text!r}: not an IP address") from None
    return _issue(ca_dir, out, "server", name, days, key_type, ExtendedKeyUsageOID.SERVER_AUTH,
                  list(dict.fromkeys(sans)))


def _ip_or_dns(text: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName(text)


def make_client(ca_dir: Path, out: Path, name: str, days: int = 825,
                key_type: str = "p256") -> CertFiles:
    """A client certificate whose subject CN is ``name`` (what policies match as the CN)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "client"
    return _issue(ca_dir, out, stem, name, days, key_type, ExtendedKeyUsageOID.CLIENT_AUTH, [])


def make_ssh_keypair(out: Path, comment: str = "") -> tuple[Path, Path, str]:
    """An Ed25519 key pair in OpenSSH format for Tauth: ``out`` (0600) and ``out.pub``.

    Returns both paths and the key's OpenSSH fingerprint (``SHA256:...``).
    """
    from ninep.wire.auth import key_fingerprint, public_key_blob

    if out.exists():
        raise ValueError(f"{out}: already exists; refusing to replace a private key")
    key = ed25519.Ed25519PrivateKey.generate()
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_private(out, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    pub = out.with_name(out.name + ".pub")
    pub.write_bytes(public + (b" " + comment.encode() if comment else b"") + b"\n")
    return out, pub, key_fingerprint(public_key_blob(key.public_key()))


# --- the command line ----------------------------------------------------------

def add_cert_commands(subparsers: Any) -> None:
    """Add ``ninep cert {ca,server,client,fingerprint,keygen}`` to ``ninep``'s subparsers."""
    cert = subparsers.add_parser("cert", help="make TLS certificates and Tauth keys",
                                 description="Make a small CA, server and client certificates "
                                             "(TLS) and Ed25519 key pairs (Tauth).")
    sub = cert.add_subparsers(dest="cert_command", required=True)
    ca = sub.add_parser("ca", help="create a certificate authority (ca.crt, ca.key)")
    ca.add_argument("--out", required=True, type=Path, metavar="DIR",
                    help="directory for ca.crt and ca.key (an existing CA is not overwritten)")
    ca.add_argument("--name", default="ninep CA", help="the CA's common name")
    ca.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    server = sub.add_parser("server", help="issue a server certificate (server.crt, server.key)")
    server.add_argument("--name", required=True, metavar="HOST",
                        help="the server's host name or IP (CN and SAN)")
    server.add_argument("--ip", action="append", default=[], help="another IP SAN (repeatable)")
    server.add_argument("--dns", action="append", default=[], help="another DNS SAN (repeatable)")
    client = sub.add_parser("client", help="issue a client certificate (CN.crt, CN.key)")
    client.add_argument("--name", required=True, metavar="CN", help="the client's common name")
    for issued in (server, client):
        issued.add_argument("--ca", required=True, type=Path, metavar="DIR",
                            help="the directory made by 'ninep cert ca'")
        issued.add_argument("--out", required=True, type=Path, metavar="DIR",
                            help="directory for the certificate and its key")
        issued.add_argument("--days", type=int, default=825,
                            help="validity in days (default 825)")
    for p in (ca, server, client):
        p.add_argument("--key-type", choices=KEY_TYPES, default="p256",
                       help="kind of private key (default p256)")
    fp = sub.add_parser("fingerprint", help="print a certificate's SHA-256 fingerprint")
    fp.add_argument("file", type=Path, metavar="FILE", help="a PEM certificate")
    keygen = sub.add_parser("keygen", help="create an Ed25519 key pair for Tauth (OpenSSH format)")
    keygen.add_argument("--out", required=True, type=Path, metavar="FILE",
                        help="private key file; the public key goes to FILE.pub")
    keygen.add_argument("--comment", default="", help="comment written after the public key")
    cert.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        for line in _execute(args):
            print(line)
    except (ValueError, OSError) as exc:
        print(f"ninep cert {args.cert_command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _execute(args: argparse.Namespace) -> list[str]:
    command = args.cert_command
    if command == "fingerprint":
        return [cert_fingerprint(args.file.read_bytes())]
    if command == "keygen":
        private, public, fingerprint = make_ssh_keypair(args.out, args.comment)
        return [f"wrote {private}", f"wrote {public}", f"fingerprint {fingerprint}"]
    if command == "ca":
        files = make_ca(args.out, args.name, args.days, args.key_type)
    elif command == "server":
        files = make_server(args.ca, args.out, args.name, args.ip, args.dns, args.days,
                            args.key_type)
    else:
        files = make_client(args.ca, args.out, args.name, args.days, args.key_type)
    return [f"wrote {files.cert}", f"wrote {files.key}", f"fingerprint {files.fingerprint}"]
