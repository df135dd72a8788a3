"""Helpers for the policy tests: a configured server in a thread, test certificates, TLS peers."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ninep.config.file import load_config
from ninep.config.runtime import build_policy
from ninep.server.listeners import Server
from ninep.wire import messages as m
from tests.conftest import RawPeer


@dataclass
class ConfiguredServer:
    """A server running a config file on its own event loop thread."""

    server: Server
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    bound: dict[str, list[str]]

    def port(self, kind: str = "tcp") -> int:
        return int(self.bound[kind][0].rsplit(":", 1)[1])

    def call(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_configured(path: Path) -> ConfiguredServer:
    """Load ``path``, build its policy and listen on every listener it names."""
    import uvloop

    loop = uvloop.new_event_loop()
    ready = threading.Event()
    thread = threading.Thread(target=lambda: (asyncio.set_event_loop(loop), ready.set(),
                                              loop.run_forever()), daemon=True)
    thread.start()
    ready.wait()

    async def boot() -> tuple[Server, dict[str, list[str]]]:
        config = load_config(path)
        server = Server(await build_policy(config), config.limits, config.path)
        bound: dict[str, list[str]] = {}
        for address in config.listeners:
            bound.setdefault(address.kind, []).extend(await server.listen(address))
        return server, bound

    server, bound = asyncio.run_coroutine_threadsafe(boot(), loop).result(30)
    return ConfiguredServer(server, loop, thread, bound)


def wait_for_log(records: Callable[[], list[logging.LogRecord]], pattern: str,
                 what: str = "") -> str:
    """The first message that matches ``pattern`` (re.match), waited for: the server
    logs from its own thread, after the client may already have seen the outcome.
    The wait is a deadline for a hung server, not a bound on speed."""
    deadline = time.monotonic() + 30
    while True:
        for record in list(records()):
            message = record.getMessage()
            if re.match(pattern, message):
                return message
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line {what or pattern!r}")
        time.sleep(0.02)


def peer_on(sock: socket.socket) -> RawPeer:
    """A RawPeer over an already connected socket (TLS, socketpair)."""
    peer = RawPeer.__new__(RawPeer)
    peer.sock = sock
    peer.buf = b""
    return peer


def attach(peer: RawPeer, aname: str = "", uname: str = "root", n_uname: int = m.NONUNAME,
           fid: int = 1, msize: int = 65536) -> m.Message:
    reply = peer.rpc(m.Tversion(msize, "9P2000.L"), tag=m.NOTAG)
    assert isinstance(reply, m.Rversion), reply
    return peer.rpc(m.Tattach(fid, m.NOFID, uname, aname, n_uname))


def read_file(peer: RawPeer, names: tuple[str, ...], root: int = 1, fid: int = 50) -> bytes:
    walked = peer.rpc(m.Twalk(root, fid, names))
    assert isinstance(walked, m.Rwalk) and len(walked.qids) == len(names), walked
    assert isinstance(peer.rpc(m.Tlopen(fid, 0)), m.Rlopen)
    reply = peer.rpc(m.Tread(fid, 0, 4096))
    assert isinstance(reply, m.Rread), reply
    peer.rpc(m.Tclunk(fid))
    return bytes(reply.data)


# --- certificates ----------------------------------------------------------

@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path, str]]  # name -> (cert, key, sha256 hex)


def make_pki(where: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1, clients alice and bob signed by the CA,
    and mallory signed by a CA the server does not trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(cn: str, key: Any, issuer: Any, issuer_key: Any, ca: bool = False,
             sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(name(cn))
                   .issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def save(stem: str, c: x509.Certificate, key: Any) -> tuple[Path, Path]:
        cpath, kpath = where / f"{stem}.pem", where / f"{stem}.key"
        cpath.write_bytes(c.public_bytes(serialization.Encoding.PEM))
        kpath.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
        return cpath, kpath

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("test CA", ca_key, name("test CA"), ca_key, ca=True)
    ca_path, _ = save("ca", ca, ca_key)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = cert("other CA", other_key, name("other CA"), other_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = cert("server", server_key, ca.subject, ca_key,
                  sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    server_paths = save("server", server, server_key)
    clients = {}
    for cn, issuer, issuer_key in (("alice", ca, ca_key), ("bob", ca, ca_key),
                                   ("mallory", other, other_key)):
        key = ec.generate_private_key(ec.SECP256R1())
        c = cert(cn, key, issuer.subject, issuer_key, sans=[x509.DNSName(f"{cn}.example")])
        cpath, kpath = save(cn, c, key)
        clients[cn] = (cpath, kpath, c.fingerprint(hashes.SHA256()).hex())
    return Pki(ca_path, server_paths[0], server_paths[1], clients)


def tls_peer(port: int, pki: Pki, client: str | None,
             maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED) -> RawPeer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = maximum
    ctx.load_verify_locations(pki.ca)
    if client is not None:
        cert, key, _ = pki.clients[client]
        ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return peer_on(ctx.wrap_socket(raw, server_hostname="127.0.0.1"))
