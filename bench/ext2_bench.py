"""Benchmark the ext2 backend: diodcat of a big file, and creating many small files.

1. ``diodcat`` of one file (256 MiB by default) stored in an ext2 image (made by
   ``mke2fs -d``) versus the same file served by passthrough (when
   ``backends.passthrough`` is importable, or from ``--passthrough-tree DIR``,
   another checkout that has it) or else by the RAM backend; interleaved runs,
   medians and the ratio ext2/other.
2. Creating ``--files`` small files (100 bytes each) through the client library
   (SyncClient: Tlcreate, Twrite, Tclunk per file), ext2 versus RAM, in files/s.

Run from the repository root: ``python bench/ext2_bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ninep.clients.sync import SyncClient  # noqa: E402

MiB = 1 << 20
FILE_NAME = "big.bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(mount: str, tree: Path = ROOT) -> Iterator[str]:
    """A ``ninep serve --mount /x=MOUNT`` process; yields its HOST:PORT."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--listen",
                             f"tcp://127.0.0.1:{port}", "--mount", f"/x={mount}",
                             "--log-level", "WARNING"],
                            cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise SystemExit(f"server for {mount!r} did not start: {err[-800:]}") \
                        from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(60)


def diodcat(addr: str, size: int, msize: int) -> float:
    """MiB/s of one diodcat of x/big.bin, timed around the process."""
    start = time.perf_counter()
    done = subprocess.run(["diodcat", "-s", addr, "-m", str(msize), "-a", "",
                           f"x/{FILE_NAME}"], capture_output=True, timeout=600)
    wall = time.perf_counter() - start
    if done.returncode != 0 or len(done.stdout) != size:
        raise SystemExit(f"diodcat from {addr}: status {done.returncode}, "
                         f"{len(done.stdout)} bytes: {done.stderr.decode()[-300:]}")
    return size / MiB / wall


def other_backend(args: argparse.Namespace, export: Path) -> tuple[str, str, Path]:
    """(label, mount spec, tree to run the server from) to compare ext2 against."""
    if importlib.util.find_spec("ninep.backends.passthrough") is not None:
        return "passthrough", f"passthrough:{export}", ROOT
    if args.passthrough_tree:
        return "passthrough", f"passthrough:{export}", Path(args.passthrough_tree)
    return "ram (passthrough not available)", "ram", ROOT


def bench_read(args: argparse.Namespace, work: Path) -> None:
    size = args.file_mib * MiB
    export = work / "export"
    export.mkdir()
    (export / FILE_NAME).write_bytes(os.urandom(size))
    image = work / "fs.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", "4096", "-d", str(export),
                    str(image), f"{args.file_mib + 64}M"], check=True, capture_output=True)
    label, mount, tree = other_backend(args, export)
    with server(f"ext2:{image},ro") as ext2_addr, server(mount, tree) as other_addr:
        if mount == "ram":
            with SyncClient(f"tcp://{other_addr}", n_uname=0) as fs:
                fs.write_bytes(f"x/{FILE_NAME}", (export / FILE_NAME).read_bytes())
        for addr in (ext2_addr, other_addr):
            diodcat(addr, size, args.msize)  # warm up: page cache, inode caches
        ext2_runs, other_runs = [], []
        for _ in range(args.runs):
            ext2_runs.append(diodcat(ext2_addr, size, args.msize))
            other_runs.append(diodcat(other_addr, size, args.msize))
    e, o = statistics.median(ext2_runs), statistics.median(other_runs)
    print(f"diodcat -m {args.msize} of {args.file_mib} MiB ({args.runs} interleaved runs):")
    print(f"  ext2 image (ro)    {e:8.1f} MiB/s   runs {[round(x) for x in ext2_runs]}")
    print(f"  {label:18s} {o:8.1f} MiB/s   runs {[round(x) for x in other_runs]}")
    print(f"  ratio ext2/{label.split()[0]} = {e / o:.2f}")


def create_files(addr: str, count: int) -> float:
    with SyncClient(f"tcp://{addr}", n_uname=0) as fs:
        fs.mkdir("x/many")
        payload = b"p" * 100
        start = time.perf_counter()
        for i in range(count):
            fs.write_bytes(f"x/many/file-{i:06d}", payload)
        wall = time.perf_counter() - start
        if len(fs.listdir("x/many")) != count:
            raise SystemExit(f"{addr}: the listing lacks files")
    return count / wall


def bench_create(args: argparse.Namespace, work: Path) -> None:
    image = work / "small.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", "4096", "-N",
                    str(args.files + 1000), str(image), "256M"], check=True, capture_output=True)
    with server(f"ext2:{image}") as ext2_addr:
        ext2_rate = create_files(ext2_addr, args.files)
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    with server("ram") as ram_addr:
        ram_rate = create_files(ram_addr, args.files)
    print(f"creating {args.files} files of 100 bytes through SyncClient:")
    print(f"  ext2   {ext2_rate:8.0f} files/s (e2fsck -fn afterwards: exit {fsck.returncode})")
    print(f"  ram    {ram_rate:8.0f} files/s")
    print(f"  ratio ext2/ram = {ext2_rate / ram_rate:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-mib", type=int, default=256)
    parser.add_argument("--msize", type=int, default=1 << 20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--passthrough-tree", help="a checkout whose backends/ has passthrough")
    parser.add_argument("--quick", action="store_true", help="64 MiB, 1 run, 1000 files")
    args = parser.parse_args()
    if args.quick:
        args.file_mib, args.runs, args.files = 64, 1, 1000
    for tool in ("diodcat", "mke2fs", "e2fsck"):
        if shutil.which(tool) is None and shutil.which(f"/usr/sbin/{tool}") is None:
            raise SystemExit(f"{tool} is not installed")
    os.environ["PATH"] += ":/usr/sbin:/sbin"
    with tempfile.TemporaryDirectory(prefix="ext2-bench-") as tmp:
        bench_read(args, Path(tmp))
        bench_create(args, Path(tmp))


if __name__ == "__main__":
    main()
