"""uid/gid translation between a client and the server: root or all squashing, and id ranges."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .node import Attr, Cred, SetAttr

__all__ = ["NOBODY", "SQUASH_MODES", "IdMap", "IdRange"]

NOBODY = 65534
SQUASH_MODES = ("none", "root", "all")


@dataclass(frozen=True, slots=True)
class IdRange:
    """Client ids ``client .. client+count-1`` are server ids ``server ..``."""

    client: int
    server: int
    count: int

    def to_server(self, client_id: int) -> int | None:
        offset = client_id - self.client
        return self.server + offset if 0 <= offset < self.count else None

    def to_client(self, server_id: int) -> int | None:
        offset = server_id - self.server
        return self.client + offset if 0 <= offset < self.count else None


@dataclass(frozen=True, slots=True)
class IdMap:
    """How one policy turns the ids a client claims into the ids the server acts as.

    Order: ``squash = "all"`` makes everyone anonymous; ``"root"`` makes uid 0
    and gid 0 anonymous (NFS root_squash); then, when ranges are given, an id
    inside a range is translated and one outside every range is anonymous:
    a mapping never lets an unlisted id through unchanged.
    """

    squash: str = "none"
    anon_uid: int = NOBODY
    anon_gid: int = NOBODY
    uids: tuple[IdRange, ...] = ()
    gids: tuple[IdRange, ...] = ()

    @property
    def identity(self) -> bool:
        return self.squash == "none" and not self.uids and not self.gids

    def uid_in(self, uid: int) -> int:
        return self._in(uid, self.anon_uid, self.uids)

    def gid_in(self, gid: int) -> int:
        return self._in(gid, self.anon_gid, self.gids)

    def _in(self, value: int, anon: int, ranges: tuple[IdRange, ...]) -> int:
        if self.squash == "all" or (self.squash == "root" and value == 0):
            return anon
        if not ranges:
            return value
        for r in ranges:
            mapped = r.to_server(value)
            if mapped is not None:
                return mapped
        return anon

    def uid_out(self, uid: int) -> int:
        return _out(uid, self.anon_uid, self.uids)

    def gid_out(self, gid: int) -> int:
        return _out(gid, self.anon_gid, self.gids)

    def cred(self, cred: Cred) -> Cred:
        """The server-side credential of a client's; supplementary groups that would
        become anonymous are dropped rather than turned into the anonymous group."""
        if self.identity:
            return cred
        groups = frozenset(g for g in (self._group_in(g) for g in cred.groups) if g is not None)
        return Cred(self.uid_in(cred.uid), self.gid_in(cred.gid), groups)

    def _group_in(self, gid: int) -> int | None:
        mapped = self.gid_in(gid)
        return None if mapped == self.anon_gid and gid != self.anon_gid else mapped

    def setattr_in(self, changes: SetAttr) -> SetAttr:
        """A chown's ids are client ids: translate them like the caller's own."""
        if self.identity or (changes.uid is None and changes.gid is None):
            return changes
        return dataclasses.replace(
            changes,
            uid=None if changes.uid is None else self.uid_in(changes.uid),
            gid=None if changes.gid is None else self.gid_in(changes.gid))

    def attr_out(self, attr: Attr) -> Attr:
        """Attributes as the client should see them: only ranges are reversed
        (squashing is one-way, as with NFS: files keep showing their real owner)."""
        if not self.uids and not self.gids:
            return attr
        return dataclasses.replace(attr, uid=self.uid_out(attr.uid), gid=self.gid_out(attr.gid))

    def describe(self) -> str:
        parts = [] if self.squash == "none" else [f"squash={self.squash}"]
        parts += [f"uid {r.client}-{r.client + r.count - 1}->{r.server}" for r in self.uids]
        parts += [f"gid {r.client}-{r.client + r.count - 1}->{r.server}" for r in self.gids]
        return ", ".join(parts) or "ids as claimed"


def _out(value: int, anon: int, ranges: tuple[IdRange, ...]) -> int:
    if not ranges:
        return value
    for r in ranges:
        mapped = r.to_client(value)
        if mapped is not None:
            return mapped
    return anon
