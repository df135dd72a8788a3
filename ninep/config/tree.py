"""``ninep check-config``: a validated configuration described, each namespace as a tree."""

from __future__ import annotations

import grp
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ninep.backends.registry import MountSpec
from ninep.config.file import Config, NamespaceConfig
from ninep.vfs.idmap import IdMap
from ninep.vfs.policy import Policy

__all__ = ["describe_config", "namespace_tree"]


@dataclass
class _Node:
    mount: MountSpec | None = None
    children: dict[str, _Node] = field(default_factory=dict)


def namespace_tree(ns: NamespaceConfig) -> list[str]:
    """The mount tree of ``ns``, one line per directory or mount, like tree(1)."""
    root = _Node()
    for mount in ns.mounts:
        node = root
        for part in [p for p in mount.path.split("/") if p]:
            node = node.children.setdefault(part, _Node())
        node.mount = mount
    lines = ["/" + (f"  {root.mount.describe()}" if root.mount else "  (directory)")]
    _render(root, "", lines)
    return lines


def _render(node: _Node, prefix: str, lines: list[str]) -> None:
    names = sorted(node.children)
    for index, name in enumerate(names):
        child = node.children[name]
        last = index == len(names) - 1
        label = f"  {child.mount.describe()}" if child.mount else ""
        lines.append(f"{prefix}{'└── ' if last else '├── '}{name}{label}")
        _render(child, prefix + ("    " if last else "│   "), lines)


def _anonymous(idmap: IdMap) -> str:
    """Where squashed (or unmapped) ids go, with the server's names for them."""
    return (f" -> anonymous uid {_named(idmap.anon_uid, pwd.getpwuid)}, "
            f"gid {_named(idmap.anon_gid, grp.getgrgid)}")


def _named(number: int, lookup: Callable[[int], Any]) -> str:
    try:
        return f"{number} ({lookup(number)[0]})"
    except KeyError:
        return f"{number} (no name on this host)"


def describe_config(config: Config, policy: Policy,
                    default_listen: str = "tcp://127.0.0.1:5640") -> list[str]:
    """What check-config prints: listeners, then each policy in the order it is tried."""
    lines = [f"{config.path}: valid: {len(config.listeners)} listener(s), "
             f"{len(config.namespaces)} namespace(s), {len(config.policies)} policies"]
    lines += [f"listen {address}" + (f" (mode {address.mode:04o})" if address.mode else "")
              for address in config.listeners]
    if not config.listeners:
        lines.append(f"listen: no [[listen]]: the sockets systemd passes, else {default_listen} "
                     "(or ninep serve --listen)")
    if config.authorized_keys is not None:
        lines.append(f"authorized keys: {config.authorized_keys}")
    for order, rule in enumerate(policy.rules, start=1):
        extras = []
        if rule.read_only:
            extras.append("read-only")
        if not rule.idmap.identity:
            extras.append(rule.idmap.describe() + _anonymous(rule.idmap))
        narrowed = rule.limits or config.limits  # a policy's limits narrow the server's
        limits = [f"{k}={getattr(narrowed, k)}" for k in ("max_fids", "max_msize", "max_inflight")
                  if getattr(narrowed, k) != getattr(config.limits, k)]
        extras += limits
        lines.append("")
        lines.append(f"policy {rule.name!r} (tried {order}; match {rule.match.describe()}) -> "
                     f"namespace {rule.namespace.name!r}"
                     + (f" [{'; '.join(extras)}]" if extras else ""))
        lines += ["  " + line for line in namespace_tree(config.namespaces[rule.namespace.name])]
    return lines
