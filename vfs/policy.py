"""Who the client is, and which namespace an attach gets: the most specific rule that matches.

A rule's specificity is the number of match keys it sets; among equally
specific rules the first one listed wins. No match is EACCES: there is never
an implicit fallback.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import pathlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from ninep.wire.constants import NONUNAME

from .idmap import IdMap
from .namespace import Namespace
from .node import Cred
from .refusals import REFUSALS

__all__ = [
    "GROUP_MODELS",
    "KEPT",
    "READ_ONLY",
    "REVOKED",
    "SHOWN_CHARS",
    "AttachRequest",
    "CertIdentity",
    "ConnectionContext",
    "Limits",
    "Match",
    "NamespaceProvider",
    "Peer",
    "Policy",
    "Review",
    "Rule",
    "Selection",
    "namespace_identity",
    "shown",
]

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: a policy's ``groups``: the server's user database, or the client kernel's checks
GROUP_MODELS = ("host", "client")


@dataclass(frozen=True, slots=True)
class CertIdentity:
    """A verified TLS client certificate: subject CN, subjectAltNames, SHA-256 of the DER."""

    subject_cn: str | None
    sans: tuple[str, ...]
    sha256: str  # lowercase hex, no colons


@dataclass(frozen=True, slots=True)
class Peer:
    """What the transport knows of a connection's other end."""

    transport: str  # "tcp", "unix", "tls", "stdio": the listener it came through
    address: str
    uid: int | None = None  # SO_PEERCRED of a UNIX socket
    gid: int | None = None
    pid: int | None = None
    cert: CertIdentity | None = None

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The peer's IP address (TCP and TLS), None for other transports."""
        host = self.address.rsplit(":", 1)[0].strip("[]")
        try:
            return ipaddress.ip_address(host)
        except ValueError:
            return None

    def __str__(self) -> str:
        creds = f" uid={self.uid} gid={self.gid} pid={self.pid}" if self.uid is not None else ""
        cert = f" cert cn={self.cert.subject_cn!r}" if self.cert is not None else ""
        return f"{self.transport}:{self.address}{creds}{cert}"


@dataclass(frozen=True, slots=True)
class AttachRequest:
    """One Tattach: the connection's identity plus what the attach names."""

    peer: Peer
    uname: str
    aname: str
    n_uname: int
    cred: Cred
    key_ids: frozenset[str] = frozenset()  # proven by Tauth on the attach's afid

    @property
    def claimed_uid(self) -> int:
        """n_uname when given, else the uid the server's passwd gives uname (or nobody)."""
        return self.n_uname if self.n_uname != NONUNAME else self.cred.uid

    def __str__(self) -> str:
        n = -1 if self.n_uname == NONUNAME else self.n_uname
        keys = f" keys={sorted(self.key_ids)}" if self.key_ids else ""
        return f"{self.peer} uname={shown(self.uname)} n_uname={n} aname={shown(self.aname)}{keys}"


SHOWN_CHARS = 64


def shown(text: str) -> str:
    """A client's string for a log line: repr-escaped (no control characters reach
    the log) and cut to SHOWN_CHARS characters, saying how much more there was."""
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}...(+{len(text) - SHOWN_CHARS} chars)"


def normal_aname(aname: str) -> str:
    return aname.strip("/")


def _in_ranges(value: int | None, ranges: tuple[range, ...]) -> bool:
    return value is not None and any(value in r for r in ranges)


@dataclass(frozen=True, slots=True)
class Match:
    """What a rule matches on; None means "any". Every key set must match."""

    address: tuple[IPNetwork, ...] | None = None
    transport: frozenset[str] | None = None
    peer_uid: tuple[range, ...] | None = None
    peer_gid: tuple[range, ...] | None = None
    cert_cn: frozenset[str] | None = None
    cert_san: frozenset[str] | None = None
    cert_sha256: frozenset[str] | None = None
    key: frozenset[str] | None = None
    uname: frozenset[str] | None = None
    n_uname: tuple[range, ...] | None = None
    aname: frozenset[str] | None = None

    CONNECTION_KEYS = ("address", "transport", "peer_uid", "peer_gid", "cert_cn", "cert_san",
                       "cert_sha256")
    ATTACH_KEYS = ("key", "uname", "n_uname", "aname")

    @property
    def specificity(self) -> int:
        return sum(getattr(self, k) is not None for k in self.CONNECTION_KEYS + self.ATTACH_KEYS)

    def failed_key(self, request: AttachRequest) -> str | None:
        """The first key that does not match, or None when the rule matches."""
        missed = self.failed_peer_key(request.peer)
        if missed is not None:
            return missed
        if self.key is not None and not self.key & request.key_ids:
            return "key"
        if self.uname is not None and request.uname not in self.uname:
            return "uname"
        if self.n_uname is not None and not _in_ranges(request.claimed_uid, self.n_uname):
            return "n_uname"
        if self.aname is not None and normal_aname(request.aname) not in self.aname:
            return "aname"
        return None

    def failed_peer_key(self, peer: Peer) -> str | None:
        """The first connection-level key that does not match ``peer``."""
        if self.transport is not None and peer.transport not in self.transport:
            return "transport"
        if self.address is not None:
            ip = peer.ip
            if ip is None or not any(ip in net for net in self.address):
                return "address"
        if self.peer_uid is not None and not _in_ranges(peer.uid, self.peer_uid):
            return "peer_uid"
        if self.peer_gid is not None and not _in_ranges(peer.gid, self.peer_gid):
            return "peer_gid"
        return self._failed_cert_key(peer)

    def _failed_cert_key(self, peer: Peer) -> str | None:
        cert = peer.cert
        if self.cert_cn is not None and (cert is None or cert.subject_cn not in self.cert_cn):
            return "cert_cn"
        if self.cert_san is not None and (cert is None or not self.cert_san & set(cert.sans)):
            return "cert_san"
        if self.cert_sha256 is not None and (cert is None or cert.sha256 not in self.cert_sha256):
            return "cert_sha256"
        return None

    PROOF_KEYS = ("key", "cert_cn", "cert_san", "cert_sha256", "peer_uid", "peer_gid")

    def open_to_network(self, transport: str) -> bool:
        """True when a peer of ``transport`` at a non-loopback address may match without
        proving who it is (no key, certificate or UNIX peer credential asked for)."""
        if any(getattr(self, key) is not None for key in self.PROOF_KEYS):
            return False
        if self.transport is not None and transport not in self.transport:
            return False
        return self.address is None or any(
            not (net.network_address.is_loopback and net.broadcast_address.is_loopback)
            for net in self.address)

    def describe(self) -> str:
        parts = []
        for key in self.CONNECTION_KEYS + self.ATTACH_KEYS:
            value = getattr(self, key)
            if value is None:
                continue
            items = sorted(_show(v) for v in value)
            parts.append(f"{key}={','.join(items)}")
        return " ".join(parts) or "anyone"


def _show(value: object) -> str:
    if isinstance(value, range):
        return str(value.start) if len(value) == 1 else f"{value.start}-{value.stop - 1}"
    return str(value)


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits, each with a safe default: the server's own (ninep serve's
    options, a config file's [server]), and a policy's, which is the server's with
    what its ``limits`` table narrows (ninep/config/file.py parses both)."""

    max_msize: int = 1 << 20
    max_fids: int = 16384
    max_inflight: int = 256
    # seconds a new connection has for its TLS handshake, then again for a
    # Tversion that opens a session (a negotiated connection may idle for ever)
    handshake_timeout: float = 30.0
    # bytes of Txattrcreate values declared and not yet set (applied at clunk): 64
    # values of the largest size (XATTR_SIZE_MAX) at once; past it ENOMEM
    max_xattr_pending: int = 4 << 20


class ConnectionContext:
    """What one connection owns beyond its fids: connection-scoped backends and the
    namespaces built from them, closed when the connection goes."""

    def __init__(self) -> None:
        self.items: dict[object, object] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._policies: list[Policy] = []
        self.closed = False

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    def uses(self, policy: Policy) -> None:
        if policy not in self._policies:
            self._policies.append(policy)
            policy.users += 1

    async def close(self) -> None:
        """Close what the connection owns (newest first); errors are only logged."""
        self.closed = True
        closers, self._closers = self._closers[::-1], []
        for closer in closers:
            try:
                await closer()
            except Exception:
                log.exception("error while closing a connection's backend")
        self.items.clear()
        policies, self._policies = self._policies, []
        for policy in policies:
            await policy.release()


class NamespaceProvider(Protocol):
    """Builds (or finds) the namespace of one attach, e.g. from a config file's mounts."""

    name: str

    async def namespace_for(self, request: AttachRequest, cred: Cred,
                            context: ConnectionContext) -> Namespace: ...


@dataclass(frozen=True, slots=True)
class Rule:
    """Attaches that ``match`` (and whose aname is in ``anames``, None: any) get ``namespace``."""

    namespace: Namespace | NamespaceProvider
    anames: frozenset[str] | None = None
    name: str = "rule"
    match: Match = field(default_factory=Match)
    read_only: bool = False
    idmap: IdMap = field(default_factory=IdMap)
    limits: Limits | None = None  # None: the server's own
    groups: str = "host"  # GROUP_MODELS: where callers' groups come from (vfs/perms.py)

    def __post_init__(self) -> None:
        if self.anames is not None and self.match.aname is None:
            object.__setattr__(self, "match", _with_anames(self.match, self.anames))


def _with_anames(match: Match, anames: frozenset[str]) -> Match:
    return replace(match, aname=frozenset(normal_aname(a) for a in anames))


@dataclass(frozen=True, slots=True)
class Selection:
    """What an attach gets: its namespace (with read-only and id mapping applied),
    the server-side credential, the rule that chose it and its limits."""

    rule: Rule
    namespace: Namespace
    cred: Cred
    limits: Limits | None  # None: the server's own


KEPT, READ_ONLY, REVOKED = "kept", "read-only", "revoked"


@dataclass(frozen=True, slots=True)
class Review:
    """What a reload leaves an attach: ``KEPT``, ``READ_ONLY`` or ``REVOKED``, and why."""

    verdict: str
    reason: str


def namespace_identity(namespace: Namespace | NamespaceProvider) -> object:
    """What makes two rules' namespaces the same across a reload: a provider's
    ``identity`` (a config file's namespace: its name), else the object itself."""
    return getattr(namespace, "identity", namespace)


def _mount_grants(namespace: Namespace | NamespaceProvider) -> dict[str, bool]:
    """Mount path -> read-only, as a provider declares them (``mount_grants``)."""
    if isinstance(namespace, Namespace):
        return {mount.path: mount.read_only for mount in namespace.mounts}
    grants = getattr(namespace, "mount_grants", {})
    return dict(grants)


class Closable(Protocol):
    async def close(self) -> None: ...


class Policy:
    """Rules, most specific first; no match is EACCES, never a default with more rights."""

    def __init__(self, rules: list[Rule], *, authorized_keys: pathlib.Path | None = None,
                 resources: Closable | None = None, source: str = "") -> None:
        # a stable sort keeps the file's order among equally specific rules
        self.rules = sorted(rules, key=lambda r: -r.match.specificity)
        self.authorized_keys = authorized_keys
        self.resources = resources
        self.source = source
        self.users = 0
        self.retired = False

    @property
    def wants_auth(self) -> bool:
        """True when some rule matches on a key proven by Tauth."""
        return any(rule.match.key is not None for rule in self.rules)

    def rule_for(self, request: AttachRequest) -> tuple[Rule | None, list[str]]:
        """The rule for ``request`` (None if none), and per rule tried before, the
        first key that failed; logs nothing."""
        misses: list[str] = []
        for rule in self.rules:
            missed = rule.match.failed_key(request)
            if missed is None:
                return rule, misses
            misses.append(f"{rule.name}: {missed}")
        return None, misses

    def choose(self, request: AttachRequest) -> Rule:
        """The rule for ``request``; EACCES with a log line saying who and why if none."""
        rule, misses = self.rule_for(request)
        if rule is not None:
            return rule
        REFUSALS.warning(log, request.peer, "attach refused for %s: no policy matches (%s)",
                         request, "; ".join(misses) or "no policies")
        raise OSError(errno.EACCES, f"no namespace for aname {request.aname!r}")

    def review(self, request: AttachRequest, rule: Rule, read_only: bool) -> Review:
        """What an attach granted by ``rule`` of an earlier policy (read-only or not)
        may keep under this one. Rights only shrink here: an attach that this policy
        would give more keeps what it had until it attaches again."""
        new, _ = self.rule_for(request)
        if new is None:
            return Review(REVOKED, "no policy matches it now")
        if namespace_identity(new.namespace) != namespace_identity(rule.namespace):
            return Review(REVOKED, f"policy {new.name!r} gives it namespace "
                          f"{new.namespace.name!r} now")
        if new.idmap != rule.idmap:
            return Review(REVOKED, f"policy {new.name!r} maps its ids differently now")
        if rule.groups == "client" and new.groups != "client":
            return Review(REVOKED, f"policy {new.name!r} takes groups from the host now")
        before, now = _mount_grants(rule.namespace), _mount_grants(new.namespace)
        gone = sorted(set(before) - set(now))
        if gone:
            return Review(REVOKED, f"namespace {new.namespace.name!r} no longer mounts "
                          f"{', '.join(gone)}")
        if not read_only and new.read_only:
            return Review(READ_ONLY, f"policy {new.name!r} is read-only now")
        if not read_only and any(now[path] and not before[path] for path in before):
            return Review(READ_ONLY, f"namespace {new.namespace.name!r} mounts "
                          f"{', '.join(p for p in before if now[p] and not before[p])} "
                          "read-only now")
        return Review(KEPT, "")

    async def attach(self, request: AttachRequest, context: ConnectionContext) -> Selection:
        """Choose the rule, map the credential, build or find the namespace."""
        rule = self.choose(request)
        cred = rule.idmap.cred(request.cred)
        provider = rule.namespace
        base = (provider if isinstance(provider, Namespace)
                else await provider.namespace_for(request, cred, context))
        ns = base.view(rule.read_only, rule.idmap, rule.groups == "client")
        context.uses(self)
        _log_attach(request, rule, ns, cred)
        return Selection(rule, ns, cred, rule.limits)

    def open_rules(self, transport: str) -> list[Rule]:
        """The rules anyone reaching a network listener of ``transport`` may attach
        through without authenticating (Match.open_to_network)."""
        return [rule for rule in self.rules if rule.match.open_to_network(transport)]

    def msize_cap(self, peer: Peer, server_max: int) -> int:
        """The msize a connection may negotiate: the largest any rule it could
        attach through allows (its attaches are limited again per rule)."""
        caps = [rule.limits.max_msize if rule.limits else server_max for rule in self.rules
                if rule.match.failed_peer_key(peer) is None]
        return min(server_max, max(caps, default=server_max))

    def retire(self) -> None:
        """A reload replaced this policy: close its resources once no connection uses them."""
        self.retired = True

    async def release(self) -> None:
        self.users -= 1
        if self.retired and self.users <= 0:
            await self.close()

    async def close(self) -> None:
        if self.resources is not None:
            resources, self.resources = self.resources, None
            await resources.close()


def _log_attach(request: AttachRequest, rule: Rule, ns: Namespace, cred: Cred) -> None:
    extra = "" if rule.idmap.identity else f", {rule.idmap.describe()}"
    log.info("attach by %s: namespace %r (policy %r%s%s) as uid=%d gid=%d", request, ns.name,
             rule.name, ", read-only" if rule.read_only else "", extra, cred.uid, cred.gid)
