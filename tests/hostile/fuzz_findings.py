"""What a fuzz run (tests/hostile/fuzzer.py) left behind: the server log's ERROR
records and tracebacks grouped by where they were raised, whether a fresh client
can still attach, walk and read every mount, and whether the ext2 image is sound."""

from __future__ import annotations

import errno
import re
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ninep.wire import constants as c
from ninep.wire import messages as m

from .fuzzer import CANARY, CANARY_NAME, INLINE_TEXT, FuzzStats

__all__ = ["LogFinding", "fsck_image", "log_findings", "probe_server"]


# --- after the run: does a fresh client still get answers? ------------------------

def probe_server(address: tuple[str, int], timeout: float = 10.0) -> list[str]:
    """Attach, walk and read on every mount as a fresh client; what went wrong."""
    expected = {path: CANARY for path in ("pt", "ptx", "tar", "ext2", "ovl")}
    probes: list[tuple[tuple[str, ...], bytes | None]] = [
        ((), None), (("conn",), None), (("inline",), (INLINE_TEXT + "\n").encode()),
        (("zero",), bytes(64)), (("null",), b"")]
    probes += [((mount, CANARY_NAME), data) for mount, data in expected.items()]
    problems: list[str] = []
    try:
        sock = socket.create_connection(address, timeout)
    except OSError as exc:
        return [f"a fresh connection is refused: {exc}"]
    with sock:
        peer = _BlockingPeer(sock)
        try:
            peer.expect(m.Tversion(65536, m.VERSION_9P2000L), m.Rversion)
            peer.expect(m.Tattach(0, m.NOFID, "root", "", 0), m.Rattach)
        except (OSError, AssertionError) as exc:
            return [f"a fresh client cannot attach: {exc}"]
        for names, data in probes:
            try:
                _probe_one(peer, names, data)
            except (OSError, AssertionError) as exc:
                problems.append(f"/{'/'.join(names)}: {exc}")
                if isinstance(exc, OSError):
                    break  # the connection is gone or stuck
    return problems


def _probe_one(peer: _BlockingPeer, names: tuple[str, ...], data: bytes | None) -> None:
    """Walk, getattr and (``data`` given) read the first 64 bytes, which must be ``data``'s."""
    peer.expect(m.Twalk(0, 1, names), m.Rwalk)
    try:
        peer.expect(m.Tgetattr(1, c.GETATTR_BASIC), m.Rgetattr)
        if data is not None:
            peer.expect(m.Tlopen(1, c.O_RDONLY), m.Rlopen)
            got = peer.expect(m.Tread(1, 0, 64), m.Rread)
            if not isinstance(got, m.Rread) or bytes(got.data) != data[:64]:
                raise AssertionError(f"read {got!r:.120}, expected {data[:64]!r}")
    finally:
        peer.expect(m.Tclunk(1), m.Rclunk)


class _BlockingPeer:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def expect(self, msg: m.Message, want: type[m.Message]) -> m.Message:
        self.sock.sendall(m.encode(1, msg))
        started = time.monotonic()
        while len(self.buf) < 4 or len(self.buf) < struct.unpack_from("<I", self.buf)[0]:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"{type(msg).__name__}: the server closed the connection")
            self.buf += chunk
        size = struct.unpack_from("<I", self.buf)[0]
        frame, self.buf = self.buf[:size], self.buf[size:]
        _, reply = m.decode(frame)
        if not isinstance(reply, want):
            detail = (errno.errorcode.get(reply.ecode, reply.ecode)
                      if isinstance(reply, m.Rlerror) else type(reply).__name__)
            raise AssertionError(f"{type(msg).__name__} answered {detail} "
                                 f"after {time.monotonic() - started:.1f} s")
        return reply



# --- the server's log: ERROR lines and tracebacks, grouped by where they were raised --

@dataclass
class LogFinding:
    """Log records alike in headline, raising frame and exception; ``ports``: the
    client ports they name (FuzzStats.replay_of_port gives the connection)."""

    headline: str
    last_frame: str
    exception: str
    count: int = 0
    ports: list[int] = field(default_factory=list)
    example: str = ""

    def describe(self, stats: FuzzStats | None = None) -> str:
        where = (f"{self.count} x {self.headline!r} raised at {self.last_frame}: "
                 f"{self.exception[:120]}")
        known = [stats.replay_of_port[p] for p in self.ports if stats and p in stats.replay_of_port]
        if known:
            where += f" (replay: python bench/fuzz.py {known[0]})"
        return where


_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (\w+) (\S+): (.*)$")
_FRAME = re.compile(r'^\s+File "(.*?)", line (\d+), in (\S+)')
_PEER = re.compile(r"\S*127\.0\.0\.1:(\d+)\S*")


def log_findings(text: str) -> list[LogFinding]:
    """Every ERROR/CRITICAL record and every traceback of a server log, grouped."""
    groups: dict[tuple[str, str, str], LogFinding] = {}
    record: list[str] = []
    for line in [*text.splitlines(), "0000-00-00 00:00:00,0 END end: end"]:
        if _RECORD.match(line) and record:
            _add_record(record, groups)
            record = []
        record.append(line)
    return sorted(groups.values(), key=lambda f: -f.count)


def _add_record(lines: list[str], groups: dict[tuple[str, str, str], LogFinding]) -> None:
    head = _RECORD.match(lines[0])
    level = head.group(1) if head else ""
    has_traceback = any(line.startswith("Traceback") for line in lines)
    if level not in ("ERROR", "CRITICAL") and not has_traceback:
        return
    message = head.group(3) if head else lines[0]
    ports = [int(p) for p in _PEER.findall(message)]
    headline = re.sub(r"\d+", "N", _PEER.sub("PEER", message))[:160]
    frames = [f"{Path(f.group(1)).name}:{f.group(2)} in {f.group(3)}"
              for f in map(_FRAME.match, lines) if f]
    tail = [line for line in lines[1:] if line and not line[0].isspace()
            and not line.startswith(("Traceback", "During handling", "The above exception"))]
    exception = tail[-1][:200] if tail else ""
    key = (headline, frames[-1] if frames else "", exception.split(":")[0])
    finding = groups.setdefault(key, LogFinding(headline, key[1] or "(no traceback)", exception,
                                                example="\n".join(lines[:40])))
    finding.count += 1
    finding.ports.extend(ports[:1])


def fsck_image(image: Path) -> str | None:
    """``e2fsck -fn`` of the fuzzed ext2 image once the server stopped; its complaint,
    or None when the image is consistent (exit status 0)."""
    e2fsck = shutil.which("e2fsck") or "/usr/sbin/e2fsck"
    result = subprocess.run([e2fsck, "-fn", str(image)], capture_output=True, text=True)
    if result.returncode == 0:
        return None
    return f"e2fsck -fn exit status {result.returncode}:\n{(result.stdout + result.stderr)[-3000:]}"
