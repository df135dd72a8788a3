"""Where a 9P server is: the one parser of server addresses the client side uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

__all__ = ["DEFAULT_PORT", "DEFAULT_SERVER", "ServerAddress", "parse_address", "parse_server_url"]

DEFAULT_PORT: Final = 5640  # ninep serve's default listener; diod's tools default to 564
DEFAULT_SERVER: Final = f"tcp://127.0.0.1:{DEFAULT_PORT}"
SCHEMES: Final = ("tcp", "tls", "unix")


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """A parsed server address: ``scheme`` is tcp, tls or unix; ``host`` is a socket
    path for unix."""

    scheme: str
    host: str
    port: int = 0

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_address(text: str) -> ServerAddress:
    """``tcp://HOST[:PORT]``, ``tls://HOST[:PORT]``, ``unix:///path``, or the forms
    ``ninep mount`` and diod's tools accept: ``HOST[:PORT]``, ``[V6]:PORT`` (TCP) and
    ``/path`` (a UNIX socket). The port defaults to 5640."""
    if text.startswith("/"):
        return ServerAddress("unix", text)
    parts = urlsplit(text if "://" in text else f"tcp://{text}")
    if parts.scheme not in SCHEMES:
        raise ValueError(f"server {text!r}: the scheme must be tcp://, tls:// or unix://")
    if parts.scheme == "unix":
        path = parts.netloc + parts.path
        if not path:
            raise ValueError(f"server {text!r} needs a socket path: unix:///path")
        return ServerAddress("unix", path)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"server {text!r}: the port must be a number below 65536") from None
    if not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"server {text!r}: expected {parts.scheme}://HOST:PORT or HOST:PORT")
    return ServerAddress(parts.scheme, parts.hostname, DEFAULT_PORT if port is None else port)


def parse_server_url(url: str) -> tuple[str, str, int]:
    """(scheme, host-or-path, port) of :func:`parse_address`; port 0 for unix."""
    address = parse_address(url)
    return address.scheme, address.host, address.port
