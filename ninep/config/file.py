"""The configuration file: TOML read with tomllib, validated into frozen dataclasses.

Every error is one line naming the file, the table and the key. Building the
policy from a Config (opening the backends) is in ninep/config/runtime.py.
"""

from __future__ import annotations

import re
import ssl
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import NoReturn

from ninep.backends.registry import BackendConfigError, MountSpec, check_mount
from ninep.config.connections import CONNECTION_LIMIT_KEYS, MOST_CONNECTIONS, ConnectionLimits
from ninep.config.listen import ListenAddress, parse_listen, parse_metrics_address
from ninep.config.match import SERVER_LIMITS, PolicyConfig, parse_limits, parse_policy
from ninep.config.tls import CLIENT_CERT_MODES, TlsConfig, make_server_context
from ninep.vfs.policy import Limits

__all__ = [
    "PLACEHOLDERS",
    "SCOPES",
    "Config",
    "NamespaceConfig",
    "PolicyConfig",
    "Where",
    "expand",
    "load_config",
    "parse_config",
]

PLACEHOLDERS = ("uname", "uid", "gid", "aname")
SCOPES = ("shared", "connection")
LISTEN_KINDS = ("tcp", "unix", "tls", "stdio", "systemd")
_TOP_KEYS = ("server", "auth", "listen", "namespaces", "policy", "metrics")


class Where:
    """Where in the file a value comes from, for error messages: FILE: TABLE: KEY: what."""

    def __init__(self, path: Path | str, table: str) -> None:
        self.path = path
        self.table = table

    def fail(self, key: str, problem: str) -> NoReturn:
        raise BackendConfigError(f"{self.path}: {self.table}: {key}: {problem}")

    def sub(self, table: str) -> Where:
        return Where(self.path, table)

    def only(self, table: Mapping[str, object], keys: tuple[str, ...]) -> None:
        for key in table:
            if key not in keys:
                self.fail(key, f"unknown key (known: {', '.join(keys)})")

    def text(self, table: Mapping[str, object], key: str, default: str | None = None,
            choices: tuple[str, ...] | None = None) -> str:
        value = table.get(key, default)
        if value is None:
            self.fail(key, "missing")
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {value!r}")
        if choices is not None and value not in choices:
            self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def flag(self, table: Mapping[str, object], key: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {value!r}")
        return value

    def integer(self, table: Mapping[str, object], key: str, default: int | None,
            minimum: int = 0, maximum: int = 0xFFFF_FFFE) -> int | None:
        value = table.get(key, default)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"expected an integer, got {value!r}")
        if not minimum <= value <= maximum:
            self.fail(key, f"{value} is out of range {minimum}..{maximum}")
        return value

    def file(self, table: Mapping[str, object], key: str, required: bool = True) -> Path | None:
        """A file name; a relative one is relative to the config file's directory."""
        if key not in table and not required:
            return None
        name = Path(self.text(table, key))
        return name if name.is_absolute() else Path(self.path).resolve().parent / name


@dataclass(frozen=True, slots=True)
class NamespaceConfig:
    name: str
    mounts: tuple[MountSpec, ...]
    where: str  # "FILE: [namespaces.NAME]"


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated configuration file."""

    path: Path
    listeners: tuple[ListenAddress, ...]
    namespaces: Mapping[str, NamespaceConfig]
    policies: tuple[PolicyConfig, ...]
    authorized_keys: Path | None
    limits: Limits
    metrics: str | None = None  # [metrics] listen: the Prometheus endpoint's address
    workers: int = 1  # [server] workers: processes serving connections (ninep/workers/)
    # [server] max_connections, max_connections_per_peer: per server process
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)


def load_config(path: str | Path) -> Config:
    """Read and validate ``path``; BackendConfigError (one line) on any problem."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise BackendConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BackendConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, Path(path))


def parse_config(data: Mapping[str, object], path: Path) -> Config:
    top = Where(path, "top level")
    top.only(data, _TOP_KEYS)
    namespaces = _namespaces(_table(top, data, "namespaces"), path)
    policies = _array(top, data, "policy")
    if not policies:
        top.fail("policy", "no [[policy]] given: every attach would be refused")
    limits = _server_limits(Where(path, "[server]"), _table(top, data, "server"))
    parsed = tuple(parse_policy(Where(path, f"[[policy]] #{i + 1}"), table, tuple(namespaces),
                                limits)
                   for i, table in enumerate(policies))
    auth = _table(top, data, "auth")
    where = Where(path, "[auth]")
    where.only(auth, ("authorized_keys",))
    return Config(path, _listeners(_array(top, data, "listen"), path), namespaces,
                  parsed,
                  where.file(auth, "authorized_keys", required=False),
                  limits,
                  _metrics(Where(path, "[metrics]"), _table(top, data, "metrics")),
                  _workers(Where(path, "[server]"), _table(top, data, "server")),
                  _connections(Where(path, "[server]"), _table(top, data, "server")))


def _table(where: Where, data: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        where.fail(key, "expected a table")
    return value


def _array(where: Where, data: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        where.fail(key, f"expected an array of tables ([[{key}]])")
    return value


def _server_limits(where: Where, table: Mapping[str, object]) -> Limits:
    where.only(table, (*SERVER_LIMITS, *CONNECTION_LIMIT_KEYS, "workers"))
    return parse_limits(where, table, Limits(), SERVER_LIMITS)


def _connections(where: Where, table: Mapping[str, object]) -> ConnectionLimits:
    """``[server] max_connections`` and ``max_connections_per_peer``: counts of 1 or more."""
    defaults = ConnectionLimits()
    total = where.integer(table, "max_connections", defaults.max_connections, 1,
                          MOST_CONNECTIONS)
    per_peer = where.integer(table, "max_connections_per_peer",
                             defaults.max_connections_per_peer, 1, MOST_CONNECTIONS)
    assert total is not None and per_peer is not None  # each has a default
    return ConnectionLimits(total, per_peer)


def _workers(where: Where, table: Mapping[str, object]) -> int:
    """``[server] workers``: a count, or "auto" for every CPU this process may run on."""
    from ninep.workers.count import worker_count
    value = table.get("workers", 1)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        where.fail("workers", f"expected a count or \"auto\", got {value!r}")
    try:
        return worker_count(value)
    except ValueError as exc:
        where.fail("workers", str(exc))


def _metrics(where: Where, table: Mapping[str, object]) -> str | None:
    """``[metrics] listen``: where the Prometheus endpoint listens (off without it)."""
    where.only(table, ("listen",))
    if "listen" not in table:
        return None
    address = where.text(table, "listen")
    try:
        parse_metrics_address(address)
    except ValueError as exc:
        where.fail("listen", str(exc))
    return address


# --- listeners -------------------------------------------------------------

_LISTEN_KEYS = ("kind", "address", "path", "mode", "cert", "key", "client_ca", "client_cert",
                "name")


def _listeners(tables: list[Mapping[str, object]], path: Path) -> tuple[ListenAddress, ...]:
    out = []
    for index, table in enumerate(tables):
        where = Where(path, f"[[listen]] #{index + 1}")
        where.only(table, _LISTEN_KEYS)
        out.append(_listener(where, table))
    return tuple(out)


def _listener(where: Where, table: Mapping[str, object]) -> ListenAddress:
    kind = where.text(table, "kind", choices=LISTEN_KINDS)
    tls = _tls(where, table, kind)
    if kind in ("tcp", "tls"):
        address = where.text(table, "address")
        try:
            parsed = parse_listen(f"tcp://{address}")
        except ValueError:
            where.fail("address", f"{address!r}: expected HOST:PORT")
        return ListenAddress(kind, parsed.host, parsed.port, tls=tls)
    if kind == "unix":
        sock = where.file(table, "path")
        mode = _mode(where, table)
        return ListenAddress("unix", path=str(sock), mode=mode)
    if kind == "systemd":
        name = where.text(table, "name", "") or None
        return ListenAddress("systemd", tls=tls, fdname=name)
    return ListenAddress("stdio")


def _mode(where: Where, table: Mapping[str, object]) -> int | None:
    if "mode" not in table:
        return None
    text = where.text(table, "mode")
    if not re.fullmatch(r"0?[0-7]{3,4}", text):
        where.fail("mode", f"{text!r}: expected octal permissions such as \"0660\"")
    return int(text, 8)


def _tls(where: Where, table: Mapping[str, object], kind: str) -> TlsConfig | None:
    keys = ("cert", "key", "client_ca", "client_cert")
    if kind not in ("tls", "systemd"):
        for name in keys:
            if name in table:
                where.fail(name, f"only for kind = \"tls\" (this listener is {kind!r})")
        return None
    if kind == "systemd" and "cert" not in table:
        return None
    cert = where.file(table, "cert")
    keyfile = where.file(table, "key")
    ca = where.file(table, "client_ca", required=False)
    mode = where.text(table, "client_cert", "optional" if ca else "none",
                     choices=CLIENT_CERT_MODES)
    if mode != "none" and ca is None:
        where.fail("client_cert", f"{mode!r} needs client_ca (the CA that signs client "
                   "certificates)")
    assert cert is not None and keyfile is not None
    for name, file in (("cert", cert), ("key", keyfile), ("client_ca", ca)):
        if file is not None and not file.is_file():
            where.fail(name, f"{file}: no such file")
    tls = TlsConfig(cert, keyfile, ca, mode)
    try:
        make_server_context(tls)
    except (OSError, ssl.SSLError) as exc:
        where.fail("cert", f"cannot load {cert} / {keyfile}: {exc}")
    return tls


# --- namespaces ------------------------------------------------------------

_MOUNT_KEYS = ("path", "backend", "source", "options", "read_only", "scope")


def _namespaces(table: Mapping[str, object], path: Path) -> Mapping[str, NamespaceConfig]:
    out = {}
    for name, body in table.items():
        where = Where(path, f"[namespaces.{name}]")
        if not isinstance(body, dict):
            where.fail("mounts", "expected a table with mounts = [...]")
        where.only(body, ("mounts",))
        mounts = body.get("mounts")
        if not isinstance(mounts, list) or not mounts or not all(isinstance(m, dict)
                                                                  for m in mounts):
            where.fail("mounts", "expected a non-empty array of tables")
        parsed = tuple(_mount(where.sub(f"[namespaces.{name}] mounts[{i}]"), m)
                       for i, m in enumerate(mounts))
        seen: set[str] = set()
        for mount in parsed:
            if mount.path in seen:
                where.fail("mounts", f"{mount.path} is mounted twice")
            seen.add(mount.path)
        for mount in parsed:
            for other in parsed:
                if other.single_file and mount.path.startswith(other.path + "/"):
                    where.fail("mounts", f"{mount.path} is below {other.path}, which is a "
                               f"single file ({other.kind})")
        out[name] = NamespaceConfig(name, parsed, f"{path}: [namespaces.{name}]")
    return MappingProxyType(out)


def _mount(where: Where, table: Mapping[str, object]) -> MountSpec:
    """One mount table, checked against its kind's source rule and options now, even
    where a placeholder defers opening it to the first attach."""
    where.only(table, _MOUNT_KEYS)
    path = where.text(table, "path")
    parts = [p for p in path.split("/") if p]
    if not path.startswith("/") or any(p in (".", "..") for p in parts):
        where.fail("path", f"{path!r}: expected an absolute path without . or ..")
    backend = where.text(table, "backend")
    source = where.text(table, "source", "")
    options = table.get("options", {})
    if not isinstance(options, dict):
        where.fail("options", "expected a table")
    names = _placeholders(where, "source", source)
    deferred = set()
    for key, value in options.items():
        found = _option_placeholders(where, {key: value})
        if found:
            deferred.add(key)  # its type is known once expanded
        names |= found
    try:
        check_mount(backend, source, options, deferred)
    except BackendConfigError as exc:
        where.fail(exc.key or "options", str(exc))
    return MountSpec("/" + "/".join(parts), backend, source, MappingProxyType(dict(options)),
                     where.flag(table, "read_only", False),
                     where.text(table, "scope", "shared", choices=SCOPES),
                     frozenset(names), f"{where.path}: {where.table} ({path})")


def _placeholders(where: Where, key: str, text: str) -> set[str]:
    names = set()
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as exc:
        where.fail(key, f"{text!r}: {exc} (write {{{{ and }}}} for literal braces)")
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            where.fail(key, f"unknown placeholder {{{name}}} (known: "
                       f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
        names.add(name)
    return names


def _option_placeholders(where: Where, options: Mapping[str, object], prefix: str = "") -> set[str]:
    names: set[str] = set()
    for key, value in options.items():
        if isinstance(value, str):
            names |= _placeholders(where, f"options.{prefix}{key}", value)
        elif isinstance(value, dict):
            names |= _option_placeholders(where, value, f"{prefix}{key}.")
    return names


def expand(value: object, values: Mapping[str, str]) -> object:
    """Fill placeholders in a source or in option values (tables included)."""
    if isinstance(value, str):
        return value.format_map(values)
    if isinstance(value, Mapping):
        return {k: expand(v, values) for k, v in value.items()}
    return value
