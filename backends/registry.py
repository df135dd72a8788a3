"""The registry of backend kinds: each kind's factory, source rule and option schema.

The command line (``--mount /p=KIND[:SOURCE][,opt=val,...][,ro]``) and the
config file both describe a mount as one :class:`MountSpec`, checked against
its kind's entry in :data:`KINDS` when it is read (placeholders included: a
value that holds one is checked by name, and by type once expanded), and
opened through :func:`open_backend`. A backend module is only imported when
its kind is opened: serving a RAM disk never imports the ext2 code.

A factory is ``async def open_backend(source, options, read_only) -> Backend``
in the backend's module. It receives the options its kind declares, converted
to their types and with the declared defaults filled in, and raises
:class:`BackendConfigError` for a bad source or value. Adding a kind is one
entry in :data:`KINDS`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from ninep.vfs.node import Backend

if TYPE_CHECKING:
    from ninep.backends.image_file import ImageOpener

__all__ = [
    "DECLARED",
    "KINDS",
    "BackendConfigError",
    "BackendKind",
    "MountSpec",
    "Option",
    "Options",
    "check_mount",
    "close_backends",
    "open_backend",
    "option_bool",
    "option_int",
    "option_str",
    "parse_mount",
]

log = logging.getLogger(__name__)

#: Backend options as given: strings from the command line, TOML values from a config file.
Options = dict[str, object]
Factory = Callable[[str, Options, bool], Awaitable[Backend]]


class BackendConfigError(ValueError):
    """A backend's source or options are wrong; the message says which and why.

    ``key`` names the mount's key at fault ("backend", "source", "options.NAME"),
    for a config file's error line; empty when not known."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class Option:
    """One option a kind takes: its name, type and default (None: none, or the
    factory computes it from the host, as passthrough's max_fds)."""

    name: str
    type: str  # a key of _CONVERTERS: string, integer, boolean, octal, layer
    default: object = None
    choices: tuple[str, ...] = ()
    minimum: int = 0

    def convert(self, value: object) -> object:
        """``value`` as this option's type; BackendConfigError names the option."""
        return _CONVERTERS[self.type](self, value)


@dataclass(frozen=True, slots=True)
class BackendKind:
    """One kind of backend: where its factory lives and what it takes."""

    name: str
    factory: str  # "module:function"
    source: str  # "required", "optional" or "none"
    options: tuple[Option, ...] = ()
    single_file: bool = False  # serves one file: nothing can be mounted below it
    images: bool = False  # its source may be "@/path", a file of the namespace (image_sources)

    def load(self) -> Factory:
        module_name, _, attr = self.factory.partition(":")
        factory: Factory = getattr(importlib.import_module(module_name), attr)
        return factory

    def check_source(self, source: str) -> None:
        if self.source == "required" and not source:
            raise BackendConfigError(f"backend {self.name!r} needs a source, "
                                     f"e.g. {self.name}:/path", "source")
        if self.source == "none" and source:
            raise BackendConfigError(f"backend {self.name!r} takes no source (got {source!r})",
                                     "source")
        if source.startswith("@"):
            if not self.images:
                raise BackendConfigError(f"backend {self.name!r} cannot serve a file of the "
                                         f"namespace ({source!r}): only tar and ext2 can",
                                         "source")
            parts = source[1:].split("/")
            if not source.startswith("@/") or any(p in (".", "..") for p in parts):
                raise BackendConfigError(f"{source!r}: expected @ and an absolute path "
                                         "without . or ..", "source")

    def check_options(self, options: Mapping[str, object],
                      deferred: Collection[str] = ()) -> Options:
        """``options`` converted, with the declared defaults filled in. A name in
        ``deferred`` (its value holds a placeholder) is checked by name only."""
        declared = {option.name: option for option in self.options}
        out: Options = {}
        for name, value in options.items():
            option = declared.get(name)
            if option is None:
                known = ", ".join(declared) or "none"
                raise BackendConfigError(f"unknown option {name!r} for backend {self.name!r} "
                                         f"(known: {known})", f"options.{name}")
            if name not in deferred:
                try:
                    out[name] = option.convert(value)
                except BackendConfigError as exc:
                    raise BackendConfigError(str(exc), f"options.{name}") from None
        for option in self.options:
            if option.name not in options and option.default is not None:
                out[option.name] = option.convert(option.default)
        return out


def _layer_options() -> tuple[Option, ...]:
    return (Option("lower", "layer"), Option("upper", "layer", "ram"),
            Option("share_lower", "boolean", True))


#: Each kind, its source and its options: docs/backends.md.
KINDS: dict[str, BackendKind] = {kind.name: kind for kind in (
    BackendKind("ram", "ninep.backends.ram:open_backend", "none", (
        Option("size", "integer"), Option("inodes", "integer", minimum=1),
        Option("mode", "octal", "0755"))),
    # security_model and max_fds default from the host (root or not, RLIMIT_NOFILE)
    BackendKind("passthrough", "ninep.backends.passthrough:open_backend", "required", (
        Option("security_model", "string", choices=("passthrough", "mapped-xattr", "none")),
        Option("max_fds", "integer", minimum=8), Option("threads", "integer", minimum=1))),
    BackendKind("tar", "ninep.backends.tar:open_backend", "required", (
        Option("lenient", "boolean", False), Option("tmpdir", "string", "")), images=True),
    BackendKind("ext2", "ninep.backends.ext2:open_backend", "required", (
        Option("ro", "boolean", False), Option("force", "boolean", False),
        Option("lost_found", "boolean", False)), images=True),
    BackendKind("overlay", "ninep.backends.overlay:open_backend", "none", _layer_options()),
    # a tree of another 9P2000.L server: the source is its URL (tcp://, unix://, tls://)
    BackendKind("9p", "ninep.backends.remote:open_backend", "required", (
        Option("aname", "string", ""), Option("uname", "string", "nobody"),
        Option("uid", "integer"), Option("msize", "integer", minimum=4096),
        Option("ca", "string", ""), Option("cert", "string", ""), Option("key", "string", ""),
        Option("auth_key", "string", ""), Option("timeout", "integer", 10, minimum=1),
        Option("readahead", "boolean", True))),
    BackendKind("null", "ninep.backends.synthetic:open_null", "none", single_file=True),
    BackendKind("zero", "ninep.backends.synthetic:open_zero", "none", single_file=True),
    BackendKind("inline", "ninep.backends.synthetic:open_inline", "optional", single_file=True),
    BackendKind("symlink", "ninep.backends.synthetic:open_symlink", "required",
                single_file=True),
    BackendKind("random", "ninep.backends.synthetic:open_random", "none", single_file=True),
    BackendKind("clock", "ninep.backends.synthetic:open_clock", "none", single_file=True),
    # the server's live view for operators (connections, counts): it reads the server's
    # own figures, so it lives with the server
    BackendKind("metrics", "ninep.server.metrics_files:open_backend", "none"),
)}


def check_mount(kind: str, source: str, options: Mapping[str, object],
                deferred: Collection[str] = ()) -> tuple[BackendKind, Options]:
    """The kind's entry and the options converted; BackendConfigError (with the key)
    for an unknown kind, a source the kind does not take, or an option it does not."""
    entry = KINDS.get(kind)
    if entry is None:
        raise BackendConfigError(f"unknown backend {kind!r} (known: {', '.join(KINDS)})",
                                 "backend")
    entry.check_source(source)
    return entry, entry.check_options(options, deferred)


async def open_backend(kind: str, source: str = "", options: Mapping[str, object] | None = None,
                       read_only: bool = False, where: str = "",
                       opener: ImageOpener | None = None) -> Backend:
    """Open one instance of ``kind``; BackendConfigError names ``where`` and the problem.
    ``opener``: how an image kind opens an ``@`` source (backends/image_file.py)."""
    prefix = f"{where}: " if where else ""
    try:
        entry, checked = check_mount(kind, source, options or {})
    except BackendConfigError as exc:
        raise BackendConfigError(f"{prefix}{exc}", exc.key) from None
    try:
        factory = entry.load()
    except ImportError as exc:
        raise BackendConfigError(f"{prefix}backend {kind!r} is not available: {exc}") from exc
    try:
        if opener is not None:
            return await factory(source, checked, read_only, opener=opener)  # type: ignore[call-arg]
        return await factory(source, checked, read_only)
    except BackendConfigError as exc:
        raise BackendConfigError(f"{prefix}{exc}", exc.key) from None


async def close_backends(backends: Iterable[Backend]) -> None:
    """Close each of ``backends`` in turn; a failure is logged and the rest still close."""
    for backend in backends:
        try:
            await backend.close()
        except Exception:
            log.exception("error while closing the %s backend", backend.kind)


class _Declared:
    """The default of an option its KINDS entry declares: the registry has filled it in
    before the factory runs, so a factory leaves ``default`` out rather than repeat it."""


DECLARED = _Declared()


def _take(options: Options, name: str, default: object) -> object:
    value = options.pop(name, default)
    if isinstance(value, _Declared):
        raise BackendConfigError(f"option {name}: missing (its default is declared in KINDS; "
                                 "open the kind through the registry)")
    return value


def option_str(options: Options, name: str, default: str | _Declared = DECLARED,
               choices: tuple[str, ...] | None = None) -> str:
    """Take option ``name`` as a string, one of ``choices`` when given."""
    value = _take(options, name, default)
    if not isinstance(value, str):
        raise BackendConfigError(f"option {name}={value!r}: expected a string")
    if choices is not None and value not in choices:
        raise BackendConfigError(f"option {name}={value!r}: expected one of {', '.join(choices)}")
    return value


def option_int(options: Options, name: str, default: int | _Declared | None = DECLARED,
               minimum: int = 0) -> int | None:
    """Take option ``name`` as an integer (suffixes K, M, G, T accepted) >= ``minimum``."""
    value = _take(options, name, default)
    if value is None:
        return None
    if isinstance(value, str):
        value = _parse_size(name, value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BackendConfigError(f"option {name}={value!r}: expected an integer")
    if value < minimum:
        raise BackendConfigError(f"option {name}={value}: must be at least {minimum}")
    return value


def option_bool(options: Options, name: str, default: bool | _Declared = DECLARED) -> bool:
    """Take option ``name`` as a boolean: true/false, yes/no, on/off, 1/0, or bare."""
    value = _take(options, name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _BOOLS:
        return _BOOLS[value.lower()]
    raise BackendConfigError(f"option {name}={value!r}: expected true or false")


_BOOLS = {"": True, "true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}
_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _parse_size(name: str, text: str) -> int:
    scale = _SUFFIXES.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale > 1 else text
    try:
        return int(digits, 0) * scale
    except ValueError:
        raise BackendConfigError(f"option {name}={text!r}: expected an integer "
                                 f"(suffixes K, M, G, T)") from None


def _string(option: Option, value: object) -> object:
    return option_str({option.name: value}, option.name, "", option.choices or None)


def _integer(option: Option, value: object) -> object:
    return option_int({option.name: value}, option.name, None, option.minimum)


def _boolean(option: Option, value: object) -> object:
    return option_bool({option.name: value}, option.name, False)


def _octal(option: Option, value: object) -> object:
    """Permission bits as octal text ("0755")."""
    bits = -1  # an integer is refused: TOML's mode = 755 would be decimal
    if isinstance(value, str):
        try:
            bits = int(value, 8)
        except ValueError:
            pass
    if not 0 <= bits <= 0o7777:
        raise BackendConfigError(f"option {option.name}={value!r}: expected octal "
                                 "permission bits")
    return bits


def _layer(option: Option, value: object) -> object:
    """A layer (overlay's lower and upper): checked like a mount of its own; the value
    stays as given, for the factory to open."""
    from ninep.backends.overlay.factory import parse_layer  # only where an overlay is used
    kind, source, options = parse_layer(option.name, value)
    if source.startswith("@"):  # a layer is opened alone: no namespace to find it in
        raise BackendConfigError(f"overlay {option.name}: {source!r}: a layer is opened on "
                                 "its own, so it cannot serve a file of the namespace")
    try:
        check_mount(kind, source, options)
    except BackendConfigError as exc:
        raise BackendConfigError(f"overlay {option.name}: {exc}") from None
    return value


_CONVERTERS: dict[str, Callable[[Option, object], object]] = {
    "string": _string, "integer": _integer, "boolean": _boolean, "octal": _octal,
    "layer": _layer,
}


@dataclass(frozen=True, slots=True)
class MountSpec:
    """One mount, read and checked but not yet opened: a ``--mount`` value or one table
    of a config file's ``mounts``. A source or option holding ``placeholders`` is
    expanded per attach (ninep/config/runtime.py); ``scope`` "connection" gives each
    connection its own instance."""

    path: str
    kind: str
    source: str = ""
    options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    read_only: bool = False
    scope: str = "shared"
    placeholders: frozenset[str] = frozenset()
    where: str = ""  # for errors: "--mount '...'" or "FILE: [namespaces.NAME] mounts[N] (PATH)"

    @property
    def single_file(self) -> bool:
        return KINDS[self.kind].single_file

    def describe(self) -> str:
        parts = [self.kind + (f":{self.source}" if self.source else "")]
        parts += [f"{k}={v!r}" for k, v in self.options.items()]
        if self.read_only:
            parts.append("ro")
        if self.scope == "connection":
            parts.append("per connection")
        return ", ".join(parts)

    async def open(self, source: str | None = None,
                   options: Mapping[str, object] | None = None,
                   within: Sequence[tuple[str, Backend, bool]] = ()) -> Backend:
        """Open one instance, with ``source`` and ``options`` as expanded (default: as given);
        an ``@`` source is a file of ``within``, the (path, backend, read_only) opened before."""
        source = self.source if source is None else source
        opener = None
        if source.startswith("@"):
            from ninep.backends.image_file import namespace_opener
            opener = namespace_opener(source, within, f"the {self.kind} mount {self.path}")
        return await open_backend(self.kind, source,
                                  self.options if options is None else options,
                                  self.read_only, where=self.where, opener=opener)


def parse_mount(text: str) -> MountSpec:
    """``/PATH=KIND[:SOURCE][,KEY[=VALUE]]...[,ro]``; ValueError names what is wrong.

    A source may hold colons (``tar:/srv/a:b.tar``) but not commas.
    """
    where = f"--mount {text!r}"
    path, sep, spec = text.partition("=")
    if not sep or not path.startswith("/"):
        raise ValueError(f"{where}: expected /PATH=KIND[:SOURCE][,OPTION=VALUE...][,ro]")
    head, *rest = spec.split(",")
    kind, _, source = head.partition(":")
    options: dict[str, object] = {}
    read_only = False
    for item in rest:
        key, has_value, value = item.partition("=")
        if key in ("ro", "rw") and not has_value:
            read_only = key == "ro"
        elif not key:
            raise ValueError(f"{where}: empty option")
        else:
            options[key] = value
    try:
        check_mount(kind, source, options)
    except BackendConfigError as exc:
        raise BackendConfigError(f"{where}: {exc}", exc.key) from None
    return MountSpec(path, kind, source, MappingProxyType(options), read_only, where=where)
