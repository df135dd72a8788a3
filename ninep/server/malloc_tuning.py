"""glibc's malloc thresholds for a server whose frames are up to msize bytes.

glibc serves allocations above its mmap threshold (128 KiB at first, raised on
the fly when such a block is freed) with a fresh mmap, and gives free memory at
the top of a heap back to the kernel past its trim threshold. A server that
receives and answers 1 MiB frames allocates and frees 1 MiB blocks all the
time; whether the dynamic threshold ever rose depended on what the process had
freed before (it did not when the package came from PYTHONPATH), and then
every 1 MiB frame cost 256 page faults: `diodload -m 1048576` copied 466 MiB/s
against 674 at 64 KiB, 1.6 ms of server CPU per MiB against 0.6 (bench/README,
msize_copy.py). Fixed thresholds make every frame up to 4 MiB come from the
heap, and keep up to 32 MiB of freed memory at a heap's top for the next ones.

Nothing is changed where the environment already sets malloc's tunables, or
where the C library has no mallopt (musl's is a stub that refuses).
"""

from __future__ import annotations

import ctypes
import logging
import os

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_malloc"]

log = logging.getLogger(__name__)

#: mallopt(3)'s parameter numbers (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: blocks up to this size come from the heap: a frame at msize 1 MiB with room to spare
MMAP_THRESHOLD = 4 << 20
#: freed memory kept at a heap's top before it goes back to the kernel
TRIM_THRESHOLD = 32 << 20
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def tune_malloc(environ: dict[str, str] | None = None) -> bool:
    """Set the thresholds once, before the server allocates frames; False if left alone."""
    env = os.environ if environ is None else environ
    if any(name in env for name in _ENVIRONMENT) or "glibc.malloc" in env.get(
            "GLIBC_TUNABLES", ""):
        return False  # the operator's choice
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not done:
        log.debug("mallopt refused the thresholds; malloc keeps its own")
    return done
