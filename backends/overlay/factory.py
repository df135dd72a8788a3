"""The registry's factory for ``overlay``: options ``lower`` and ``upper``, each a layer spec."""

from __future__ import annotations

from collections.abc import Mapping

from vfs.node import Backend

from ..registry import BackendConfigError, Options
from ..registry import open_backend as open_kind
from .backend import OverlayBackend

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
    """Open the overlay: ``lower`` read-only (or ``shared_lower``, left open at close),
    ``upper`` writable (default ``ram``)."""
    lower_value = options.pop("lower", None)
    upper_kind, upper_source, upper_options = parse_layer("upper", options.pop("upper", "ram"))
    if shared_lower is None and lower_value is None:
        raise BackendConfigError("overlay needs option lower=KIND[:SOURCE], "
                                 "e.g. lower=tar:/srv/image.tar")
    if shared_lower is not None and lower_value is not None:
        raise BackendConfigError("overlay: option lower given with an already open lower layer")
    lower = shared_lower
    if lower is None:
        kind, lsource, loptions = parse_layer("lower", lower_value)
        lower = await open_kind(kind, lsource, loptions, read_only=True, where="overlay lower")
    try:
        upper = await open_kind(upper_kind, upper_source, upper_options, read_only=False,
                                where="overlay upper")
    except BaseException:
        if shared_lower is None:
            await lower.close()
        raise
    backend = OverlayBackend(lower, upper, owns_lower=shared_lower is None)
    try:
        await backend.start()
    except BaseException:
        await backend.close()
        raise
    return backend
