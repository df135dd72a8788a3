"""Client errors: protocol failures, and attaching the user's path to an errno."""

from __future__ import annotations

import errno
import os

__all__ = ["ProtocolError", "TLSError", "VersionError", "lerror", "with_path"]


class ProtocolError(ConnectionError):
    """The server broke the 9P2000.L protocol, or the connection is gone."""


class VersionError(ProtocolError):
    """The server did not accept the 9P2000.L dialect."""


class TLSError(ProtocolError):
    """A TLS handshake failed; the message says why (unknown CA, name mismatch, ...)."""


def lerror(ecode: int) -> OSError:
    """The OSError an Rlerror stands for. An errno this host does not know (0, or past
    the kernel's 4095 MAX_ERRNO, which a Linux client would take for a pointer) is EIO:
    passed on, it would be OSError(0) here, or a wrong error for a front's clients."""
    if ecode in errno.errorcode:
        return OSError(ecode, os.strerror(ecode))
    return OSError(errno.EIO, f"server sent errno {ecode}, which is none")


class with_path:
    """Re-raise an OSError that carries no filename as OSError(errno, strerror, path)."""

    __slots__ = ("path", "path2")

    def __init__(self, path: str, path2: str | None = None) -> None:
        self.path = path
        self.path2 = path2

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if not isinstance(exc, OSError) or exc.errno is None:
            return
        if exc.filename is None or (self.path2 is not None and exc.filename == self.path
                                    and exc.filename2 is None):
            raise OSError(exc.errno, exc.strerror, self.path, None, self.path2) from None
