"""The 9p backend's cost: diod's clients through a front server importing a back server,
against the back server directly, in one run.

One command::

    python bench/import_bench.py [--runs N] [--size MiB] [--seconds S] [--msize BYTES]
                                 [--base TREE] [--getattr-only]

The back server (``ninep serve --mount /=passthrough:DIR``) exports a host directory
holding a file of ``--size`` MiB, and under aname ``ctl`` the synthetic ``null`` and
``zero`` that diodload uses; the front server (a config file) imports both with
``backend = "9p"``, the back's ``ctl`` under its own aname ``ctl``. Each run
measures, interleaved (direct, import, direct, import, ...): ``diodcat`` of the
file (MiB/s) and ``diodload -g`` (Tgetattr on ``null``, ops/s) with 1 and 16
clients. The table gives medians and the median of the run-by-run ratios
import/direct; bench/README.md has the figures and the targets (bulk >= 0.7x,
getattr >= 0.45x).

On a loaded machine ops/s say little: each diodload figure also gives the
servers' CPU time per operation (front and back, from /proc/PID/stat), which
the load does not change much. ``--base TREE`` starts a second back and front
pair from another checkout (``git worktree add TREE COMMIT``; run with
PYTHONPATH=TREE and this venv) and measures it interleaved with this tree's,
so a change is an A/B ratio from the same minutes.
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from cpu_cost import cpu_seconds

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


@dataclass(frozen=True)
class Server:
    port: int
    pid: int


@contextmanager
def serve(name: str, args: list[str], log_dir: Path, python: str,
          tree: str | None = None) -> Iterator[Server]:
    """``ninep serve ARGS`` on a free port, from ``tree`` when given (PYTHONPATH)."""
    port = free_port()
    log = (log_dir / f"{name}.log").open("wb")
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, env.get("PYTHONPATH")) if p)
    # run in the tree: "python -m" puts the working directory first on sys.path
    proc = subprocess.Popen([python, "-m", "ninep", "serve", "--log-level", "warning",
                             "--listen", f"tcp://127.0.0.1:{port}", *args],
                            stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=tree)
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
        yield Server(port, proc.pid)
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


@dataclass(frozen=True)
class Load:
    """One diodload run: ops/s, and server CPU microseconds per operation."""

    ops: float
    front_us: float  # 0 for a run against the back server directly
    back_us: float


def diodload_getattr(port: int, clients: int, seconds: int,
                     pids: tuple[int, ...]) -> Load:
    """``diodload -g``: ops/s rescaled by wall time (its own count stops at a
    whole-second boundary: bench/README.md), and the CPU per operation of the
    servers in ``pids`` (front first when there are two)."""
    before = [cpu_seconds(pid) for pid in pids]
    start = time.perf_counter()
    result = subprocess.run([DIODLOAD, "-s", f"127.0.0.1:{port}", "-g", "-n", str(clients),
                             "-r", str(seconds)], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    spent = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
    match = _OPS.search(result.stdout + result.stderr)
    if result.returncode != 0 or match is None:
        raise SystemExit(f"diodload failed: {result.stdout}{result.stderr}")
    ops = int(match.group(1)) * seconds / elapsed
    per_op = [s / (ops * elapsed) * 1e6 for s in spent]
    return Load(ops, per_op[0] if len(pids) == 2 else 0.0, per_op[-1])


def median_ratio(top: list[float], bottom: list[float]) -> float:
    return statistics.median(t / b for t, b in zip(top, bottom, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=256, help="MiB (default 256)")
    parser.add_argument("--seconds", type=int, default=5, help="per diodload run")
    parser.add_argument("--msize", type=int, default=65536, help="diodcat's msize")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--base", metavar="TREE",
                        help="also measure servers run from this checkout, interleaved")
    parser.add_argument("--getattr-only", action="store_true", help="skip diodcat")
    opts = parser.parse_args()
    size = opts.size * MiB
    trees: dict[str, str | None] = {"": None}
    if opts.base:
        trees = {"this ": None, "base ": opts.base}
    figures: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        export = root / "export"
        export.mkdir()
        with (export / FILE).open("wb") as out:
            for _ in range(opts.size if not opts.getattr_only else 1):
                out.write(os.urandom(MiB))
        targets: dict[str, tuple[Server, tuple[int, ...]]] = {}
        for label, tree in trees.items():
            tag = label.strip() or "run"
            back = stack.enter_context(serve(f"back-{tag}", ["--mount", f"/=passthrough:{export}"],
                                             root, opts.python, tree))
            # diodload attaches aname "ctl": the front imports the back's ctl there, and
            # its default namespace (the big file) for any other aname
            config = root / f"front-{tag}.toml"
            config.write_text(FRONT_CONFIG.format(port=back.port))
            front = stack.enter_context(serve(f"front-{tag}", ["--config", str(config)], root,
                                              opts.python, tree))
            targets[f"{label}direct"] = (back, (back.pid,))
            targets[f"{label}import"] = (front, (front.pid, back.pid))
        tests: dict[str, Callable[[Server, tuple[int, ...]], Load | float]] = {}
        if not opts.getattr_only:
            tests[f"diodcat -m {opts.msize} ({opts.size} MiB), MiB/s"] = \
                lambda server, _pids: diodcat(server.port, opts.msize, size)
        def load(clients: int) -> Callable[[Server, tuple[int, ...]], Load]:
            return lambda server, pids: diodload_getattr(server.port, clients, opts.seconds,
                                                          pids)

        for clients in (1, 16):
            tests[f"diodload -g -n {clients}"] = load(clients)
        for run in range(opts.runs):
            for label, measure in tests.items():
                for name, (server, pids) in targets.items():
                    value = measure(server, pids)
                    by = figures.setdefault(label, {})
                    if isinstance(value, Load):
                        by.setdefault(f"{name} ops/s", []).append(value.ops)
                        by.setdefault(f"{name} cpu", []).append(value.front_us + value.back_us)
                        shown = (f"{value.ops:10.1f} ops/s, server CPU {value.front_us:5.1f} "
                                 f"+ {value.back_us:5.1f} us/op")
                    else:
                        by.setdefault(name, []).append(value)
                        shown = f"{value:10.1f}"
                    print(f"run {run + 1}: {label:36s} {name:12s} {shown}", flush=True)
    print()
    for label, by in figures.items():
        for tree in trees:
            for unit in ((" ops/s", " cpu") if label.startswith("diodload") else ("",)):
                direct, imported = by[f"{tree}direct{unit}"], by[f"{tree}import{unit}"]
                print(f"{label:36s} {tree}{unit or ' MiB/s':7s} direct {statistics.median(direct):9.1f}"
                      f"  import {statistics.median(imported):9.1f}"
                      f"  import/direct {median_ratio(imported, direct):5.2f}x")
        if opts.base:
            for unit in ((" ops/s", " cpu") if label.startswith("diodload") else ("",)):
                key = f"import{unit}"
                print(f"{label:36s} this/base import{unit or ' MiB/s'}: "
                      f"{median_ratio(by['this ' + key], by['base ' + key]):5.2f}x")


if __name__ == "__main__":
    main()
