"""ninep: a 9P2000.L file server: the codec, the session and the asyncio server."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:  # one source: pyproject.toml's version, as installed
    __version__ = version("ninep")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
