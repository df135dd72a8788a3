"""The server: listeners (TCP, UNIX, TLS, systemd sockets, stdio), each connection a
transport.Connection, and reloading the configuration on SIGHUP."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import ssl
import stat
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ninep.config.listen import ListenAddress, parse_listen
from ninep.config.tls import TlsConfig, make_server_context
from ninep.server.admission import Admission, ConnectionLimits, Ticket
from ninep.server.auth import authorized_key_ids
from ninep.server.peers import address_text
from ninep.server.session import ServerLimits, forget_creds, start_lookups
from ninep.server.stdio import serve_pipes
from ninep.server.transport import Connection
from ninep.vfs.locks import LockManager
from ninep.vfs.policy import Policy

if TYPE_CHECKING:
    from ninep.config.file import Config

__all__ = ["ListenAddress", "Server", "bind_listener", "parse_listen", "systemd_sockets"]

log = logging.getLogger(__name__)


_inherited: list[tuple[str, socket.socket]] | None = None


def systemd_sockets() -> list[tuple[str, socket.socket]]:
    """Listening sockets passed by systemd socket activation (LISTEN_PID, LISTEN_FDS,
    LISTEN_FDNAMES; sd_listen_fds(3)), once: the variables are then removed."""
    global _inherited
    if _inherited is None:
        _inherited = []
        if os.environ.get("LISTEN_PID") == str(os.getpid()):
            count = int(os.environ.get("LISTEN_FDS", "0") or 0)
            names = os.environ.get("LISTEN_FDNAMES", "").split(":")
            for index in range(count):
                name = names[index] if index < len(names) else ""
                try:
                    sock = socket.socket(fileno=3 + index)
                except OSError as exc:
                    raise ValueError(f"LISTEN_FDS: descriptor {3 + index} is not a socket: "
                                     f"{exc.strerror}") from None
                _inherited.append((name or "unknown", sock))
        for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(var, None)
    return _inherited


@dataclass(eq=False)
class _TlsListener:
    """A TLS listening socket with its own accept loop, so that a refused handshake is
    logged with the peer's address (asyncio's TLS servers drop it silently). A reload
    swaps the SSLContext for new connections; connections made keep going."""

    server: Server
    tls: TlsConfig
    sock: socket.socket
    context: ssl.SSLContext
    accepting: asyncio.Task[None] | None = None
    handshakes: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def handshake_timeout(self) -> float:
        """The server's limit (--handshake-timeout), which also bounds the wait for a
        Tversion once the handshake is done (transport.py)."""
        return self.server.limits.handshake_timeout

    def start(self) -> None:
        self.sock.setblocking(False)
        self.accepting = asyncio.get_running_loop().create_task(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(self.sock)
            except OSError as exc:  # out of descriptors, ...: try again in a second
                log.warning("tls listener %s: accept failed: %s", self.tls.cert, exc)
                await asyncio.sleep(1.0)
                continue
            # counted from accept, so handshakes in progress count too; a refused
            # peer costs no handshake
            ticket = self.server.admission.admit(address, "tls")
            if ticket is None:
                conn.close()
                continue
            task = loop.create_task(self._handshake(conn, address, self.context, ticket))
            self.handshakes.add(task)  # the loop holds tasks weakly
            task.add_done_callback(self.handshakes.discard)

    async def _handshake(self, conn: socket.socket, address: object,
                         context: ssl.SSLContext, ticket: Ticket) -> None:
        """Once the handshake is done the connection holds ``ticket``; a failed one
        gives it back here."""
        where = address_text(address)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: self.server.connection("tls", ticket), conn, ssl=context,
                ssl_handshake_timeout=self.handshake_timeout)
        except ssl.SSLError as exc:
            log.warning("%s: TLS handshake refused: %s", where, exc.reason or exc)
            conn.close()
            ticket.release()
        except (OSError, TimeoutError) as exc:  # gone, or too slow
            log.warning("%s: TLS handshake failed: %s", where,
                        _handshake_failure(exc, self.handshake_timeout))
            conn.close()
            ticket.release()
        except BaseException:  # the server stops
            conn.close()
            ticket.release()
            raise

    async def close(self) -> None:
        tasks = [t for t in (self.accepting, *self.handshakes) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.sock.close()


def _handshake_failure(exc: BaseException, timeout: float) -> str:
    """Why a handshake failed, never empty: a client that closes mid-handshake (as
    one does that refuses our certificate without sending an alert) surfaces as a
    bare ConnectionResetError(), and a timeout may come without a message."""
    text = str(exc)
    if text:
        return text
    if isinstance(exc, TimeoutError):
        return f"no handshake within {timeout:g} s"
    if isinstance(exc, ConnectionError):
        return ("the client closed the connection during the handshake "
                "(it may have refused the server's certificate)")
    return type(exc).__name__


class Server:
    """Serves the current Policy on any number of listeners."""

    def __init__(self, policy: Policy, limits: ServerLimits | None = None,
                 config_path: Path | None = None,
                 connections: ConnectionLimits | None = None) -> None:
        self.policy = policy
        self.limits = limits or ServerLimits()
        self.admission = Admission(connections)
        self.locks = LockManager()
        self.config_path = config_path
        self._servers: list[asyncio.AbstractServer] = []
        self._tls: list[_TlsListener] = []
        self._unix_paths: list[str] = []
        self._reloading = asyncio.Lock()
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        start_lookups()
        self._network_listeners: list[tuple[str, str]] = []  # (where, "tcp" or "tls")
        # a worker's (ninep/workers/owner.py): how the file read at a reload is served
        # here, and what follows a reload that succeeded
        self.config_filter: Callable[[Config], Config] | None = None
        self.on_reload: list[Callable[[Policy], Awaitable[None]]] = []

    def current_policy(self) -> Policy:
        return self.policy

    def connection(self, kind: str, ticket: Ticket | None = None) -> Connection:
        """A new connection's protocol; ``ticket``: its place, if the listener took
        it at accept (TLS), else it is admitted when made."""
        conn = Connection(self.current_policy, self.locks, self.limits, kind,
                          self.admission, ticket)
        self._connections.add(conn)  # a reload reviews its attaches
        return conn

    async def listen(self, address: ListenAddress) -> list[str]:
        """Start listening; returns the bound addresses (the real port when 0 was asked)."""
        if address.kind == "systemd":
            return await self._listen_inherited(address)
        loop = asyncio.get_running_loop()
        if address.kind == "tls":
            assert address.tls is not None
            sock = socket.create_server((address.host, address.port),
                                        family=_family(address.host))
            self._listen_tls(sock, address.tls)
            bound = [f"tls://{sock.getsockname()[0]}:{sock.getsockname()[1]}"]
            self._note_network_listener(bound[0], "tls", sock, address.tls)
        elif address.kind == "tcp":
            srv = await loop.create_server(lambda: self.connection("tcp"), address.host,
                                           address.port, reuse_address=True)
            bound = [f"tcp://{s.getsockname()[0]}:{s.getsockname()[1]}" for s in srv.sockets]
            for where, listening in zip(bound, srv.sockets, strict=True):
                self._note_network_listener(where, "tcp", listening, None)
        elif address.kind == "unix":
            remove_stale_socket(address.path)
            srv = await loop.create_unix_server(lambda: self.connection("unix"), address.path)
            self._unix_paths.append(address.path)
            if address.mode is not None:
                os.chmod(address.path, address.mode)
            bound = [f"unix://{address.path}"]
        else:
            raise ValueError(f"listener {address}: serve stdio with Server.serve_stdio")
        if address.kind != "tls":
            self._servers.append(srv)
        for where in bound:
            log.info("listening on %s", where)
        return bound

    def _note_network_listener(self, where: str, transport: str, sock: socket.socket,
                               tls: TlsConfig | None) -> None:
        """Remember a listener that peers beyond this host can reach and that does not
        require a client certificate, and warn now if it is open to anyone."""
        host = str(sock.getsockname()[0]).split("%")[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return
        if ip.is_loopback or (tls is not None and tls.client_cert == "required"):
            return
        self._network_listeners.append((where, transport))
        self._warn_if_open([(where, transport)])

    def _warn_if_open(self, listeners: list[tuple[str, str]]) -> None:
        """Running as root, name each policy that lets anyone who reaches a network
        listener attach without authenticating: a bug above the kernel then gives
        any such peer what root can do (diod warns likewise when run without auth)."""
        if os.geteuid() != 0:
            return
        for where, transport in listeners:
            for rule in self.policy.open_rules(transport):
                log.warning("running as root, and policy %r lets anyone who reaches %s "
                            "attach without authenticating (match it on key, cert_* or a "
                            "UNIX peer_uid to require proof)", rule.name, where)

    def _listen_tls(self, sock: socket.socket, tls: TlsConfig) -> None:
        listener = _TlsListener(self, tls, sock, make_server_context(tls))
        self._tls.append(listener)
        listener.start()

    async def _listen_inherited(self, address: ListenAddress) -> list[str]:
        return await self.adopt(address, bind_listener(address))

    async def adopt(self, address: ListenAddress,
                    socks: list[tuple[str, socket.socket]]) -> list[str]:
        """Accept on listening sockets bound elsewhere (by systemd, or by the workers'
        supervisor, ninep/workers/): ``(name, socket)`` pairs, the name for the log.
        A UNIX socket's file is left to whoever bound it."""
        loop = asyncio.get_running_loop()
        bound = []
        for name, sock in socks:
            if sock.family == socket.AF_UNIX:
                srv = await loop.create_unix_server(lambda: self.connection("unix"), sock=sock)
                self._servers.append(srv)
                where = f"unix://{sock.getsockname()} ({name})"
            elif address.tls is not None:
                self._listen_tls(sock, address.tls)
                host, port = sock.getsockname()[:2]
                where = f"tls://{host}:{port} ({name})"
                self._note_network_listener(where, "tls", sock, address.tls)
            else:
                srv = await loop.create_server(lambda: self.connection("tcp"), sock=sock)
                self._servers.append(srv)
                host, port = sock.getsockname()[:2]
                where = f"tcp://{host}:{port} ({name})"
                self._note_network_listener(where, "tcp", sock, None)
            log.info("listening on %s", where)
            bound.append(where)
        return bound

    async def serve_stdio(self) -> None:
        """Serve one connection on stdin/stdout (ssh, inetd); returns when it ends."""
        conn = self.connection("stdio")
        if stat.S_ISSOCK(os.fstat(0).st_mode):
            sock = socket.socket(fileno=os.dup(0))
            await asyncio.get_running_loop().connect_accepted_socket(lambda: conn, sock)
        else:
            await serve_pipes(conn)
        await conn.finished()

    async def reload(self) -> bool:
        """SIGHUP: re-read the TLS certificates and the config file. Everything is read
        and checked before anything changes: a reload that fails anywhere is logged and
        leaves the running configuration, certificates included, as it was."""
        async with self._reloading:  # two quick SIGHUPs apply one after the other
            return await self._reload()

    async def _reload(self) -> bool:
        from ninep.backends.registry import BackendConfigError
        from ninep.config.file import load_config
        from ninep.config.runtime import BackendPool, build_policy
        try:
            contexts = [make_server_context(listener.tls) for listener in self._tls]
        except (OSError, ssl.SSLError) as exc:
            log.error("reload rejected, the running configuration and certificates stay: "
                      "TLS: %s", exc)
            return False
        policy = None
        authorized: frozenset[str] = frozenset()
        if self.config_path is not None:
            try:
                config = load_config(self.config_path)
                if self.config_filter is not None:
                    config = self.config_filter(config)
                policy = await build_policy(config, self.policy)
            except (BackendConfigError, OSError) as exc:
                log.error("reload rejected, the running configuration and certificates "
                          "stay: %s", exc)
                return False
            # a key taken out of the file no longer counts for attaches it proved
            authorized = await asyncio.to_thread(authorized_key_ids, policy.authorized_keys)
        for listener, context in zip(self._tls, contexts, strict=True):
            listener.context = context
            log.info("TLS certificate %s reloaded", listener.tls.cert)
        if policy is None:
            return False
        old, self.policy = self.policy, policy
        forget_creds()  # passwd and groups are read again, as the config file was
        if isinstance(policy.resources, BackendPool):
            policy.resources.commit()
        narrowed = revoked = 0
        for conn in list(self._connections):
            if conn.session is not None:
                made_read_only, made_stale = conn.session.review(policy, authorized)
                narrowed += made_read_only
                revoked += made_stale
        for hook in self.on_reload:
            await hook(policy)
        old.retire()
        if old.users <= 0:
            await old.close()
        log.info("reloaded %s: %d policies; attaches made before: %d made read-only, "
                 "%d revoked; listeners change only with a restart",
                 self.config_path, len(policy.rules), narrowed, revoked)
        self._warn_if_open(self._network_listeners)
        return True

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
        for srv in self._servers:
            await srv.wait_closed()
        for listener in self._tls:
            await listener.close()
        self._servers.clear()
        self._tls.clear()
        for path in self._unix_paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        self._unix_paths.clear()


def bind_listener(address: ListenAddress, backlog: int = 1024) -> list[tuple[str, socket.socket]]:
    """Bind and listen on ``address`` without serving it: the workers' supervisor does
    this once and every worker accepts on the same sockets (:meth:`Server.adopt`).
    Returns ``(name, socket)`` pairs; systemd's sockets are returned as passed."""
    if address.kind == "systemd":
        socks = [(f"systemd {n}", s) for n, s in systemd_sockets()
                 if address.fdname is None or n == address.fdname]
        if not socks:
            raise ValueError(f"listener {address}: no socket was passed by systemd "
                             "(LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES)")
        return socks
    if address.kind in ("tcp", "tls"):
        sock = socket.create_server((address.host, address.port), family=_family(address.host),
                                    backlog=backlog)
        return [(address.kind, sock)]
    if address.kind == "unix":
        remove_stale_socket(address.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(address.path)
            if address.mode is not None:
                os.chmod(address.path, address.mode)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return [("unix", sock)]
    raise ValueError(f"listener {address}: cannot be shared by workers")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def remove_stale_socket(path: str, what: str = "--listen") -> None:
    """Remove a socket file left by an earlier run; refuse to remove anything else.

    ``what`` names the option the path came from in the error.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ValueError(f"{what} unix://{path}: exists and is not a socket")
    os.unlink(path)
