"""Warnings about refused attaches and Tauths, rate-limited per peer, so that a client
refused in a loop cannot flood the log: the first few lines of each interval in
full, then one line saying how many more there were."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["REFUSALS", "RefusalLog", "peer_key"]

log = logging.getLogger(__name__)


def peer_key(peer: object) -> str:
    """Whom a refusal counts against: the IP address of a TCP or TLS peer (not its
    port: each connection has a new one), the uid of a UNIX socket peer."""
    ip = getattr(peer, "ip", None)
    if ip is not None:
        return str(ip)
    uid = getattr(peer, "uid", None)
    transport = getattr(peer, "transport", "")
    if uid is not None:
        return f"{transport} uid {uid}"
    return str(peer)


@dataclass(slots=True)
class _Window:
    since: float
    logged: int = 0
    suppressed: int = 0


class RefusalLog:
    """Per peer: ``shown`` warnings per ``interval`` seconds; past that, one summary
    when the next interval begins. At most ``max_peers`` peers are remembered (the
    least recently refused is forgotten), so a crowd of peers cannot grow it."""

    def __init__(self, shown: int = 10, interval: float = 60.0, max_peers: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.shown = shown
        self.interval = interval
        self.max_peers = max_peers
        self._clock = clock
        self._peers: OrderedDict[str, _Window] = OrderedDict()

    def allow(self, peer: object) -> bool:
        """True when a refusal of ``peer`` may be logged in full now."""
        key = peer_key(peer)
        now = self._clock()
        window = self._peers.get(key)
        if window is None:
            window = self._peers[key] = _Window(now)
            if len(self._peers) > self.max_peers:
                self._peers.popitem(last=False)
        else:
            self._peers.move_to_end(key)
        if now - window.since >= self.interval:
            if window.suppressed:
                log.warning("%s: %d more refusals were not logged in the last %.0f s",
                            key, window.suppressed, now - window.since)
            window.since, window.logged, window.suppressed = now, 0, 0
        if window.logged < self.shown:
            window.logged += 1
            return True
        if not window.suppressed:
            log.warning("%s: more than %d refusals within %.0f s: the next ones are "
                        "counted, not logged", key, self.shown, self.interval)
        window.suppressed += 1
        return False

    def warning(self, logger: logging.Logger, peer: object, message: str,
                *args: object) -> None:
        """``logger.warning(message, *args)`` if ``peer`` may be logged now, else debug."""
        if self.allow(peer):
            logger.warning(message, *args)
        else:
            logger.debug(message, *args)

    def __len__(self) -> int:
        return len(self._peers)


REFUSALS = RefusalLog()
