"""Files that other mounts serve as images: claimed, so the namespace keeps them in place.

An ext2 image or a tar archive may live in another mount of the same server
(``ext2:@/srv/root.img``). While it is served, the file is claimed here by
(backend instance, inode number): read-only images share a claim, a
read-write image holds it alone (the writer's lock of a file in a mount, as
flock(2) is for a host file). vfs/namespace.py refuses what would pull the
bytes from under a served image, as Linux does for a file the kernel uses:
unlink and rename of it (or over it) answer EBUSY, as for a mount point;
opening it for writing and truncating it answer ETXTBSY, as for an active
swap file (mm/swapfile.c sets S_SWAPFILE, which open and truncate check).
"""

from __future__ import annotations

import errno
import threading
import weakref
from dataclasses import dataclass

from .node import Backend

__all__ = ["CLAIMS", "Claim", "ImageClaims"]


@dataclass(frozen=True, slots=True)
class Claim:
    """One served image's hold on its container file."""

    backend_id: int
    ino: int
    exclusive: bool
    holder: str  # what serves it, for messages: "ext2 image @/srv/root.img"


class ImageClaims:
    """The claimed files of every backend instance of this process.

    Taken and dropped from image threads as well as the event loop (an image opens
    in a thread), so changes hold a lock; the namespace's reads are single dict
    lookups and take none.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_backend: weakref.WeakKeyDictionary[Backend, dict[int, list[Claim]]] = \
            weakref.WeakKeyDictionary()

    def claim(self, backend: Backend, ino: int, exclusive: bool, holder: str) -> Claim:
        """Claim file ``ino`` of ``backend``; EBUSY if a writer holds it, or readers do
        and ``exclusive`` is asked for."""
        with self._lock:
            files = self._by_backend.setdefault(backend, {})
            held = files.get(ino, [])
            if held and (exclusive or held[0].exclusive):
                raise OSError(errno.EBUSY, f"the file is in use as {held[0].holder}")
            claim = Claim(id(backend), ino, exclusive, holder)
            files[ino] = [*held, claim]
            return claim

    def release(self, backend: Backend, claim: Claim) -> None:
        with self._lock:
            files = self._by_backend.get(backend, {})
            left = [c for c in files.get(claim.ino, []) if c is not claim]
            if left:
                files[claim.ino] = left
            else:
                files.pop(claim.ino, None)

    def any_in(self, backend: Backend) -> bool:
        """Whether any file of ``backend`` is claimed (the namespace's cheap first test)."""
        return bool(self._by_backend.get(backend))

    def holder(self, backend: Backend, ino: int) -> str | None:
        """What serves file ``ino`` of ``backend`` as an image, or None."""
        held = self._by_backend.get(backend, {}).get(ino)
        return held[0].holder if held else None


#: The one table of claims: backend instances are shared across namespaces and reloads.
CLAIMS = ImageClaims()
