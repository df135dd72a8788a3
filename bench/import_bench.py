"""The 9p backend's cost: diod's clients through a front server importing a back server,
against the back server directly, in one run.

One command::

    python bench/import_bench.py [--runs N] [--size MiB] [--seconds S] [--msize BYTES]

The back server (``ninep serve --mount /=passthrough:DIR``) exports a host directory
holding a file of ``--size`` MiB, and under aname ``ctl`` the synthetic ``null`` and
``zero`` that diodload uses; the front server (a config file) imports both with
``backend = "9p"``, the back's ``ctl`` under its own aname ``ctl``. Each run
measures, interleaved (direct, import, direct, import, ...): ``diodcat`` of the
file (MiB/s) and ``diodload -g`` (Tgetattr on ``null``, ops/s) with 1 and 16
clients. The table gives medians and the median of the run-by-run ratios
import/direct; bench/README.md has the figures and the targets (bulk >= 0.7x,
getattr >= 0.45x).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

DIOD_DIR = os.environ.get("DIOD_BIN_DIR", "/usr/sbin")
DIODCAT = os.path.join(DIOD_DIR, "diodcat")
DIODLOAD = os.path.join(DIOD_DIR, "diodload")
MiB = 1 << 20
FILE = "big.bin"
_OPS = re.compile(r"diodload: (\d+) ops/s")
FRONT_CONFIG = """
[namespaces.ctl]
mounts = [
  {{ path = "/", backend = "9p", source = "tcp://127.0.0.1:{port}", options = {{ aname = "ctl", uname = "root", uid = 0 }} }},
]

[namespaces.data]
mounts = [
  {{ path = "/", backend = "9p", source = "tcp://127.0.0.1:{port}", options = {{ uname = "root", uid = 0 }} }},
]

[[policy]]
name = "diodload"
namespace = "ctl"
match = {{ aname = "ctl" }}

[[policy]]
name = "everyone else"
namespace = "data"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve(name: str, args: list[str], log_dir: Path, python: str) -> Iterator[int]:
    """``ninep serve ARGS`` on a free port; yields the port."""
    port = free_port()
    log = (log_dir / f"{name}.log").open("wb")
    proc = subprocess.Popen([python, "-m", "ninep", "serve", "--log-level", "warning",
                             "--listen", f"tcp://127.0.0.1:{port}", *args],
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited: {(log_dir / f'{name}.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not listen") from None
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def diodcat(port: int, msize: int, size: int) -> float:
    """MiB/s of one diodcat of the file to /dev/null (checked for its length)."""
    start = time.perf_counter()
    result = subprocess.run([DIODCAT, "-s", f"127.0.0.1:{port}", "-m", str(msize), "-a", "",
                             FILE], capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or len(result.stdout) != size:
        raise SystemExit(f"diodcat failed: {result.stderr.decode()} "
                         f"({len(result.stdout)} of {size} bytes)")
    return size / MiB / elapsed


def diodload_getattr(port: int, clients: int, seconds: int) -> float:
    """ops/s of ``diodload -g``, rescaled by wall time (its own count stops at a
    whole-second boundary: bench/README.md)."""
    start = time.perf_counter()
    result = subprocess.run([DIODLOAD, "-s", f"127.0.0.1:{port}", "-g", "-n", str(clients),
                             "-r", str(seconds)], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    match = _OPS.search(result.stdout + result.stderr)
    if result.returncode != 0 or match is None:
        raise SystemExit(f"diodload failed: {result.stdout}{result.stderr}")
    return int(match.group(1)) * seconds / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=256, help="MiB (default 256)")
    parser.add_argument("--seconds", type=int, default=5, help="per diodload run")
    parser.add_argument("--msize", type=int, default=65536, help="diodcat's msize")
    parser.add_argument("--python", default=sys.executable)
    opts = parser.parse_args()
    size = opts.size * MiB
    figures: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        export = root / "export"
        export.mkdir()
        with (export / FILE).open("wb") as out:
            for _ in range(opts.size):
                out.write(os.urandom(MiB))
        back = stack.enter_context(serve("back", ["--mount", f"/=passthrough:{export}"], root,
                                         opts.python))
        # diodload attaches aname "ctl": the front imports the back's ctl there, and its
        # default namespace (the big file) for any other aname
        config = root / "front.toml"
        config.write_text(FRONT_CONFIG.format(port=back))
        front = stack.enter_context(serve("front", ["--config", str(config)], root,
                                          opts.python))
        targets = {"direct": back, "import": front}
        tests = {
            f"diodcat -m {opts.msize} ({opts.size} MiB), MiB/s":
                lambda port: diodcat(port, opts.msize, size),
            "diodload -g -n 1, ops/s": lambda port: diodload_getattr(port, 1, opts.seconds),
            "diodload -g -n 16, ops/s": lambda port: diodload_getattr(port, 16, opts.seconds),
        }
        for run in range(opts.runs):
            for label, measure in tests.items():
                for name, port in targets.items():
                    value = measure(port)
                    figures.setdefault(label, {}).setdefault(name, []).append(value)
                    print(f"run {run + 1}: {label:40s} {name:7s} {value:10.1f}", flush=True)
    print(f"\n{'measure':40s} {'direct':>10s} {'import':>10s} {'ratio':>7s}")
    for label, by in figures.items():
        ratios = [i / d for i, d in zip(by["import"], by["direct"], strict=True)]
        print(f"{label:40s} {statistics.median(by['direct']):10.1f} "
              f"{statistics.median(by['import']):10.1f} {statistics.median(ratios):7.2f}x")


if __name__ == "__main__":
    main()
