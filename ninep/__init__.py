"""ninep: a 9P2000.L file server: the codec, the session and the asyncio server."""

__all__ = ["__version__"]

__version__ = "0.1.0"
