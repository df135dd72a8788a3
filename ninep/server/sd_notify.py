"""Readiness for systemd's ``Type=notify`` services (sd_notify(3)): READY=1 once the
listeners accept, RELOADING=1 around a SIGHUP reload, STOPPING=1 on the way out.

Written here rather than taken from a library: the protocol is one datagram
of ``KEY=VALUE`` lines to the AF_UNIX socket named in $NOTIFY_SOCKET (an
abstract one when it starts with ``@``), and the maintained binding
(python-systemd) is a C extension that needs libsystemd's headers to build.
Without $NOTIFY_SOCKET (not started by systemd) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time

__all__ = ["notify", "notify_reloading"]

log = logging.getLogger(__name__)


def notify(*assignments: str) -> bool:
    """Send ``assignments`` (``"READY=1"``, ``"STATUS=..."``) to systemd; True if sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(assignments).encode())
    except OSError as exc:  # systemd gone or the socket not ours: serving goes on
        log.warning("sd_notify to %s failed: %s", address.replace("\0", "@"), exc)
        return False
    return True


def notify_reloading() -> bool:
    """RELOADING=1 with the CLOCK_MONOTONIC time that ``Type=notify-reload`` wants."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}")
