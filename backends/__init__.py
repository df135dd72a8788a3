"""ninep.backends: the file systems a namespace mounts, each kind opened through registry.py."""

__all__: list[str] = []
