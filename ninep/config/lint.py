"""``ninep check-config`` warnings: a valid file that cannot do what it seems to.

Each check reads only the validated Config, so the warnings are the same
whether or not the backends open. A warning never stops a server: the file
is valid, it just has a policy, listener or key file that can never be used
the way it is written (docs/config.md, "Checking a file").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from ninep.config.file import Config
from ninep.config.listen import ListenAddress
from ninep.config.match import PolicyConfig
from ninep.vfs.policy import IPNetwork, Match

__all__ = ["config_warnings", "unreachable_reason"]

CERT_KEYS = ("cert_cn", "cert_san", "cert_sha256")
PEER_KEYS = ("peer_uid", "peer_gid")
# Transports whose peer has SO_PEERCRED credentials: a UNIX socket, and stdin
# when inetd or systemd's Accept=yes hands over a UNIX socket (docs/config.md).
_CREDENTIAL_KINDS = ("unix", "stdio", "systemd")


def config_warnings(config: Config) -> list[str]:
    """Every warning for ``config``, in the order a reader meets the tables."""
    return [*_certificate_warnings(config), *_peer_warnings(config),
            *_auth_warnings(config), *_shadow_warnings(config),
            *_listener_warnings(config)]


def _uses(match: Match, keys: tuple[str, ...]) -> list[str]:
    return [key for key in keys if getattr(match, key) is not None]


def _asks_for_certificates(listener: ListenAddress) -> bool:
    return listener.tls is not None and listener.tls.client_cert != "none"


def _certificate_warnings(config: Config) -> Iterator[str]:
    tls = [a for a in config.listeners if a.tls is not None]
    asking = [a for a in tls if _asks_for_certificates(a)]
    for policy in config.policies:
        keys = _uses(policy.match, CERT_KEYS)
        if not keys or asking:
            continue
        if not tls:
            why = "no listener speaks TLS"
        else:
            why = (f"no TLS listener asks for one ({', '.join(str(a) for a in tls)} "
                   "has no client_ca)")
        yield (f"policy {policy.name!r} matches on a client certificate ({', '.join(keys)}), "
               f"but {why}: it can never match")


def _peer_warnings(config: Config) -> Iterator[str]:
    if any(a.kind in _CREDENTIAL_KINDS for a in config.listeners):
        return
    where = (", ".join(str(a) for a in config.listeners) if config.listeners
             else "no [[listen]], so the default tcp listener")
    for policy in config.policies:
        keys = _uses(policy.match, PEER_KEYS)
        if keys:
            yield (f"policy {policy.name!r} matches on {', '.join(keys)}, which only a UNIX "
                   f"socket's peer has, but there is no unix listener ({where}): it can "
                   "never match")


def _auth_warnings(config: Config) -> Iterator[str]:
    keyed = [p for p in config.policies if p.match.key is not None]
    if config.authorized_keys is not None and not keyed:
        yield (f"[auth] authorized_keys = {config.authorized_keys}, but no policy matches on "
               "`key`: Tauth answers \"no authentication required\" and the keys are never "
               "asked for")
    if config.authorized_keys is None:
        for policy in keyed:
            yield (f"policy {policy.name!r} matches on `key`, but [auth] has no "
                   "authorized_keys: no key can be proven, so it can never match")


# --- shadowing ---------------------------------------------------------------

def _shadow_warnings(config: Config) -> Iterator[str]:
    """A policy is shadowed when one tried before it matches every attach it does.

    Policies are tried most specific first, the file's order among equals
    (vfs/policy.py), so a shadowing policy has the same keys, each allowing
    at least what the shadowed one allows."""
    tried = sorted(config.policies, key=lambda p: -p.match.specificity)
    for index, later in enumerate(tried):
        for earlier in tried[:index]:
            if _covers(earlier.match, later.match):
                yield (f"policy {later.name!r} is shadowed by policy {earlier.name!r}, tried "
                       f"before it: every attach it matches ({later.match.describe()}) "
                       f"matches {earlier.name!r} first, so it is never used")
                break


def _covers(wide: Match, narrow: Match) -> bool:
    """True when every request ``narrow`` matches is matched by ``wide`` too."""
    for key in Match.CONNECTION_KEYS + Match.ATTACH_KEYS:
        allowed, wanted = getattr(wide, key), getattr(narrow, key)
        if allowed is None:
            continue
        if wanted is None or not _values_within(key, wanted, allowed):
            return False
    return True


def _values_within(key: str, wanted: object, allowed: object) -> bool:
    if key in ("peer_uid", "peer_gid", "n_uname"):
        assert isinstance(wanted, tuple) and isinstance(allowed, tuple)
        return all(any(w.start >= a.start and w.stop <= a.stop for a in allowed)
                   for w in wanted)
    if key == "address":
        assert isinstance(wanted, tuple) and isinstance(allowed, tuple)
        return all(any(_subnet(w, a) for a in allowed) for w in wanted)
    assert isinstance(wanted, frozenset) and isinstance(allowed, frozenset)
    return wanted <= allowed


def _subnet(inner: IPNetwork, outer: IPNetwork) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


# --- listeners ---------------------------------------------------------------

def _listener_warnings(config: Config) -> Iterator[str]:
    for listener in config.listeners:
        if listener.kind == "systemd":
            continue  # the sockets' kinds are only known when systemd passes them
        reasons = [f"{p.name!r}: {why}" for p in config.policies
                   if (why := unreachable_reason(p, listener)) is not None]
        if len(reasons) == len(config.policies):
            yield (f"listener {listener}: no policy can match a client of it, so every "
                   f"attach there is refused ({'; '.join(reasons)})")


def unreachable_reason(policy: PolicyConfig, listener: ListenAddress) -> str | None:
    """Why no client of ``listener`` can match ``policy``, or None when one can."""
    match = policy.match
    transport = listener.kind
    if match.transport is not None and transport not in match.transport:
        return f"transport is {', '.join(sorted(match.transport))}"
    if transport in ("tcp", "tls") and _uses(match, PEER_KEYS):
        return f"{', '.join(_uses(match, PEER_KEYS))} needs a UNIX peer"
    if _uses(match, CERT_KEYS) and not _asks_for_certificates(listener):
        return f"{', '.join(_uses(match, CERT_KEYS))} needs a client certificate"
    if match.address is not None:
        if transport not in ("tcp", "tls"):
            return "address needs an IP peer"
        if _loopback_only(listener.host) and not any(
                net.network_address.is_loopback for net in match.address):
            return f"address has no loopback network and {listener} only hears loopback"
    return None


def _loopback_only(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
