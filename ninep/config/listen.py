"""Where the server listens: --listen values, [[listen]] tables and the metrics address."""

from __future__ import annotations

from dataclasses import dataclass

from ninep.clients.address import parse_address
from ninep.config.tls import TlsConfig

__all__ = ["ListenAddress", "parse_listen", "parse_metrics_address"]


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where to listen: ``tcp``/``tls`` HOST:PORT, a ``unix`` socket file (with its
    mode), ``systemd`` (sockets passed in LISTEN_FDS, by name) or ``stdio``."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    mode: int | None = None
    tls: TlsConfig | None = None
    fdname: str | None = None

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix://{self.path}"
        if self.kind in ("tcp", "tls"):
            return f"{self.kind}://{self.host}:{self.port}"
        return f"{self.kind}:{self.fdname or ''}"


def parse_listen(text: str) -> ListenAddress:
    """A --listen value: ``tcp://HOST:PORT`` (the port is not implied), ``unix:///path``
    (by the URL rules of ninep.clients.address) or ``systemd:[NAME]``; a bad one
    raises ValueError naming it."""
    if text.startswith("systemd:"):
        return ListenAddress("systemd", fdname=text.removeprefix("systemd:") or None)
    if not text.startswith(("tcp://", "unix://")):
        raise ValueError(f"--listen {text!r}: the scheme must be tcp://, unix:// or systemd:")
    address = parse_address(text, what="--listen", schemes=("tcp", "unix"), bare=False,
                            default_port=None)
    if address.scheme == "unix":
        return ListenAddress("unix", path=address.host)
    return ListenAddress("tcp", address.host, address.port)


def parse_metrics_address(text: str) -> tuple[str, str, int]:
    """``tcp://HOST:PORT`` or ``unix:///PATH`` -> (kind, host or path, port);
    ValueError naming the value otherwise."""
    try:
        address = parse_listen(text)  # the listeners' own syntax, less systemd:
    except ValueError:
        address = None
    if address is None or address.kind not in ("tcp", "unix"):
        raise ValueError(f"metrics address {text!r}: expected tcp://HOST:PORT or unix:///PATH")
    if address.kind == "unix":
        return "unix", address.path, 0
    return "tcp", address.host, address.port
