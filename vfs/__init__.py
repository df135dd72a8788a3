"""vfs: per-attach namespaces assembled from backends, with the checks done once for all."""

__all__: list[str] = []
