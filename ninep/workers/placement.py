"""Which mounts every worker serves itself, and which keep their state in one process.

A mount whose state lives outside the process (a host directory, a tar archive,
a read-only ext2 image, synthetic files) reads the same from every worker, so
each worker opens its own instance. A shared RAM disk, a read-write ext2 image
(whose allocation maps and caches live in the process that writes them, and
whose image lock admits one writer) or an overlay whose writable upper layer is
such a mount cannot be opened twice without two diverging trees. A mount with
``scope = "connection"`` belongs to one connection, which lives in one worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ninep.backends.registry import MountSpec
from ninep.config.file import Config

__all__ = ["keeps_state_in_process", "process_local_mounts"]


def keeps_state_in_process(kind: str, options: Mapping[str, object], read_only: bool) -> bool:
    """Whether one shared instance of this mount holds its tree in the serving process."""
    if kind == "ram":
        return True
    if kind == "ext2":
        return not read_only
    if kind == "overlay" and not read_only:
        upper = options.get("upper", "ram")
        if isinstance(upper, Mapping):
            upper_kind = str(upper.get("backend", ""))
            upper_options = upper.get("options", {})
        else:
            upper_kind = str(upper).partition(":")[0]
            upper_options = {}
        return keeps_state_in_process(
            upper_kind, upper_options if isinstance(upper_options, Mapping) else {}, False)
    return False


def process_local_mounts(specs: Sequence[MountSpec], config: Config | None) -> list[str]:
    """The shared mounts of this configuration that keep their state in one process,
    each as "NAMESPACE: PATH (KIND)"; the command line's default is a RAM disk."""
    if config is not None:
        mounts = [(ns.name, m) for ns in config.namespaces.values() for m in ns.mounts]
    elif not specs:
        return ["default: / (ram, the embedded default)"]
    else:
        mounts = [("default", spec) for spec in specs]
    return [f"{name}: {m.path} ({m.kind})" for name, m in mounts
            if m.scope == "shared" and keeps_state_in_process(m.kind, m.options, m.read_only)]
