"""Where a 9P server is: the one parser of addresses, for clients, the mount helper and listeners."""

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


def parse_address(text: str, *, what: str = "server", schemes: tuple[str, ...] = SCHEMES,
                  bare: bool = True, default_port: int | None = DEFAULT_PORT) -> ServerAddress:
    """``tcp://HOST[:PORT]``, ``tls://HOST[:PORT]``, ``unix:///path``, and when ``bare``
    the forms ``ninep mount`` and diod's tools accept: ``HOST[:PORT]``, ``[V6]:PORT``
    (TCP) and ``/path`` (a UNIX socket). The port defaults to ``default_port`` (None:
    it must be given). The one parser of addresses: the client's, the mount
    helper's and the server's listeners' (``what`` names the value in errors)."""
    if bare and text.startswith("/"):
        return ServerAddress("unix", text)
    parts = urlsplit(text if "://" in text or not bare else f"tcp://{text}")
    if parts.scheme not in schemes:
        *rest, last = [f"{s}://" for s in schemes]
        raise ValueError(f"{what} {text!r}: the scheme must be "
                         + (f"{', '.join(rest)} or {last}" if rest else last))
    if parts.scheme == "unix":
        path = parts.netloc + parts.path
        if not path:
            raise ValueError(f"{what} {text!r} needs a socket path: unix:///path")
        return ServerAddress("unix", path)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{what} {text!r}: the port must be a number below 65536") from None
    port = default_port if port is None else port
    if not parts.hostname or parts.path not in ("", "/") or port is None:
        form = f"{parts.scheme}://HOST:PORT" + (" or HOST:PORT" if bare else "")
        raise ValueError(f"{what} {text!r}: expected {form}")
    return ServerAddress(parts.scheme, parts.hostname, port)


def parse_server_url(url: str) -> tuple[str, str, int]:
    """(scheme, host-or-path, port) of :func:`parse_address`; port 0 for unix."""
    address = parse_address(url)
    return address.scheme, address.host, address.port
