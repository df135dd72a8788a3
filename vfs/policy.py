"""Who the client is, and which namespace an attach gets: the first rule that matches."""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from pathlib import Path

from .namespace import Namespace
from .node import Cred

__all__ = ["AttachRequest", "Peer", "Policy", "Rule"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Peer:
    """What the transport knows of a connection's other end."""

    transport: str  # "tcp", "unix", "tls", "stdio", "fd"
    address: str
    uid: int | None = None  # SO_PEERCRED of a UNIX socket
    gid: int | None = None
    pid: int | None = None

    def __str__(self) -> str:
        creds = f" uid={self.uid} gid={self.gid} pid={self.pid}" if self.uid is not None else ""
        return f"{self.transport}:{self.address}{creds}"


@dataclass(frozen=True, slots=True)
class AttachRequest:
    """One Tattach: the connection's identity plus what the attach names."""

    peer: Peer
    uname: str
    aname: str
    n_uname: int
    cred: Cred
    key_ids: frozenset[str] = frozenset()  # proven through Tauth: fingerprint and comment


@dataclass(frozen=True, slots=True)
class Rule:
    """Attaches whose aname is in ``anames`` (None: any) get ``namespace``."""

    namespace: Namespace
    anames: frozenset[str] | None = None
    name: str = "rule"

    def matches(self, request: AttachRequest) -> bool:
        return self.anames is None or _normal_aname(request.aname) in self.anames


def _normal_aname(aname: str) -> str:
    return aname.strip("/")


class Policy:
    """An ordered list of rules; no match is EACCES, never a default with more rights."""

    def __init__(self, rules: list[Rule], authorized_keys: Path | None = None,
                 wants_auth: bool = False) -> None:
        self.rules = rules
        self.authorized_keys = authorized_keys  # the Tauth key list (ninep/auth.py)
        self.wants_auth = wants_auth  # True iff some rule matches on a key

    def select(self, request: AttachRequest) -> Namespace:
        for rule in self.rules:
            if rule.matches(request):
                log.info("attach by %s uname=%r n_uname=%d aname=%r uid=%d: namespace %r (%s)",
                         request.peer, request.uname, _signed(request.n_uname), request.aname,
                         request.cred.uid, rule.namespace.name, rule.name)
                return rule.namespace
        log.warning("attach refused for %s uname=%r aname=%r: no policy matches",
                    request.peer, request.uname, request.aname)
        raise OSError(errno.EACCES, f"no namespace for aname {request.aname!r}")


def _signed(n_uname: int) -> int:
    return -1 if n_uname == 0xFFFFFFFF else n_uname
