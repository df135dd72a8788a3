"""Benchmark ninep against Debian's diod with diod's own clients (diodload, diodcat).

One command::

    python bench/compare_diod.py [--runs N] [--quick] [--workers 1,2] [--json FILE]

The servers are started on 127.0.0.1 (free ports), by default each pinned with
the clients to one CPU (``taskset -c 0``; with ``--workers`` above 1 nothing is
pinned unless ``--cpus`` says so), and measured in interleaved runs (ours, diod,
ours, diod, ...). Both export the same host directory (ours through a passthrough
mount). The table gives medians and the ratio ours/diod (and, with several
``--workers`` counts, each against the first); see bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpu_cost import CpuMeter
from figures import Measured, Results, as_json, report

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20
# $DIOD_BIN_DIR: diod's binaries carried elsewhere (bench/device_workers.sh)
_DIOD_DIR = os.environ.get("DIOD_BIN_DIR", "/usr/sbin")
DIOD = os.path.join(_DIOD_DIR, "diod")
DIODLOAD = os.path.join(_DIOD_DIR, "diodload")
DIODCAT = os.path.join(_DIOD_DIR, "diodcat")
CLIENTS = (1, 4, 16, 64)  # diodload -n
PARALLEL_CATS = 8
COMPARE_MSIZE = 65536  # Debian's diod caps msize here
BIG_MSIZE = 1 << 20
FILE_NAME = "big.bin"
START_TIMEOUT = 15.0
_DIODLOAD_SUMMARY = re.compile(r"diodload: (\d+) ops/s, (\d+) rMB/s, (\d+) wMB/s")


class BenchError(RuntimeError):
    """A server or a client tool that did not do what the benchmark needs."""


@dataclass
class Server:
    """A running server under test."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    export: str  # the aname diodcat attaches to for the big file

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:]) or "(empty log)"


@dataclass(frozen=True)
class Metric:
    """One figure to measure: a label, its unit, and how to take it."""

    key: str
    label: str
    unit: str
    measure: Callable[[Server], float | Measured]
    ours_only: bool = False


# --- starting and stopping servers -----------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(cpu: int | str | None, argv: list[str]) -> list[str]:
    """``argv`` under ``taskset -c CPU`` (a list such as "0-3" too); None: unpinned."""
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


def wait_listening(server: Server, timeout: float = START_TIMEOUT) -> None:
    """Return once ``server`` accepts connections; BenchError if it dies or hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = server.proc.poll()
        if code is not None:
            raise BenchError(f"{server.name} exited with status {code} before listening "
                             f"on {server.addr}; its log ends:\n{server.log_tail()}")
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"{server.name} did not listen on {server.addr} within {timeout:.0f} s; "
                     f"its log ends:\n{server.log_tail()}")


def launch(name: str, argv: list[str], workdir: Path, export: str,
           cwd: Path | None = None, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    argv = [a.replace("{PORT}", str(port)) for a in argv]
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL)
    server = Server(name, port, proc, log, export)
    try:
        wait_listening(server)
    except BenchError:
        stop(server)
        raise
    return server


def start_diod(cpu: int | str | None, export_dir: Path, workdir: Path) -> Server:
    argv = pinned(cpu, [DIOD, "-f", "-n", "-c", "/dev/null", "-d", "0", "-e", str(export_dir),
                        "-e", "ctl", "-l", "127.0.0.1:{PORT}"])
    return launch("diod", argv, workdir, export=str(export_dir))


def start_ours(cpu: int | str | None, python: str, extra: list[str], workdir: Path,
               name: str = "ours") -> Server:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    argv = pinned(cpu, [python, "-m", "ninep", "serve", "--listen", "tcp://127.0.0.1:{PORT}",
                        *extra])
    server = launch(name, argv, workdir, export="", cwd=REPO, env=env)
    if "--workers" in extra:  # the supervisor binds before its workers start
        wait_log(server, "workers serving")
    return server


def wait_log(server: Server, text: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server.log.read_text(errors="replace"):
            return
        if server.proc.poll() is not None:
            break
        time.sleep(0.1)
    raise BenchError(f"{server.name}: no {text!r} in its log; it ends:\n{server.log_tail()}")


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@contextmanager
def running(start: Callable[[], Server]) -> Iterator[Server | str]:
    """The started server, or the reason it could not start (reported, not fatal)."""
    try:
        server = start()
    except (BenchError, OSError) as exc:
        yield str(exc)
        return
    try:
        yield server
    finally:
        stop(server)


def affinity(pid: int) -> str:
    """The CPUs ``pid`` may run on, as taskset would print them."""
    try:
        return ",".join(map(str, sorted(os.sched_getaffinity(pid))))
    except OSError as exc:
        return f"unknown ({exc.strerror})"


# --- the test file ------------------------------------------------------------

def make_test_file(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with path.open("wb") as f:
        for i in range(size // MiB):
            # Vary each MiB so a server that mixed up offsets would be caught.
            f.write(i.to_bytes(8, "little") + block[8:])


def warm(path: Path) -> None:
    """Read ``path`` so that diod serves it from the page cache."""
    with path.open("rb") as f:
        while f.read(4 * MiB):
            pass


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


# --- the client tools ---------------------------------------------------------

@dataclass(frozen=True)
class Bench:
    """The settings every measurement shares."""

    cpu: int | str | None
    runtime: int
    file: Path
    file_size: int

    def diodload(self, server: Server, msize: int, threads: int,
                 getattr_load: bool) -> Measured:
        """Ops/s (getattr) or MiB/s (read from zero, written to null), over the real
        runtime, with the server's and diodload's CPU time per operation.

        diodload divides by its nominal runtime, but it stops at a whole-second
        boundary, so its own figure is up to 1/runtime low; rescale by the wall time.
        """
        argv = [DIODLOAD, "-s", server.addr, "-m", str(msize), "-n", str(threads),
                "-r", str(self.runtime)] + (["-g"] if getattr_load else [])
        meter = CpuMeter(server.proc.pid)
        meter.start()
        start = time.perf_counter()
        done = subprocess.run(pinned(self.cpu, argv), capture_output=True, text=True,
                              timeout=self.runtime + 60)
        wall = time.perf_counter() - start
        output = (done.stdout + done.stderr).strip()
        summary = _DIODLOAD_SUMMARY.search(output)
        others = [ln for ln in output.splitlines() if not _DIODLOAD_SUMMARY.search(ln)]
        if done.returncode != 0 or summary is None or others:
            raise BenchError(f"diodload {' '.join(argv[1:])}: status {done.returncode}: "
                             f"{output[-500:]}")
        ops, rmb, _ = map(int, summary.groups())
        if not ops:
            raise BenchError(f"diodload {' '.join(argv[1:])}: no operations completed")
        cost = meter.stop(ops * self.runtime)  # diodload's count: ops/s over its runtime
        return Measured((ops if getattr_load else rmb) * self.runtime / wall, cost)

    def diodcat_argv(self, server: Server, msize: int) -> list[str]:
        return [DIODCAT, "-s", server.addr, "-m", str(msize), "-a", server.export, FILE_NAME]

    def diodcat(self, server: Server, msize: int, parallel: int = 1) -> float:
        """MiB/s reading the test file (``parallel`` diodcats at once, their bytes
        added up), timed around the diodcat processes."""
        warm(self.file)  # the page cache drops idle data after ~30 s here
        argv = self.diodcat_argv(server, msize)
        start = time.perf_counter()
        procs = [subprocess.Popen(pinned(self.cpu, argv), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
                 for _ in range(parallel)]
        errors = []
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            if proc.returncode != 0:
                errors.append(f"status {proc.returncode}: {err.strip()[-500:]}")
        wall = time.perf_counter() - start
        if errors:
            raise BenchError(f"diodcat {' '.join(argv[1:])}: {errors[0]}")
        return parallel * self.file_size / MiB / wall

    def verify_diodcat(self, server: Server, msize: int, expected: str) -> None:
        """Read the file once through diodcat and compare its digest (untimed)."""
        argv = self.diodcat_argv(server, msize)
        digest = hashlib.sha256()
        count = 0
        with subprocess.Popen(pinned(self.cpu, argv), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            while block := proc.stdout.read(4 * MiB):
                digest.update(block)
                count += len(block)
            err = proc.stderr.read().decode(errors="replace").strip()
        if proc.returncode != 0:
            raise BenchError(f"diodcat {' '.join(argv[1:])}: status {proc.returncode}: {err}")
        if digest.hexdigest() != expected:
            raise BenchError(f"diodcat from {server.name} returned {count} bytes that differ "
                             f"from the {self.file_size}-byte test file")


def metrics(bench: Bench, clients: tuple[int, ...] = CLIENTS) -> list[Metric]:
    def load(msize: int, threads: int, getattr_load: bool) -> Callable[[Server], Measured]:
        return lambda s: bench.diodload(s, msize, threads, getattr_load)

    def cat(msize: int, parallel: int = 1) -> Callable[[Server], float]:
        return lambda s: bench.diodcat(s, msize, parallel)

    size = f"{bench.file_size // MiB} MiB"
    table = [Metric(f"getattr_n{n}", f"diodload -g -n {n}", "ops/s", load(COMPARE_MSIZE, n, True))
             for n in clients]
    table += [Metric(f"rw_n{n}", f"diodload -n {n} -m 64K", "MiB/s", load(COMPARE_MSIZE, n, False))
              for n in clients]
    return [
        *table,
        Metric("cat", f"diodcat -m 64K {size}", "MiB/s", cat(COMPARE_MSIZE)),
        Metric("cat_x8", f"{PARALLEL_CATS} x diodcat -m 64K {size}", "MiB/s",
               cat(COMPARE_MSIZE, PARALLEL_CATS)),
        Metric("rw_n1_1m", "diodload -n 1 -m 1M", "MiB/s", load(BIG_MSIZE, 1, False), True),
        Metric("rw_n16_1m", "diodload -n 16 -m 1M", "MiB/s", load(BIG_MSIZE, 16, False), True),
        Metric("cat_1m", f"diodcat -m 1M {size}", "MiB/s", cat(BIG_MSIZE), True),
    ]


# --- running and reporting ----------------------------------------------------

def measure(servers: dict[str, Server], table: list[Metric], runs: int,
            results: Results) -> None:
    """Interleave: for each run and metric, every server in turn (ours first)."""
    for run in range(1, runs + 1):
        for metric in table:
            for name, server in list(servers.items()):
                if metric.ours_only and name == "diod":
                    continue
                if metric.key in results.errors and name in results.errors[metric.key]:
                    continue  # it failed once; don't spend every run on it
                try:
                    value = metric.measure(server)
                except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
                    error = str(exc)
                    if server.proc.poll() is not None:
                        error = (f"{name} exited with status {server.proc.returncode} "
                                 f"({error}); its log ends:\n{server.log_tail()}")
                        del servers[name]  # nothing more to measure there
                    results.fail(metric.key, name, error)
                    print(f"  run {run} {metric.label} {name}: FAILED: {error}", file=sys.stderr)
                    continue
                figure = results.add(metric.key, name, value)
                spent = (f", CPU us/op server {value.cost.server_us:.1f} client "
                         f"{value.cost.client_us:.1f}" if isinstance(value, Measured) else "")
                print(f"  run {run} {metric.label:30} {name:8} {figure:12,.0f} {metric.unit}"
                      f"{spent}", file=sys.stderr, flush=True)


def check_tools(pinning: bool = True) -> None:
    missing = [t for t in (DIOD, DIODLOAD, DIODCAT) if not os.access(t, os.X_OK)]
    if pinning and shutil.which("taskset") is None:
        missing.append("taskset")
    if missing:
        sys.exit(f"compare_diod: missing {', '.join(missing)} "
                 "(apt-get install diod util-linux, or DIOD_BIN_DIR=folder)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, help="interleaved runs per figure (default 3, quick 1)")
    parser.add_argument("--quick", action="store_true",
                        help="one run, 2 s diodload runtime, 64 MiB file, clients 1 and 16")
    parser.add_argument("--runtime", type=int, help="diodload -r seconds (default 5)")
    parser.add_argument("--file-mib", type=int, help="diodcat file size in MiB (default 256)")
    parser.add_argument("--workers", default="1", metavar="N[,N...]",
                        help="ninep serve --workers for our server; several (e.g. 1,2 or "
                             "1,auto) start one server of ours for each, measured in the "
                             "same runs (default 1)")
    parser.add_argument("--clients", default=None, metavar="N[,N...]",
                        help="diodload -n values (default 1,4,16,64; quick 1,16)")
    parser.add_argument("--cpu", "--cpus", dest="cpus", default=None,
                        help="taskset -c for servers and clients: a CPU or a list such as "
                             "0-3, or 'none' (default 0, or none when a --workers count is "
                             "not 1)")
    parser.add_argument("--no-diod", action="store_true", help="measure our servers only")
    parser.add_argument("--python", default=sys.executable, help="interpreter for our server")
    parser.add_argument("--ours-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for `ninep serve` (repeatable)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.runtime = args.runtime or (2 if args.quick else 5)
    args.file_mib = args.file_mib or (64 if args.quick else 256)
    args.workers = [w.strip() for w in args.workers.split(",") if w.strip()]
    clients = args.clients or ("1,16" if args.quick else ",".join(map(str, CLIENTS)))
    args.clients = tuple(int(n) for n in clients.split(","))
    if args.cpus is None:
        args.cpus = "0" if args.workers == ["1"] else "none"
    args.cpus = None if args.cpus == "none" else args.cpus
    return args


def prepare_file(servers: dict[str, Server], bench: Bench, digest: str,
                 results: Results) -> list[str]:
    """Check every server serves the test file intact; return notes."""
    notes: list[str] = []
    for name, server in servers.items():
        try:
            bench.verify_diodcat(server, COMPARE_MSIZE, digest)
        except (BenchError, OSError, subprocess.TimeoutExpired) as exc:
            notes.append(f"! no diodcat figures for {name}: {exc}")
            print(notes[-1], file=sys.stderr)
            for key in ("cat", "cat_x8", "cat_1m"):
                results.fail(key, name, str(exc))
    return notes


def memory_note(servers: dict[str, Server]) -> str:
    """Each server's resident memory now (a supervisor's workers summed and shown)."""
    parts = []
    for name, server in servers.items():
        pids = [server.proc.pid]
        try:
            pids += [int(c) for c in Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}"
                                           "/children").read_text().split()]
        except OSError:
            pass
        sizes = []
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
            if found:
                sizes.append(int(found.group(1)) // 1024)
        parts.append(f"{name} {sum(sizes)} MiB" + (f" ({' + '.join(map(str, sizes))})"
                                                  if len(sizes) > 1 else ""))
    return "resident memory after the runs: " + ", ".join(parts)


def _ours_name(workers: list[str], count: str) -> str:
    return "ours" if len(workers) == 1 else f"ours-w{count}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools(pinning=args.cpus is not None)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ninep-bench-")))
        export = workdir / "export"
        export.mkdir()
        test_file = export / FILE_NAME
        size = args.file_mib * MiB
        print(f"writing a {args.file_mib} MiB test file ...", file=sys.stderr)
        make_test_file(test_file, size)
        digest = sha256(test_file)
        bench = Bench(args.cpus, args.runtime, test_file, size)
        table = metrics(bench, args.clients)

        servers: dict[str, Server] = {}
        notes: list[str] = []
        starters: dict[str, Callable[[], Server]] = {}
        for count in args.workers:
            name = _ours_name(args.workers, count)
            extra = ["--mount", f"/=passthrough:{export}", *args.ours_arg]
            if count != "1":
                extra += ["--workers", count]
            starters[name] = (lambda name=name, extra=extra:
                              start_ours(args.cpus, args.python, extra, workdir, name))
        if not args.no_diod:
            starters["diod"] = lambda: start_diod(args.cpus, export, workdir)
        for name, start in starters.items():
            got = stack.enter_context(running(start))
            if isinstance(got, str):
                notes.append(f"! {name} failed to start: {got}")
                print(notes[-1], file=sys.stderr)
                continue
            servers[name] = got
        if not servers:
            print("\n".join(notes))
            return 1
        names = list(servers)
        where = "unpinned" if args.cpus is None else f"under `taskset -c {args.cpus}`"
        pins = ", ".join(f"{n} pid {s.proc.pid} on CPU {affinity(s.proc.pid)}"
                         for n, s in servers.items())
        config: dict[str, Any] = {
            "runs": args.runs, "runtime": args.runtime, "file_mib": args.file_mib,
            "cpus": args.cpus, "workers": args.workers, "clients": list(args.clients),
            "python": args.python,
            "servers": {n: {"pid": s.proc.pid, "affinity": affinity(s.proc.pid),
                            "addr": s.addr} for n, s in servers.items()}}
        results = Results()
        notes += prepare_file(servers, bench, digest, results)
        load_before = os.getloadavg()
        measure(dict(servers), table, args.runs, results)
        load_after = os.getloadavg()
        notes.append(memory_note(servers))
        config["loadavg_1min"] = {"before": load_before[0], "after": load_after[0]}
        header = [
            f"ninep vs diod: {args.runs} interleaved run(s) ({', '.join(names)}), medians shown",
            f"servers and clients {where} ({pins}); both export one host directory "
            "(ours: --mount /=passthrough:DIR), diodload on the ctl files",
            f"diodload -r {args.runtime} (rescaled by wall time); diodcat of a "
            f"{args.file_mib} MiB file, timed around the process(es), page cache warmed",
            f"host: {platform.node()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, our server via {args.python}; 1-min load average "
            f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (other work skews figures)",
            *notes,
        ]
        cpus = len(os.sched_getaffinity(0)) if args.cpus is None else \
            len(os.sched_getaffinity(servers[names[0]].proc.pid))
        print(report(table, results, header, names, cpus))
        if args.json:
            config.update(notes=notes, time=time.time())
            args.json.write_text(json.dumps(as_json(table, results, config, names), indent=2)
                                 + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
