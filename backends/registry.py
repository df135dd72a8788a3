"""The registry of backend kinds: a name -> a factory that opens one instance.

The command line (``--mount /p=KIND[:SOURCE][,opt=val,...][,ro]``) and the
config file both build backends through :func:`open_backend`, so a kind, its
source and its options are validated in one place. A backend module is only
imported when its kind is used: serving a RAM disk never imports the ext2 code.

A factory is ``async def open_backend(source, options, read_only) -> Backend``
in the backend's module. It takes the options it knows out of ``options``
(values are strings from the command line, or TOML values from the config
file) and raises :class:`BackendConfigError` for a bad source or value; any
option left over is reported by the registry as unknown.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from ninep.vfs.node import Backend

__all__ = [
    "KINDS",
    "BackendConfigError",
    "BackendKind",
    "MountSpec",
    "Options",
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
    """A backend's source or options are wrong; the message says which and why."""


@dataclass(frozen=True, slots=True)
class BackendKind:
    """One kind of backend: where its factory lives and what it takes."""

    name: str
    factory: str  # "module:function"
    source: str  # "required", "optional" or "none"

    def load(self) -> Factory:
        module_name, _, attr = self.factory.partition(":")
        factory: Factory = getattr(importlib.import_module(module_name), attr)
        return factory


#: What each kind serves and takes: docs/backends.md.
KINDS: dict[str, BackendKind] = {kind.name: kind for kind in (
    BackendKind("ram", "ninep.backends.ram:open_backend", "none"),
    BackendKind("passthrough", "ninep.backends.passthrough:open_backend", "required"),
    BackendKind("tar", "ninep.backends.tar:open_backend", "required"),
    BackendKind("ext2", "ninep.backends.ext2:open_backend", "required"),
    BackendKind("overlay", "ninep.backends.overlay:open_backend", "none"),
    BackendKind("null", "ninep.backends.synthetic:open_null", "none"),
    BackendKind("zero", "ninep.backends.synthetic:open_zero", "none"),
    BackendKind("inline", "ninep.backends.synthetic:open_inline", "optional"),
    BackendKind("symlink", "ninep.backends.synthetic:open_symlink", "required"),
    BackendKind("random", "ninep.backends.synthetic:open_random", "none"),
    BackendKind("clock", "ninep.backends.synthetic:open_clock", "none"),
    # the server's live view for operators (connections, counts): it reads the server's
    # own figures, so it lives with the server
    BackendKind("metrics", "ninep.server.metrics_files:open_backend", "none"),
)}


async def open_backend(kind: str, source: str = "", options: Mapping[str, object] | None = None,
                       read_only: bool = False, where: str = "") -> Backend:
    """Open one instance of ``kind``; BackendConfigError names ``where`` and the problem."""
    prefix = f"{where}: " if where else ""
    entry = KINDS.get(kind)
    if entry is None:
        raise BackendConfigError(f"{prefix}unknown backend {kind!r} (known: {', '.join(KINDS)})")
    if entry.source == "required" and not source:
        raise BackendConfigError(f"{prefix}backend {kind!r} needs a source, "
                                 f"e.g. {kind}:/path")
    if entry.source == "none" and source:
        raise BackendConfigError(f"{prefix}backend {kind!r} takes no source (got {source!r})")
    left = dict(options or {})
    try:
        factory = entry.load()
    except ImportError as exc:
        raise BackendConfigError(f"{prefix}backend {kind!r} is not available: {exc}") from exc
    try:
        backend = await factory(source, left, read_only)
    except BackendConfigError as exc:
        raise BackendConfigError(f"{prefix}{exc}") from None
    if left:
        await backend.close()
        raise BackendConfigError(f"{prefix}unknown option {sorted(left)[0]!r} "
                                 f"for backend {kind!r}")
    return backend


async def close_backends(backends: Iterable[Backend]) -> None:
    """Close each of ``backends`` in turn; a failure is logged and the rest still close."""
    for backend in backends:
        try:
            await backend.close()
        except Exception:
            log.exception("error while closing the %s backend", backend.kind)


def option_str(options: Options, name: str, default: str,
               choices: tuple[str, ...] | None = None) -> str:
    """Take option ``name`` as a string, one of ``choices`` when given."""
    value = options.pop(name, default)
    if not isinstance(value, str):
        raise BackendConfigError(f"option {name}={value!r}: expected a string")
    if choices is not None and value not in choices:
        raise BackendConfigError(f"option {name}={value!r}: expected one of {', '.join(choices)}")
    return value


def option_int(options: Options, name: str, default: int | None,
               minimum: int = 0) -> int | None:
    """Take option ``name`` as an integer (suffixes K, M, G, T accepted) >= ``minimum``."""
    value = options.pop(name, default)
    if value is None:
        return None
    if isinstance(value, str):
        value = _parse_size(name, value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BackendConfigError(f"option {name}={value!r}: expected an integer")
    if value < minimum:
        raise BackendConfigError(f"option {name}={value}: must be at least {minimum}")
    return value


def option_bool(options: Options, name: str, default: bool) -> bool:
    """Take option ``name`` as a boolean: true/false, yes/no, on/off, 1/0, or bare."""
    value = options.pop(name, default)
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


@dataclass(frozen=True, slots=True)
class MountSpec:
    """One ``--mount`` value, parsed but not yet opened."""

    path: str
    kind: str
    source: str
    options: Mapping[str, object]
    read_only: bool
    text: str

    async def open(self) -> Backend:
        return await open_backend(self.kind, self.source, self.options, self.read_only,
                                  where=f"--mount {self.text!r}")


def parse_mount(text: str) -> MountSpec:
    """``/PATH=KIND[:SOURCE][,KEY[=VALUE]]...[,ro]``; ValueError names what is wrong.

    A source may hold colons (``tar:/srv/a:b.tar``) but not commas.
    """
    path, sep, spec = text.partition("=")
    if not sep or not path.startswith("/"):
        raise ValueError(f"--mount {text!r}: expected /PATH=KIND[:SOURCE][,OPTION=VALUE...][,ro]")
    head, *rest = spec.split(",")
    kind, _, source = head.partition(":")
    if kind not in KINDS:
        raise ValueError(f"--mount {text!r}: unknown backend {kind!r} "
                         f"(known: {', '.join(KINDS)})")
    options: dict[str, object] = {}
    read_only = False
    for item in rest:
        key, has_value, value = item.partition("=")
        if key in ("ro", "rw") and not has_value:
            read_only = key == "ro"
        elif not key:
            raise ValueError(f"--mount {text!r}: empty option")
        else:
            options[key] = value
    return MountSpec(path, kind, source, options, read_only, text)
