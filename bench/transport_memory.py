"""Memory a hostile connection can make the server take, and what others wait meanwhile.

Starts ``ninep serve`` (the embedded default: a RAM disk) as a process and
reads its /proc/PID/status:

- burst: connections that each create a file of one msize, send BURST Treads
  of a whole msize in one write and read nothing back; the server's RSS before
  and its peak (VmHWM), and the round-trip times of another client's Tgetattr
  made meanwhile;
- cold: one connection that sends a Tread for each MiB of a 256 MiB
  passthrough file just dropped from the page cache (each waits for a thread,
  holding its buffer), reading nothing back; RSS before and peak;
- headers: CONNS connections that each send a 1 MiB size field before any
  Tversion and the body but its last byte; RSS before and after.

    python bench/transport_memory.py                       # both, default sizes
    python bench/transport_memory.py --burst 2000 --server-root /tmp/old-tree
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ninep.wire import messages as m

MIB = 1 << 20


class Peer:
    """A blocking raw 9P client (just enough for this benchmark)."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def recv(self) -> tuple[int, m.Message]:
        while True:
            if len(self.buf) >= 4:
                size = struct.unpack_from("<I", self.buf)[0]
                if len(self.buf) >= size:
                    frame, self.buf = self.buf[:size], self.buf[size:]
                    return m.decode(frame)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def rpc(self, msg: m.Message, tag: int = 1) -> m.Message:
        self.sock.sendall(m.encode(tag, msg))
        return self.recv()[1]

    def handshake(self, msize: int) -> None:
        self.rpc(m.Tversion(msize, "9P2000.L"), m.NOTAG)
        self.rpc(m.Tattach(1, m.NOFID, "root", "", 0))


def status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def start_server(root: Path, log: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--listen",
                                 f"tcp://127.0.0.1:{port}", *args], cwd=root, stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(root)})
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the server did not start: {log.read_text()[-2000:]}")


def burst(port: int, pid: int, connections: int, msize: int, count: int) -> dict[str, float]:
    peers = [Peer(port) for _ in range(connections)]
    for i, peer in enumerate(peers):
        peer.handshake(msize)
        peer.rpc(m.Twalk(1, 2, ()))
        peer.rpc(m.Tlcreate(2, f"big{i}", 2, 0o644, 0))
        data = bytes(msize)
        for offset in range(0, msize, msize - 23):
            peer.rpc(m.Twrite(2, offset, data[offset:offset + msize - 23]))
    before = status(pid, "VmRSS")
    frames = b"".join(m.encode(tag, m.Tread(2, 0, msize - 11)) for tag in range(count))
    for peer in peers:
        peer.sock.sendall(frames)
    other = Peer(port)
    other.handshake(8192)
    times = []
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        start = time.perf_counter()
        other.rpc(m.Tgetattr(1, 0x7FF))
        times.append(time.perf_counter() - start)
    peak = status(pid, "VmHWM")
    for peer in [*peers, other]:
        peer.sock.close()
    return {"rss before MiB": before / 1024, "peak MiB": peak / 1024,
            "growth MiB": (peak - before) / 1024,
            "getattr median ms": statistics.median(times) * 1e3,
            "getattr max ms": max(times) * 1e3, "getattrs": len(times)}


def cold(port: int, pid: int, export: Path, mibs: int) -> dict[str, float]:
    with (export / "cold").open("rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    peer = Peer(port)
    peer.handshake(MIB)
    peer.rpc(m.Twalk(1, 2, ("cold",)))
    peer.rpc(m.Tlopen(2, os.O_RDONLY))
    before = status(pid, "VmRSS")
    order = [(i * 37) % mibs for i in range(mibs)]  # no sequential readahead
    peer.sock.sendall(b"".join(m.encode(i, m.Tread(2, i * MIB, MIB - 11)) for i in order))
    time.sleep(1.0)  # the server starts what it will; then every reply is read
    for _ in range(mibs):
        peer.recv()
    peak = status(pid, "VmHWM")
    peer.sock.close()
    return {"rss before MiB": before / 1024, "peak MiB": peak / 1024,
            "growth MiB": (peak - before) / 1024}


def headers(port: int, pid: int, conns: int) -> dict[str, float]:
    before = status(pid, "VmRSS")
    socks = []
    head = struct.pack("<IBH", MIB, m.Tversion.type, m.NOTAG)
    body = bytes(MIB - len(head) - 1)
    refused = 0
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            s.sendall(head + body)
        except OSError:
            refused += 1
        socks.append(s)
    time.sleep(1.0)
    after = status(pid, "VmRSS")
    for s in socks:
        s.close()
    return {"rss before MiB": before / 1024, "rss after MiB": after / 1024,
            "growth MiB": (after - before) / 1024, "refused while sending": refused}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=10000, help="Treads per connection")
    parser.add_argument("--conns", type=int, default=500, help="connections with 1 MiB headers")
    parser.add_argument("--server-root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the source tree whose server is measured")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        export.mkdir()
        mibs = 256
        with (export / "cold").open("wb") as f:
            for i in range(mibs):
                f.write(struct.pack("<Q", i) * (MIB // 8))
            os.fsync(f.fileno())
        for label, run, extra in (
            (f"1 connection, {args.burst} Treads of 1 MiB, never read",
             lambda p, pid: burst(p, pid, 1, MIB, args.burst), ()),
            (f"3 connections, {args.burst} Treads of 256 KiB each, never read",
             lambda p, pid: burst(p, pid, 3, 256 << 10, args.burst), ()),
            (f"1 connection, {mibs} cold passthrough Treads of 1 MiB, read late",
             lambda p, pid: cold(p, pid, export, mibs), ("--mount", f"/=passthrough:{export}")),
            (f"{args.conns} connections, a 1 MiB size field before Tversion",
             lambda p, pid: headers(p, pid, args.conns), ()),
        ):
            proc, port = start_server(args.server_root, Path(tmp) / "server.log", *extra)
            try:
                figures = run(port, proc.pid)
            finally:
                proc.terminate()
                proc.wait(30)
            print(label)
            for key, value in figures.items():
                print(f"  {key:24} {value:10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
