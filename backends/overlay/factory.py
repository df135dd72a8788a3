"""The registry's factory for ``overlay``: options ``lower`` and ``upper``, each a layer spec."""

from __future__ import annotations

from collections.abc import Mapping

from ninep.vfs.node import Backend

from ..registry import BackendConfigError, Options, option_bool
from ..registry import open_backend as open_kind
from .backend import OverlayBackend
from .lowers import Release, acquire_lower

__all__ = ["LayerSpec", "open_backend", "parse_layer"]

LayerSpec = tuple[str, str, dict[str, object]]  # kind, source, options
_TABLE_KEYS = {"backend", "source", "options"}


def parse_layer(name: str, value: object) -> LayerSpec:
    """``"KIND[:SOURCE]"`` (command line) or ``{backend, source, options}`` (TOML)."""
    if isinstance(value, str):
        kind, _, source = value.partition(":")
        if not kind:
            raise BackendConfigError(f"option {name}={value!r}: expected KIND[:SOURCE], "
                                     f"e.g. {name}=tar:/srv/image.tar")
        return kind, source, {}
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - _TABLE_KEYS)
        if unknown:
            raise BackendConfigError(f"option {name}: unknown key {unknown[0]!r} "
                                     f"(known: backend, source, options)")
        table_kind = value.get("backend")
        table_source = value.get("source", "")
        table_options = value.get("options", {})
        if not isinstance(table_kind, str) or not table_kind:
            raise BackendConfigError(f"option {name}: 'backend' must name a backend kind")
        if not isinstance(table_source, str):
            raise BackendConfigError(f"option {name}: 'source' must be a string")
        if not isinstance(table_options, Mapping):
            raise BackendConfigError(f"option {name}: 'options' must be a table")
        return table_kind, table_source, dict(table_options)
    raise BackendConfigError(f"option {name}={value!r}: expected KIND[:SOURCE] or a table "
                             f"{{backend = ..., source = ..., options = {{...}}}}")


async def open_backend(source: str, options: Options, read_only: bool, *,
                       shared_lower: Backend | None = None) -> OverlayBackend:
    """Open the overlay: ``lower`` read-only, ``upper`` writable (default ``ram``).

    Overlays naming the same lower (kind, source and options) share one instance
    unless ``share_lower=false``; ``shared_lower`` hands in one opened by the caller,
    which it closes itself.
    """
    lower_value = options.pop("lower", None)
    share = option_bool(options, "share_lower", True)
    upper_kind, upper_source, upper_options = parse_layer("upper", options.pop("upper", "ram"))
    if shared_lower is None and lower_value is None:
        raise BackendConfigError("overlay needs option lower=KIND[:SOURCE], "
                                 "e.g. lower=tar:/srv/image.tar")
    if shared_lower is not None and lower_value is not None:
        raise BackendConfigError("overlay: option lower given with an already open lower layer")
    lower, release = await _open_lower(lower_value, share, shared_lower)
    try:
        upper = await open_kind(upper_kind, upper_source, upper_options, read_only=False,
                                where="overlay upper")
    except BaseException:
        await release()
        raise
    backend = OverlayBackend(lower, upper, owns_lower=False, release_lower=release)
    try:
        await backend.start()
    except BaseException:
        await backend.close()
        raise
    return backend


async def _open_lower(value: object, share: bool,
                      given: Backend | None) -> tuple[Backend, Release]:
    if given is not None:
        return given, _nothing
    kind, source, options = parse_layer("lower", value)
    if share:
        return await acquire_lower(kind, source, options)
    lower = await open_kind(kind, source, options, read_only=True, where="overlay lower")
    return lower, lower.close


async def _nothing() -> None:
    """The caller that opened a lower layer closes it."""
