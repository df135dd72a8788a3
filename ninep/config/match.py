"""The ``[[policy]]`` tables of the configuration file: match keys, actions, limits."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ninep.vfs.idmap import SQUASH_MODES, IdMap, IdRange
from ninep.vfs.policy import GROUP_MODELS, Limits, Match, normal_aname
from ninep.wire.constants import MIN_MSIZE

if TYPE_CHECKING:
    from ninep.config.file import Where

__all__ = ["POLICY_LIMITS", "SERVER_LIMITS", "TRANSPORTS", "PolicyConfig", "parse_limits",
           "parse_policy"]

# what a peer's transport can be (Peer.transport, set by ninep/server/listeners.py)
TRANSPORTS = ("tcp", "unix", "tls", "stdio")
_POLICY_KEYS = ("name", "namespace", "match", "read_only", "squash", "anon_uid", "anon_gid",
                "uid_map", "gid_map", "limits", "groups")
_ID_MAX = 0xFFFF_FFFE


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """One ``[[policy]]``: its match, the namespace it grants and how."""

    name: str
    namespace: str
    match: Match
    read_only: bool
    idmap: IdMap
    limits: Limits | None  # None: the server's own
    groups: str = "host"


def parse_policy(where: Where, table: Mapping[str, object], namespaces: tuple[str, ...],
                 server: Limits) -> PolicyConfig:
    """One ``[[policy]]``; its ``limits`` narrow ``server``'s ([server] or the defaults)."""
    where.only(table, _POLICY_KEYS)
    name = where.text(table, "name", where.table.removeprefix("[[policy]] "))
    if "name" in table:
        where = where.sub(f"[[policy]] {name!r}")
    namespace = where.text(table, "namespace")
    if namespace not in namespaces:
        where.fail("namespace", f"no namespace {namespace!r} (defined: "
                   f"{', '.join(namespaces) or 'none'})")
    match = table.get("match", {})
    if not isinstance(match, dict):
        where.fail("match", "expected a table")
    limits = table.get("limits", {})
    if not isinstance(limits, dict):
        where.fail("limits", "expected a table")
    return PolicyConfig(name, namespace, _match(where.sub(where.table + " match"), match),
                        where.flag(table, "read_only", False), _idmap(where, table),
                        _limits(where.sub(where.table + " limits"), limits, server),
                        where.text(table, "groups", "host", choices=GROUP_MODELS))


def _match(where: Where, table: Mapping[str, object]) -> Match:
    where.only(table, Match.CONNECTION_KEYS + Match.ATTACH_KEYS)
    strings = {key: _strings(where, table, key) for key in
               ("transport", "cert_cn", "cert_san", "cert_sha256", "key", "uname", "aname")}
    transport = strings["transport"]
    if transport is not None:
        for t in transport:
            if t not in TRANSPORTS:
                where.fail("transport", f"{t!r} is not one of {', '.join(TRANSPORTS)}")
    return Match(
        address=_networks(where, table),
        transport=transport,
        peer_uid=_ranges(where, table, "peer_uid"),
        peer_gid=_ranges(where, table, "peer_gid"),
        cert_cn=strings["cert_cn"],
        cert_san=strings["cert_san"],
        cert_sha256=_fingerprints(where, strings["cert_sha256"]),
        key=strings["key"],
        uname=strings["uname"],
        n_uname=_ranges(where, table, "n_uname"),
        aname=(None if strings["aname"] is None
               else frozenset(normal_aname(a) for a in strings["aname"])),
    )


def _list(where: Where, table: Mapping[str, object], key: str) -> list[object] | None:
    if key not in table:
        return None
    value = table[key]
    items = value if isinstance(value, list) else [value]
    if not items:
        where.fail(key, "an empty list matches nothing; leave the key out to match anything")
    return items


def _strings(where: Where, table: Mapping[str, object], key: str) -> frozenset[str] | None:
    items = _list(where, table, key)
    if items is None:
        return None
    for item in items:
        if not isinstance(item, str):
            where.fail(key, f"expected a string or a list of strings, got {item!r}")
    return frozenset(str(i) for i in items)


def _networks(where: Where, table: Mapping[str, object]
              ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    items = _list(where, table, "address")
    if items is None:
        return None
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            where.fail("address", f"{item!r}: expected an address or CIDR such as 10.0.0.0/8")
    return tuple(out)


def _ranges(where: Where, table: Mapping[str, object], key: str) -> tuple[range, ...] | None:
    items = _list(where, table, key)
    if items is None:
        return None
    out = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= _ID_MAX:
            out.append(range(item, item + 1))
            continue
        found = re.fullmatch(r"(\d+)-(\d+)", item) if isinstance(item, str) else None
        if found is None or int(found[1]) > int(found[2]) or int(found[2]) > _ID_MAX:
            where.fail(key, f"{item!r}: expected an id or a range \"FIRST-LAST\"")
        out.append(range(int(found[1]), int(found[2]) + 1))
    return tuple(out)


def _fingerprints(where: Where, items: frozenset[str] | None) -> frozenset[str] | None:
    if items is None:
        return None
    out = set()
    for item in items:
        digest = item.lower().replace(":", "").removeprefix("sha256:")
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            where.fail("cert_sha256", f"{item!r}: expected 64 hex digits (colons allowed)")
        out.add(digest)
    return frozenset(out)


def _idmap(where: Where, table: Mapping[str, object]) -> IdMap:
    squash = where.text(table, "squash", "none", choices=SQUASH_MODES)
    anon_uid = where.integer(table, "anon_uid", 65534, 0, _ID_MAX)
    anon_gid = where.integer(table, "anon_gid", 65534, 0, _ID_MAX)
    assert anon_uid is not None and anon_gid is not None
    return IdMap(squash, anon_uid, anon_gid, _id_ranges(where, table, "uid_map"),
                 _id_ranges(where, table, "gid_map"))


def _id_ranges(where: Where, table: Mapping[str, object], key: str) -> tuple[IdRange, ...]:
    items = table.get(key, [])
    if not isinstance(items, list):
        where.fail(key, "expected an array of {client = N, server = N, count = N}")
    out: list[IdRange] = []
    for index, item in enumerate(items):
        sub = where.sub(f"{where.table} {key}[{index}]")
        if not isinstance(item, dict):
            where.fail(key, "expected an array of {client = N, server = N, count = N}")
        sub.only(item, ("client", "server", "count"))
        client = sub.integer(item, "client", None, 0, _ID_MAX)
        server = sub.integer(item, "server", None, 0, _ID_MAX)
        count = sub.integer(item, "count", 1, 1, _ID_MAX)
        if client is None or server is None or count is None:
            sub.fail("client" if client is None else "server", "missing")
        if client + count - 1 > _ID_MAX or server + count - 1 > _ID_MAX:
            sub.fail("count", "the range runs past the largest id")
        for other in out:
            if client < other.client + other.count and other.client < client + count:
                sub.fail("client", f"overlaps the range starting at {other.client}")
        out.append(IdRange(client, server, count))
    return tuple(out)


#: The file's name for each limit: the Limits field, the least and the most allowed.
_LIMITS: dict[str, tuple[str, int, int]] = {
    "msize": ("max_msize", MIN_MSIZE, 1 << 26),
    "max_fids": ("max_fids", 1, _ID_MAX),
    "max_inflight": ("max_inflight", 1, _ID_MAX),
    "handshake_timeout": ("handshake_timeout", 1, 3600),  # seconds
}
SERVER_LIMITS = tuple(_LIMITS)  # [server]
POLICY_LIMITS = ("max_fids", "msize", "max_inflight")  # a policy's limits table


def parse_limits(where: Where, table: Mapping[str, object], base: Limits,
                 keys: tuple[str, ...]) -> Limits:
    """``base`` with the ``keys`` that ``table`` sets, each checked in range: [server]
    over the defaults, a policy's ``limits`` over the server's."""
    changes: dict[str, Any] = {}
    for key in keys:
        if key in table:
            name, least, most = _LIMITS[key]
            value = where.integer(table, key, None, least, most)
            changes[name] = float(value or 0) if name == "handshake_timeout" else value
    return replace(base, **changes)


def _limits(where: Where, table: Mapping[str, object], server: Limits) -> Limits | None:
    where.only(table, POLICY_LIMITS)
    return parse_limits(where, table, server, POLICY_LIMITS) if table else None
