"""Copy speed by msize: `diodload` at -m 65536 and -m 1048576 against our server.

Users follow the README's ``msize=1048576``; a larger msize must not copy slower
than 64 KiB. For each tree given (a source root put first on PYTHONPATH, so a
worktree of an older commit compares with this one in the same run), a server
is started pinned with the client to one CPU, and `diodload` (read from the
ctl namespace's zero, written to its null) runs at each msize and client count,
interleaved over the trees. Reported per figure: MiB/s (diodload's rMB/s, the
read half of the copy) and the server's CPU time per MiB (utime + stime from
/proc), which moves far less than MiB/s when other work shares the machine.

    python bench/msize_copy.py                          # this tree, 3 runs, -n 1 and 16
    python bench/msize_copy.py --tree /tmp/old --tree . --runs 5 --clients 1
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DIODLOAD = "/usr/sbin/diodload"
MSIZES = (65536, 1 << 20)
_SUMMARY = re.compile(r"diodload: (\d+) ops/s, (\d+) rMB/s")
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(tree: Path, cpu: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.Popen(["taskset", "-c", str(cpu), sys.executable, "-m", "ninep", "serve",
                             "--listen", f"tcp://127.0.0.1:{port}"], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"msize_copy: the server of {tree} did not start")


def copy_once(pid: int, port: int, msize: int, clients: int, runtime: int,
              cpu: int) -> tuple[float, float]:
    """(MiB/s, server CPU ms per MiB) of one diodload run."""
    before = cpu_seconds(pid)
    done = subprocess.run(["taskset", "-c", str(cpu), DIODLOAD, "-s", f"127.0.0.1:{port}",
                           "-m", str(msize), "-n", str(clients), "-r", str(runtime)],
                          capture_output=True, text=True, timeout=runtime + 60)
    spent = cpu_seconds(pid) - before
    summary = _SUMMARY.search(done.stdout + done.stderr)
    if done.returncode != 0 or summary is None or not int(summary.group(2)):
        sys.exit(f"msize_copy: diodload failed: {(done.stdout + done.stderr)[-300:]}")
    rate = float(summary.group(2))
    return rate, spent * 1000 / (rate * runtime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tree", action="append", type=Path, metavar="DIR",
                        help="a source root to measure (repeatable; default this one)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs (default 3)")
    parser.add_argument("--clients", default="1,16", help="diodload -n values (default 1,16)")
    parser.add_argument("--runtime", type=int, default=3, help="diodload -r seconds (default 3)")
    parser.add_argument("--cpu", type=int, default=0, help="CPU for servers and clients")
    args = parser.parse_args(argv)
    trees = [t.resolve() for t in args.tree or [REPO]]
    clients = [int(n) for n in args.clients.split(",")]
    servers = {tree: start(tree, args.cpu) for tree in trees}
    rates: dict[tuple[Path, int, int], list[float]] = {}
    costs: dict[tuple[Path, int, int], list[float]] = {}
    try:
        for run in range(1, args.runs + 1):
            for n in clients:
                for msize in MSIZES:
                    for tree, (proc, port) in servers.items():
                        rate, cost = copy_once(proc.pid, port, msize, n, args.runtime, args.cpu)
                        rates.setdefault((tree, n, msize), []).append(rate)
                        costs.setdefault((tree, n, msize), []).append(cost)
                        print(f"  run {run} {tree} -n {n} -m {msize}: {rate:,.0f} MiB/s, "
                              f"{cost:.3f} ms CPU/MiB", file=sys.stderr, flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait()
    print(f"diodload copy by msize: medians of {args.runs} interleaved runs, -r {args.runtime}, "
          f"taskset -c {args.cpu}, 1-min load {os.getloadavg()[0]:.1f}")
    print(f"{'tree':40} {'-n':>3} {'64K MiB/s':>10} {'1M MiB/s':>10} {'1M/64K':>7} "
          f"{'64K ms/MiB':>11} {'1M ms/MiB':>10}")
    for tree in trees:
        for n in clients:
            small, big = (statistics.median(rates[tree, n, ms]) for ms in MSIZES)
            c_small, c_big = (statistics.median(costs[tree, n, ms]) for ms in MSIZES)
            print(f"{tree!s:40} {n:>3} {small:>10,.0f} {big:>10,.0f} {big / small:>7.2f} "
                  f"{c_small:>11.3f} {c_big:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
