"""``ninep mount``: TLS and Tauth in user space, then the kernel's v9fs gets the connected fd.

Linux's 9p client can neither speak TLS nor authenticate (it parses ``afid=``
but always attaches with NOFID). So, as diod's mount.diod does, this helper
connects, optionally wraps the socket in TLS, optionally proves a key through
Tauth and attaches with the afid, and then mounts with
``trans=fd,rfdno=N,wfdno=N``. The server remembers the proof on the connection
(ninep/server/auth.py, ConnectionProof), so the kernel's own Tversion and NOFID
attaches on that connection carry the key. For TLS the kernel gets one end of
a socketpair and a background relay process copies bytes to and from the TLS
socket until either side closes.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import errno
import os
import selectors
import signal
import socket
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ninep.clients.address import DEFAULT_PORT, parse_address
from ninep.wire import messages as m

__all__ = [
    "DEFAULT_PORT",
    "Endpoint",
    "add_mount_command",
    "authenticate",
    "connect",
    "mount_9p",
    "mount_options",
    "parse_endpoint",
    "relay",
    "spawn_relay",
    "tls_context",
]

HELPER_MSIZE = 65536
RELAY_CHUNK = 1 << 18
RELAY_BUFFER = 1 << 22  # stop reading a side while this much waits for the other
_MS_FLAGS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "sync": 16, "noatime": 1024,
             "nodiratime": 2048, "relatime": 1 << 21}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the server is: TCP host and port, or a UNIX socket path."""

    kind: str  # "tcp" or "unix"
    host: str = ""
    port: int = DEFAULT_PORT
    path: str = ""

    def __str__(self) -> str:
        return self.path if self.kind == "unix" else f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """``tcp://HOST:PORT``, ``unix:///path``, ``HOST[:PORT]``, ``[v6]:PORT`` or ``/path``:
    the client's one address parser (clients.address), so ``ninep mount`` and the
    client verbs take the same forms."""
    address = parse_address(text)
    if address.scheme == "unix":
        return Endpoint("unix", path=address.host)
    return Endpoint("tcp", address.host, address.port)


def tls_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """A client context: verify the server against ``ca`` (default: the system's roots)."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def connect(endpoint: Endpoint, tls: ssl.SSLContext | None = None,
            server_name: str | None = None, timeout: float = 30.0) -> socket.socket:
    """A connected (and, with ``tls``, handshaken) blocking socket."""
    if endpoint.kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(endpoint.path)
    else:
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=server_name or endpoint.host or None)
    return sock


def authenticate(sock: socket.socket, key: str, uname: str = "root", aname: str = "",
                 n_uname: int = 0) -> str:
    """Tversion, Tauth + exchange, Tattach with the afid, then clunk both fids: the
    client library's requests, one at a time, over a dup of ``sock`` (a plain stream
    socket: with TLS, the relay's end), so nothing is left buffered for the kernel.

    Returns the proven key's fingerprint. The server keeps the proof for the
    connection; the kernel's NOFID attaches for ``aname`` then carry it.
    """
    if isinstance(sock, ssl.SSLSocket):  # its TLS state cannot be shared with asyncio
        raise ValueError("authenticate over the relay's end of a TLS connection (spawn_relay)")
    return asyncio.run(_prove(sock.dup(), key, uname, aname, n_uname))


async def _prove(sock: socket.socket, key: str, uname: str, aname: str, n_uname: int) -> str:
    from ninep.clients.auth import authenticate as prove_key
    from ninep.clients.auth import load_key
    from ninep.clients.client import Client
    from ninep.wire.auth import key_fingerprint, public_key_blob

    private = load_key(key)
    fingerprint = key_fingerprint(public_key_blob(private.public_key()))
    client = await Client.over_socket(sock, HELPER_MSIZE)
    try:
        try:
            afid = await prove_key(client, private, uname, aname, n_uname)
        except PermissionError:
            raise PermissionError(errno.EACCES, f"the server refused the key {key}") from None
        if afid == m.NOFID:
            raise PermissionError(errno.EACCES, "the server asks for no key (Tauth: ENOENT)")
        try:
            tree = await client.attach(uname, aname, n_uname, afid=afid)
        except PermissionError:
            raise PermissionError(errno.EACCES, f"the key {fingerprint} was accepted, but "
                                  f"no policy gives it aname {aname!r}") from None
        await tree.close()
        await client.call(m.Tclunk(afid), m.Rclunk)
    finally:
        await client.close()  # the dup only: ``sock`` stays connected for the kernel
    return fingerprint


def mount_options(fd: int, aname: str = "", uname: str = "", extra: str = "") -> tuple[int, str]:
    """mount(2) flags and the v9fs data string for a connected fd.

    Generic options (ro, nosuid, ...) become flags; the rest go to v9fs. Options
    the helper owns (trans, rfdno, wfdno, port) may not be given in ``extra``.
    """
    flags = 0
    data = [f"trans=fd,rfdno={fd},wfdno={fd}", "version=9p2000.L"]
    if aname:
        data.append(f"aname={aname}")
    if uname:
        data.append(f"uname={uname}")
    for option in filter(None, extra.split(",")):
        name = option.split("=", 1)[0]
        if name in ("trans", "rfdno", "wfdno", "port", "version"):
            raise ValueError(f"-o {option}: set by ninep mount itself")
        if name in ("aname", "uname"):
            raise ValueError(f"-o {option}: use --{name}")
        if option in _MS_FLAGS:
            flags |= _MS_FLAGS[option]
        elif option == "rw":
            flags &= ~_MS_FLAGS["ro"]
        else:
            data.append(option)
    return flags, ",".join(data)


def mount_9p(source: str, target: str, flags: int, data: str) -> None:
    """mount(2) of type 9p; the fds named in ``data`` must be open in this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), b"9p", ctypes.c_ulong(flags),
                  data.encode()) != 0:
        code = ctypes.get_errno()
        hint = " (is the 9p module loaded?)" if code == errno.ENODEV else ""
        raise OSError(code, f"mount {target}: {os.strerror(code)}{hint}")


# --- the TLS relay ----------------------------------------------------------------

def relay(tls: socket.socket, plain: socket.socket) -> None:
    """Copy bytes both ways until either side closes; one thread, non-blocking.

    A TLS socket may hold decrypted bytes that select() cannot see (``pending``),
    so those are drained before waiting again.
    """
    tls.setblocking(False)
    plain.setblocking(False)
    to_plain, to_tls = bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    try:
        while True:
            if not _pump_once(sel, tls, plain, to_plain, to_tls):
                return
    finally:
        sel.close()


def _pump_once(sel: selectors.BaseSelector, tls: socket.socket, plain: socket.socket,
               to_plain: bytearray, to_tls: bytearray) -> bool:
    _watch(sel, tls, len(to_plain) < RELAY_BUFFER, bool(to_tls))
    _watch(sel, plain, len(to_tls) < RELAY_BUFFER, bool(to_plain))
    pending = (isinstance(tls, ssl.SSLSocket) and tls.pending() > 0
               and len(to_plain) < RELAY_BUFFER)
    ready = {key.fileobj: events for key, events in sel.select(0 if pending else None)}
    tls_readable = pending or ready.get(tls, 0) & selectors.EVENT_READ
    if tls_readable and not _read_into(tls, to_plain):
        _flush(plain, to_plain)
        return False
    if ready.get(plain, 0) & selectors.EVENT_READ and not _read_into(plain, to_tls):
        _flush(tls, to_tls)
        return False
    _write_from(plain, to_plain)
    _write_from(tls, to_tls)
    return True


def _watch(sel: selectors.BaseSelector, sock: socket.socket, read: bool, write: bool) -> None:
    events = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)
    try:
        key = sel.get_key(sock)
    except KeyError:
        if events:
            sel.register(sock, events)
        return
    if not events:
        sel.unregister(sock)
    elif key.events != events:
        sel.modify(sock, events)


def _read_into(sock: socket.socket, buf: bytearray) -> bool:
    """Read what is there into ``buf``; False at end of stream or on a reset."""
    try:
        data = sock.recv(RELAY_CHUNK)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return True
    except (ConnectionError, ssl.SSLError):
        return False
    if not data:
        return False
    buf += data
    return True


def _write_from(sock: socket.socket, buf: bytearray) -> None:
    if not buf:
        return
    try:
        sent = sock.send(buf)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return
    del buf[:sent]


def _flush(sock: socket.socket, buf: bytearray) -> None:
    """Deliver what is left before closing (best effort, blocking)."""
    try:
        sock.setblocking(True)
        sock.sendall(buf)
    except OSError:
        pass


def spawn_relay(tls: socket.socket) -> tuple[socket.socket, int]:
    """Fork a relay process for ``tls``; returns the kernel's end of a socketpair and its pid.

    The child detaches (new session, stdio on /dev/null) and exits when either
    side closes, i.e. when the file system is unmounted or the server goes away.
    """
    kernel_end, relay_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child (tested through its effects)
        code = 0
        try:
            kernel_end.close()
            os.setsid()
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            _close_all_but(tls.fileno(), relay_end.fileno())
            relay(tls, relay_end)
        except BaseException:
            code = 1
        os._exit(code)
    relay_end.close()
    tls.close()  # the child has its own copy
    return kernel_end, pid


def _close_all_but(*keep: int) -> None:
    """Drop every inherited fd above stdio except ``keep``: a relay holding a copy of
    some other socket (the caller's, a listener) would keep that connection open."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


# --- the command line ----------------------------------------------------------------

def add_mount_command(subparsers: Any) -> None:
    """Add ``ninep mount`` to ``ninep``'s subparsers."""
    p = subparsers.add_parser("mount", help="mount a server with the kernel's 9p client (root)",
                              description="Connect (TLS and Tauth in user space when asked) "
                                          "and mount with trans=fd.")
    p.add_argument("server", metavar="SERVER",
                   help="HOST[:PORT] (default port 5640), tcp://HOST:PORT or unix:///PATH")
    p.add_argument("mountpoint", metavar="MOUNTPOINT", help="directory to mount on")
    p.add_argument("--tls", action="store_true", help="speak TLS (a relay process stays)")
    p.add_argument("--ca", help="CA certificate to verify the server (default: system roots)")
    p.add_argument("--cert", help="client certificate (PEM)")
    p.add_argument("--key", help="private key of --cert")
    p.add_argument("--server-name", help="name to verify in the server certificate")
    p.add_argument("--auth-key", type=Path, metavar="FILE",
                   help="Ed25519 private key proved through Tauth")
    p.add_argument("--aname", default="", help="the tree to attach")
    p.add_argument("--uname", default="", help="user name of the attach (default root)")
    p.add_argument("-o", dest="options", default="", metavar="OPTS",
                   help="more mount options: ro, msize=N, cache=loose, access=user, ...")
    p.add_argument("--source", metavar="NAME",
                   help="the source mount(2) records, shown by findmnt (default 9p:SERVER)")
    p.add_argument("-f", "--fake", action="store_true",
                   help="connect, handshake and authenticate, but do not mount (mount(8)'s -f)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        endpoint = parse_endpoint(args.server)
        if not args.tls and (args.ca or args.cert or args.key):
            raise ValueError("--ca, --cert and --key need --tls")
        mount_options(0, args.aname, args.uname, args.options)  # bad -o fails before connecting
        tls = tls_context(args.ca, args.cert, args.key) if args.tls else None
        sock = connect(endpoint, tls, args.server_name)
        sock.settimeout(None)
        pid = 0
        if tls is not None:  # from here on 9P goes through the relay, Tauth included
            sock, pid = spawn_relay(sock)
        try:
            _authenticate_and_mount(sock, endpoint, args, pid)
        except BaseException:
            if pid:
                os.kill(pid, signal.SIGTERM)
            raise
        finally:
            sock.close()  # the kernel holds its own reference once mounted
    except (ValueError, OSError, ConnectionError, ssl.SSLError) as exc:
        print(f"ninep mount: {exc}", file=sys.stderr)
        return 1
    return 0


def _authenticate_and_mount(sock: socket.socket, endpoint: Endpoint,
                            args: argparse.Namespace, pid: int) -> None:
    if args.auth_key is not None:
        fingerprint = authenticate(sock, str(args.auth_key), args.uname or "root", args.aname)
        print(f"ninep mount: key {fingerprint} accepted", file=sys.stderr)
    if args.fake:
        print(f"ninep mount: {endpoint} answered; not mounted on {args.mountpoint} (-f)")
        return
    source = args.source or f"9p:{endpoint}"
    flags, data = mount_options(sock.fileno(), args.aname, args.uname, args.options)
    mount_9p(source, args.mountpoint, flags, data)
    print(f"mounted {source} on {args.mountpoint}" + (f" (TLS relay pid {pid})" if pid else ""))
