"""What a client piling up byte-range locks costs, and what others wait meanwhile.

Starts ``ninep serve`` (the embedded default: a RAM disk) as a process. One
connection takes LOCKS write locks on one file, on every other byte, sent
pipelined 256 at a time, across PROCS lock owners (Tlock's proc_id); then it
sends BURST more Tlocks in one write while another client makes Tgetattrs
one at a time. Prints the time the locks took to take, and the other client's
Tgetattr round trips during the burst (median and max).

    python bench/lock_latency.py                        # 4,000 locks, burst 250
    python bench/lock_latency.py --server-root /tmp/old-tree --locks 8000
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
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ninep.wire import messages as m

ROOT, FILE = 1, 2
WRLCK = 1


class Peer:
    """A blocking raw 9P client (just enough for this benchmark)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
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

    def attach(self) -> None:
        self.rpc(m.Tversion(65536, "9P2000.L"), m.NOTAG)
        assert isinstance(self.rpc(m.Tattach(ROOT, m.NOFID, "root", "", 0)), m.Rattach)

    def pipelined(self, requests: list[m.Message]) -> list[m.Message]:
        self.sock.sendall(b"".join(m.encode(tag, r) for tag, r in enumerate(requests, 1)))
        got = dict(self.recv() for _ in requests)
        return [got[tag] for tag in range(1, len(requests) + 1)]


def start_server(root: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--listen",
                                 f"tcp://127.0.0.1:{port}", "--mount", "/=ram"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                env={**os.environ, "PYTHONPATH": str(root)})
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the server did not start")


def run(root: Path, locks: int, procs: int, burst: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(root, Path(tmp) / "server.log")
        try:
            greedy = Peer(port)
            greedy.attach()
            greedy.rpc(m.Twalk(ROOT, FILE, []))
            assert isinstance(greedy.rpc(m.Tlcreate(FILE, "f", 2, 0o644, 0)), m.Rlcreate)
            requests: list[m.Message] = [m.Tlock(FILE, WRLCK, 0, 2 * n, 1, n % procs, "bench")
                                         for n in range(locks)]
            started = time.perf_counter()
            outcome: dict[str, int] = {}
            for first in range(0, locks, 256):
                for reply in greedy.pipelined(requests[first:first + 256]):
                    kind = type(reply).__name__ if isinstance(reply, m.Rlock) else "error"
                    outcome[kind] = outcome.get(kind, 0) + 1
            took = time.perf_counter() - started
            print(f"{locks} Tlocks ({procs} owners): {took:.2f} s, {outcome}")

            other = Peer(port)
            other.attach()
            rtts: list[float] = []
            done = threading.Event()

            def getattrs() -> None:
                while not done.is_set():
                    t0 = time.perf_counter()
                    other.rpc(m.Tgetattr(ROOT, 0x7FF))
                    rtts.append(time.perf_counter() - t0)

            watcher = threading.Thread(target=getattrs)
            watcher.start()
            time.sleep(0.2)
            more = [m.Tlock(FILE, WRLCK, 0, 2 * (locks + n) + 1, 1, 0, "bench")
                    for n in range(burst)]
            t0 = time.perf_counter()
            greedy.pipelined(more)
            burst_took = time.perf_counter() - t0
            time.sleep(0.2)
            done.set()
            watcher.join()
            print(f"burst of {burst} Tlocks: {burst_took * 1000:.1f} ms; another client's "
                  f"Tgetattr meanwhile: median {statistics.median(rtts) * 1000:.2f} ms, "
                  f"max {max(rtts) * 1000:.2f} ms ({len(rtts)} round trips)")
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locks", type=int, default=4000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--burst", type=int, default=250)
    parser.add_argument("--server-root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    run(args.server_root, args.locks, args.procs, args.burst)


if __name__ == "__main__":
    main()
