"""TLS for listeners: settings, the server SSLContext, and the peer's certificate identity."""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from ninep.vfs.policy import CertIdentity

__all__ = ["CLIENT_CERT_MODES", "TlsConfig", "cert_identity", "make_server_context"]

CLIENT_CERT_MODES = ("none", "optional", "required")


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """A TLS listener's files; ``client_cert`` says whether clients must show a certificate
    signed by ``client_ca``."""

    cert: Path
    key: Path
    client_ca: Path | None = None
    client_cert: str = "none"


def make_server_context(tls: TlsConfig) -> ssl.SSLContext:
    """A server context: TLS 1.2 at least (1.3 is preferred by OpenSSL when both can),
    the certificate chain, and client verification as configured. Raises OSError or
    ssl.SSLError when a file is missing or does not hold what it should."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert, tls.key)
    if tls.client_ca is not None:
        ctx.load_verify_locations(cafile=str(tls.client_ca))
    ctx.verify_mode = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                       "required": ssl.CERT_REQUIRED}[tls.client_cert]
    return ctx


def cert_identity(der: bytes | None) -> CertIdentity | None:
    """The identity policies match on, from a verified peer certificate (DER)."""
    if not der:
        return None
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if cns else None
    sans: list[str] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        sans += ext.get_values_for_type(x509.DNSName)
        sans += [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
        sans += ext.get_values_for_type(x509.RFC822Name)
        sans += ext.get_values_for_type(x509.UniformResourceIdentifier)
    return CertIdentity(str(cn) if cn is not None else None, tuple(sans),
                        hashlib.sha256(der).hexdigest())
