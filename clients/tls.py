"""TLS for the client: a context from --ca/--cert/--tls-key, and why a handshake failed."""

from __future__ import annotations

import ssl
from typing import Final

__all__ = ["client_context", "explain_tls_error"]

# OpenSSL's X509_V_ERR_* codes (x509_vfy.h) for a server certificate we refuse.
_UNKNOWN_ISSUER: Final = frozenset({2, 18, 19, 20, 21})
_NAME_MISMATCH: Final = frozenset({62, 63, 64})
_EXPIRED: Final = 10
_NOT_YET_VALID: Final = 9

# Alerts the server sends when it refuses us (its reason as OpenSSL names it).
_REFUSALS: Final = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate "
                                         "(give --cert and --tls-key)",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the server refused the handshake (a client certificate "
                                     "is required, or no cipher is shared)",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the CA of our client certificate "
                              "(unknown CA)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server refused our client certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the server says our client certificate has expired",
    "TLSV1_ALERT_PROTOCOL_VERSION": "the server and client share no TLS version",
    "WRONG_VERSION_NUMBER": "the server does not speak TLS on this port",
    "UNEXPECTED_EOF_WHILE_READING": "the server closed the connection during the TLS handshake "
                                    "(is this a TLS listener?)",
}


def client_context(ca: str | None = None, cert: str | None = None,
                   key: str | None = None) -> ssl.SSLContext:
    """Verify the server against ``ca`` (a PEM file; default: the system's roots) and
    its name; present ``cert`` (with ``key``, or a key inside ``cert``) when given."""
    if key and not cert:
        raise ValueError("a TLS key needs its certificate (--cert)")
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        context.load_cert_chain(cert, key)
    return context


def explain_tls_error(exc: ssl.SSLError, server_name: str | None = None) -> str:
    """A sentence saying why a TLS handshake failed, for a person to act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code in _UNKNOWN_ISSUER:
            return ("TLS: the server's certificate is not signed by a CA we trust (unknown CA; "
                    "give its CA with --ca)")
        if code in _NAME_MISMATCH:
            return (f"TLS: the server's certificate is not for {server_name!r} (name mismatch; "
                    "use the name the certificate was made for)")
        if code == _EXPIRED:
            return "TLS: the server's certificate has expired"
        if code == _NOT_YET_VALID:
            return "TLS: the server's certificate is not valid yet"
        return f"TLS: the server's certificate was refused: {exc.verify_message}"
    reason = exc.reason or ""
    if reason in _REFUSALS:
        return f"TLS: {_REFUSALS[reason]}"
    if isinstance(exc, ssl.SSLEOFError):
        return f"TLS: {_REFUSALS['UNEXPECTED_EOF_WHILE_READING']}"
    return f"TLS handshake failed: {reason or exc}"
