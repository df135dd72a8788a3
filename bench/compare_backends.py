"""Benchmark our passthrough and tar backends against diod exporting the same host directory.

One command::

    python bench/compare_backends.py [--runs N] [--quick] [--json FILE]

diod exports a temporary directory holding a test file (256 MiB) and a directory
of 10,000 files; our server serves the same directory with ``--mount
/pt=passthrough:DIR`` and an uncompressed tar of it with ``--mount /tar=tar:FILE``
(skipped, with a note, while backends.tar is not importable). Every figure is
taken in interleaved pairs (ours, then diod, seconds apart), all processes pinned
to one CPU; the table gives medians and the paired ratio ours/diod. Server
start-up and process helpers come from compare_diod.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_diod import (  # bench/ is not a package: found through sys.path
    COMPARE_MSIZE,
    DIODCAT,
    REPO,
    BenchError,
    MiB,
    Server,
    affinity,
    check_tools,
    make_test_file,
    pinned,
    running,
    sha256,
    start_diod,
    start_ours,
    warm,
)

DIODLS = "/usr/sbin/diodls"
FILE_NAME = "big.bin"
DIR_NAME = "dir10k"


@dataclass(frozen=True)
class Target:
    """One thing to measure: a server and where the test data sits in what it serves."""

    name: str  # "passthrough", "tar", "diod"
    server: Server
    aname: str
    prefix: str  # path of the export's root below the attach root ("" or "pt/")
    warm_file: Path  # what the host must have in its page cache for a fair read


@dataclass(frozen=True)
class Pair:
    """A figure taken for one of our backends and for diod."""

    key: str
    label: str
    unit: str
    ours: str  # "passthrough" or "tar"
    higher_is_better: bool
    measure: Callable[[Target], float]


def diodcat_mib_s(target: Target, cpu: int, size: int) -> float:
    """MiB/s of diodcat reading the test file, timed around the process."""
    warm(target.warm_file)  # the page cache drops idle data after ~30 s here
    argv = [DIODCAT, "-s", target.server.addr, "-m", str(COMPARE_MSIZE), "-a", target.aname,
            target.prefix + FILE_NAME]
    start = time.perf_counter()
    done = subprocess.run(pinned(cpu, argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=300)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"diodcat from {target.name}: {done.stderr.strip()[-300:]}")
    return size / MiB / wall


def diodls_seconds(target: Target, cpu: int, entries: int) -> float:
    """Seconds of ``diodls -l`` over the 10,000-entry directory; checks it listed them all."""
    argv = [DIODLS, "-s", target.server.addr, "-a", target.aname, "-l",
            target.prefix + DIR_NAME]
    start = time.perf_counter()
    done = subprocess.run(pinned(cpu, argv), capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    listed = sum(1 for line in done.stdout.splitlines() if line.split()[-1:] != ["."]
                 and line.split()[-1:] != [".."])
    if done.returncode != 0 or listed < entries:
        raise BenchError(f"diodls -l from {target.name}: status {done.returncode}, "
                         f"{listed} entries: {done.stderr.strip()[-300:]}")
    return wall


def verify(target: Target, cpu: int, digest: str) -> None:
    argv = [DIODCAT, "-s", target.server.addr, "-m", str(COMPARE_MSIZE), "-a", target.aname,
            target.prefix + FILE_NAME]
    with tempfile.TemporaryFile() as out:
        done = subprocess.run(pinned(cpu, argv), stdout=out, stderr=subprocess.PIPE, timeout=300)
        out.seek(0)
        import hashlib

        got = hashlib.file_digest(out, "sha256").hexdigest()  # type: ignore[attr-defined]
    if done.returncode != 0 or got != digest:
        raise BenchError(f"diodcat from {target.name} did not return the test file intact")


def make_export(root: Path, file_mib: int, entries: int) -> tuple[Path, Path]:
    export = root / "export"
    (export / DIR_NAME).mkdir(parents=True)
    make_test_file(export / FILE_NAME, file_mib * MiB)
    for i in range(entries):
        (export / DIR_NAME / f"entry-{i:05d}.txt").write_bytes(b"x" * (i % 200))
    archive = root / "export.tar"
    subprocess.run(["tar", "-cf", str(archive), "-C", str(export), "."], check=True)
    return export, archive


def tar_available() -> str | None:
    sys.path.insert(0, str(REPO))
    try:
        if importlib.util.find_spec("ninep.backends.tar") is None:
            return "ninep.backends.tar does not exist yet"
    except ImportError as exc:
        return f"ninep.backends.tar is not importable: {exc}"
    return None


def pairs(cpu: int, size: int, entries: int, with_tar: bool) -> list[Pair]:
    def cat(t: Target) -> float:
        return diodcat_mib_s(t, cpu, size)

    def ls(t: Target) -> float:
        return diodls_seconds(t, cpu, entries)

    mib = size // MiB
    out = [Pair("cat_pt", f"diodcat -m 64K {mib} MiB", "MiB/s", "passthrough", True, cat),
           Pair("ls_pt", f"diodls -l {entries} entries", "s", "passthrough", False, ls)]
    if with_tar:
        out += [Pair("cat_tar", f"diodcat -m 64K {mib} MiB", "MiB/s", "tar", True, cat),
                Pair("ls_tar", f"diodls -l {entries} entries", "s", "tar", False, ls)]
    return out


def measure(targets: dict[str, Target], table: list[Pair], runs: int
            ) -> dict[str, dict[str, list[float]]]:
    values: dict[str, dict[str, list[float]]] = {}
    for run in range(1, runs + 1):
        for pair in table:
            for name in (pair.ours, "diod"):
                target = targets.get(name)
                if target is None:
                    continue
                try:
                    value = pair.measure(target)
                except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
                    print(f"  run {run} {pair.key} {name}: FAILED: {exc}", file=sys.stderr)
                    continue
                values.setdefault(pair.key, {}).setdefault(name, []).append(value)
                print(f"  run {run} {pair.label:28} {name:11} {value:10.3f} {pair.unit}",
                      file=sys.stderr, flush=True)
    return values


def summarize(table: list[Pair], values: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    rows = []
    for pair in table:
        ours = values.get(pair.key, {}).get(pair.ours, [])
        diod = values.get(pair.key, {}).get("diod", [])
        paired = ([o / d for o, d in zip(ours, diod, strict=False) if d]
                  if ours and diod else [])
        rows.append({
            "key": pair.key, "label": pair.label, "unit": pair.unit, "ours": pair.ours,
            "median_ours": statistics.median(ours) if ours else None,
            "median_diod": statistics.median(diod) if diod else None,
            "paired_ratio": statistics.median(paired) if paired else None,
            "target": ">= 1.0" if pair.higher_is_better else "<= 1.0",
            "runs": {pair.ours: ours, "diod": diod},
        })
    return rows


def report(rows: list[dict[str, Any]], header: list[str]) -> str:
    line = "{:30} {:12} {:>6} {:>10} {:>10} {:>11} {:>7}"
    out = [*header, "", line.format("figure", "backend", "unit", "ours", "diod",
                                    "ours/diod", "target")]
    for row in rows:
        def cell(v: float | None) -> str:
            return "-" if v is None else f"{v:,.2f}"
        out.append(line.format(row["label"], row["ours"], row["unit"], cell(row["median_ours"]),
                               cell(row["median_diod"]), cell(row["paired_ratio"]),
                               row["target"]))
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, help="interleaved runs (default 3, quick 1)")
    parser.add_argument("--quick", action="store_true", help="one run, 64 MiB, 2,000 entries")
    parser.add_argument("--file-mib", type=int, help="test file size (default 256)")
    parser.add_argument("--entries", type=int, help="directory size (default 10,000)")
    parser.add_argument("--cpu", type=int, default=0, help="CPU for servers and clients")
    parser.add_argument("--python", default=sys.executable, help="interpreter for our server")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.file_mib = args.file_mib or (64 if args.quick else 256)
    args.entries = args.entries or (2000 if args.quick else 10000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools()
    no_tar = tar_available()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ninep-bench-")))
        print(f"writing {args.file_mib} MiB and {args.entries} entries ...", file=sys.stderr)
        export, archive = make_export(workdir, args.file_mib, args.entries)
        digest = sha256(export / FILE_NAME)
        mounts = ["--mount", f"/pt=passthrough:{export}"]
        if no_tar is None:
            mounts += ["--mount", f"/tar=tar:{archive}"]
        notes = [] if no_tar is None else [f"! tar skipped: {no_tar}"]
        ours = stack.enter_context(running(
            lambda: start_ours(args.cpu, args.python, mounts, workdir)))
        diod = stack.enter_context(running(lambda: start_diod(args.cpu, export, workdir)))
        targets: dict[str, Target] = {}
        if isinstance(ours, str):
            notes.append(f"! our server failed to start: {ours}")
        else:
            targets["passthrough"] = Target("passthrough", ours, "", "pt/", export / FILE_NAME)
            if no_tar is None:
                targets["tar"] = Target("tar", ours, "", "tar/", archive)
        if isinstance(diod, str):
            notes.append(f"! diod failed to start: {diod}")
        else:
            targets["diod"] = Target("diod", diod, str(export), "", export / FILE_NAME)
        for name, target in list(targets.items()):
            try:
                verify(target, args.cpu, digest)
            except (BenchError, OSError, subprocess.TimeoutExpired) as exc:
                notes.append(f"! {name} left out: {exc}")
                del targets[name]
        table = pairs(args.cpu, args.file_mib * MiB, args.entries, "tar" in targets)
        load = os.getloadavg()[0]
        rows = summarize(table, measure(targets, table, args.runs))
        pins = ", ".join(f"{n} pid {t.server.proc.pid} on CPU {affinity(t.server.proc.pid)}"
                         for n, t in targets.items())
        header = [f"our backends vs diod on the same host directory: {args.runs} interleaved "
                  f"run(s), medians; ours/diod is the median of paired ratios",
                  f"pinning: taskset -c {args.cpu} ({pins}); 1-min load {load:.2f}", *notes]
        print(report(rows, header))
        if args.json:
            args.json.write_text(json.dumps({"rows": rows, "notes": notes,
                                             "time": time.time()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
