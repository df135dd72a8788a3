"""``python -m ninep.healthcheck [ADDRESS]``: exit 0 when a 9P2000.L server answers there.

The container's HEALTHCHECK (docker/Dockerfile): a Tversion must come back as
Rversion 9P2000.L within the timeout, so a process that holds the port but no
longer serves (a stuck event loop) is unhealthy too, not only a closed port.
It attaches nothing, so it needs no policy and leaves no trace but a
debug-level connection line.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Sequence

from ninep.wire import messages as m

__all__ = ["DEFAULT_ADDRESS", "check", "main"]

DEFAULT_ADDRESS = "127.0.0.1:5640"
_MSIZE = 8192


def check(host: str, port: int, timeout: float = 5.0) -> str:
    """Tversion to ``host:port``; the version answered, or OSError/ConnectionError."""
    with socket.create_connection((host, port), timeout) as sock:
        sock.sendall(m.encode(m.NOTAG, m.Tversion(_MSIZE, m.VERSION_9P2000L)))
        header = _recv_exactly(sock, 4)
        (size,) = struct.unpack("<I", header)
        if not m.HEADER_SIZE <= size <= _MSIZE:
            raise ConnectionError(f"not a 9P reply (size {size})")
        _, reply = m.decode(header + _recv_exactly(sock, size - 4))
    if not isinstance(reply, m.Rversion):
        raise ConnectionError(f"answered {type(reply).__name__}, not Rversion")
    return reply.version


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    address = args[0] if args else DEFAULT_ADDRESS
    host, _, port = address.rpartition(":")
    try:
        version = check(host.strip("[]"), int(port))
    except (OSError, ConnectionError, ValueError) as exc:
        print(f"unhealthy: {address}: {exc}", file=sys.stderr)
        return 1
    if version != m.VERSION_9P2000L:
        print(f"unhealthy: {address}: version {version!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
