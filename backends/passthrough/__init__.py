"""The passthrough backend: a host directory, reached only through descriptors below it."""

from .backend import PassthroughBackend, UnownedPassthroughBackend, open_backend
from .node import PassthroughNode

__all__ = ["PassthroughBackend", "PassthroughNode", "UnownedPassthroughBackend", "open_backend"]
