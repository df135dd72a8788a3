"""``ninep ls -l`` against ``diodls -l`` on one ninep server: a 5,000-entry passthrough directory.

Runs the two listings alternately (so both see the same machine load) and prints
the median wall time of each, their ratio, and the 1-minute load average.

    .venv/bin/python bench/cli_ls.py [--entries 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port, wait_for_port  # noqa: E402

DIODLS = "/usr/sbin/diodls"


def timed(argv: list[str], cwd: Path = ROOT) -> tuple[float, int, bytes]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, timeout=300, check=False, cwd=cwd)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {done.stderr.decode(errors='replace')[-400:]}")
    return elapsed, len(done.stdout.splitlines()), done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5000, help="files in the directory")
    parser.add_argument("--rounds", type=int, default=5, help="listings of each tool")
    parser.add_argument("--client-root", type=Path, default=ROOT, metavar="DIR",
                        help="run clients.cli from this tree (e.g. `git archive` of an older "
                             "commit) to compare before and after")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli-ls-") as tmp:
        big = Path(tmp) / "export" / "big"
        big.mkdir(parents=True)
        for n in range(args.entries):
            (big / f"f{n:05d}").write_bytes(b"x" * (n % 100))
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "ninep", "serve", "--log-level", "warning",
             "--listen", f"tcp://127.0.0.1:{port}", "--mount", f"/=passthrough:{big.parent}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, server)
            ours_argv = [sys.executable, "-m", "ninep.clients.cli", "ls", "-l",
                         "--server", f"tcp://127.0.0.1:{port}", "--uname", "root", "/big"]
            diod_argv = [DIODLS, "-s", f"127.0.0.1:{port}", "-a", "/", "-l", "big"]
            ours: list[float] = []
            noise = 0  # lines ninep ls -l wrote to stderr, all rounds
            diod: list[float] = []
            for _ in range(args.rounds):
                seconds, lines, stderr = timed(ours_argv, args.client_root)
                assert lines == args.entries, lines
                noise += stderr.count(b"\n")
                ours.append(seconds)
                diod.append(timed(diod_argv)[0])
        finally:
            server.terminate()
            server.wait(20)
    o, d = statistics.median(ours), statistics.median(diod)
    print(f"ninep ls -l: median {o:.2f} s of {[round(s, 2) for s in ours]}, "
          f"{noise} stderr lines")
    print(f"diodls -l:   median {d:.2f} s of {[round(s, 2) for s in diod]}")
    print(f"ratio ours/diodls {o / d:.2f}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
