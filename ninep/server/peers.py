"""Who a new connection's peer is: SO_PEERCRED, the TLS certificate, the address."""

from __future__ import annotations

import asyncio
import socket
import struct

from ninep.vfs.policy import Peer

__all__ = ["address_text", "peer_of"]


def peer_of(transport: asyncio.BaseTransport, kind: str) -> Peer:
    """The Peer of a new connection: SO_PEERCRED for UNIX sockets (also a socket
    handed over as stdin), the verified client certificate for TLS."""
    sock = transport.get_extra_info("socket")
    address = transport.get_extra_info("peername")
    if sock is not None and getattr(sock, "family", None) == socket.AF_UNIX:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, gid = struct.unpack("3i", raw)
            return Peer(kind, str(address or "local"), uid, gid, pid)
        except OSError:
            pass
    cert = None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is not None:
        from ninep.config.tls import cert_identity
        cert = cert_identity(ssl_object.getpeercert(binary_form=True))
    return Peer(kind, address_text(address), cert=cert)


def address_text(address: object) -> str:
    """A socket address as logs and policies show it: HOST:PORT, [V6]:PORT, a path."""
    if isinstance(address, tuple):
        host = f"[{address[0]}]" if ":" in str(address[0]) else address[0]
        return f"{host}:{address[1]}"
    return str(address or "local")
