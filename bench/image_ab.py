"""A/B of the image backends on host files (before/after a change), and images in a mount.

    python bench/image_ab.py --before /tmp/older-checkout [--quick]

``--before`` is another checkout (``git worktree add /tmp/x COMMIT``); its server
runs with that tree first on sys.path, this checkout's with this one. Figures,
each taken in interleaved pairs (before, after) and given as medians and the ratio
after/before:

1. ``diodcat`` of a file (256 MiB) in an ext2 image served read-only;
2. the same file in an uncompressed tar archive;
3. creating ``--files`` files of 100 bytes in a read-write ext2 image (SyncClient);
4. writing one 64 MiB file into a read-write ext2 image (SyncClient, 1 MiB writes).

Each figure is also taken as the server's CPU time (user + system, all threads,
from /proc) per unit of work, which a shared, noisy machine disturbs far less than
wall time. Then, for this checkout only, the same image and archive served from inside a
passthrough mount (``ext2:@/srv/fs.img``, ``tar:@/srv/a.tar``) against the host
file, as a ratio: the price of reaching the bytes through another mount's Handle.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ninep.clients.sync import SyncClient  # noqa: E402

MiB = 1 << 20
FILE_NAME = "big.bin"


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER_PID = [0]  # the pid of the server last started, for cpu_seconds()


def cpu_seconds() -> float:
    """User + system CPU seconds of the running server, all its threads."""
    fields = Path(f"/proc/{SERVER_PID[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(mounts: list[str], tree: Path) -> Iterator[str]:
    """``ninep serve`` with ``--mount`` each of ``mounts``, run from ``tree``; its HOST:PORT."""
    import socket
    port = free_port()
    args = [a for m in mounts for a in ("--mount", m)]
    proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--listen",
                             f"tcp://127.0.0.1:{port}", "--log-level", "WARNING", *args],
                            cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    SERVER_PID[0] = proc.pid
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise SystemExit(f"server {mounts} did not start: {err[-800:]}") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(120)


def diodcat(addr: str, path: str, size: int, msize: int = MiB) -> float:
    """MiB/s of one diodcat of ``path``."""
    start = time.perf_counter()
    done = subprocess.run(["diodcat", "-s", addr, "-m", str(msize), "-a", "", path],
                          capture_output=True, timeout=600)
    wall = time.perf_counter() - start
    if done.returncode != 0 or len(done.stdout) != size:
        raise SystemExit(f"diodcat {path} from {addr}: status {done.returncode}, "
                         f"{len(done.stdout)} bytes: {done.stderr.decode()[-300:]}")
    return size / MiB / wall


def create_files(addr: str, count: int) -> float:
    with SyncClient(f"tcp://{addr}", n_uname=0) as fs:
        fs.mkdir("x/many")
        start = time.perf_counter()
        for i in range(count):
            fs.write_bytes(f"x/many/file-{i:06d}", b"p" * 100)
        return count / (time.perf_counter() - start)


def write_big(addr: str, size: int) -> float:
    chunk = os.urandom(MiB)
    with SyncClient(f"tcp://{addr}", n_uname=0) as fs:
        start = time.perf_counter()
        with fs.open("x/written.bin", "wb") as f:
            for _ in range(size // MiB):
                f.write(chunk)
            f.fsync()
        return size / MiB / (time.perf_counter() - start)


def mkfs(image: Path, size_mib: int, seed: Path | None = None, inodes: int = 0) -> Path:
    args = ["mke2fs", "-q", "-F", "-t", "ext2", "-b", "4096"]
    args += ["-d", str(seed)] if seed else []
    args += ["-N", str(inodes)] if inodes else []
    subprocess.run([*args, str(image), f"{size_mib}M"], check=True, capture_output=True)
    return image


def pairs(label: str, runs: int, measure: Callable[[Path], tuple[float, float]],
          before: Path, unit: str, cpu_unit: str) -> None:
    """Interleaved (before, after) runs of ``measure(tree)`` -> (rate, server CPU per
    unit); medians and the ratios after/before."""
    a, b = [], []
    for _ in range(runs):
        a.append(measure(before))
        b.append(measure(ROOT))
    for i, (what, u) in enumerate(((unit, unit), ("CPU", cpu_unit))):
        ma, mb = statistics.median(x[i] for x in a), statistics.median(x[i] for x in b)
        print(f"{label if not i else '':40s} {what:4s} before {ma:9.1f}  after {mb:9.1f} "
              f"{u:10s} after/before {mb / ma:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the older checkout")
    parser.add_argument("--file-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="64 MiB, 3 runs, 1000 files")
    args = parser.parse_args()
    if args.quick:
        args.file_mib, args.runs, args.files = 64, 3, 1000
    size = args.file_mib * MiB
    work = Path(tempfile.mkdtemp(prefix="image-ab-"))
    try:
        seed = work / "seed"
        seed.mkdir()
        (seed / FILE_NAME).write_bytes(os.urandom(size))
        srv = work / "srv"
        srv.mkdir()
        ro_image = mkfs(srv / "fs.img", args.file_mib + 64, seed)
        with tarfile.open(srv / "a.tar", "w") as tar:
            tar.add(seed / FILE_NAME, FILE_NAME)

        def served_read(mounts: list[str], path: str) -> Callable[[Path], tuple[float, float]]:
            def measure(tree: Path) -> tuple[float, float]:
                with server(mounts, tree) as addr:
                    diodcat(addr, path, size)  # warm: page cache, caches of the server
                    cpu = cpu_seconds()
                    rate = diodcat(addr, path, size)
                    return rate, (cpu_seconds() - cpu) * 1000 / (size / MiB)
            return measure

        def fresh_rw(work_on: Callable[[str], float], size_mib: int, units: int,
                     inodes: int = 0) -> Callable[[Path], tuple[float, float]]:
            def measure(tree: Path) -> tuple[float, float]:
                image = mkfs(work / "rw.img", size_mib, inodes=inodes)
                with server([f"/x=ext2:{image}"], tree) as addr:
                    cpu = cpu_seconds()
                    rate = work_on(addr)
                    return rate, (cpu_seconds() - cpu) * 1e6 / units
            return measure

        print(f"{args.runs} interleaved pairs; before = {args.before}")
        pairs(f"ext2 ro, diodcat {args.file_mib} MiB", args.runs,
              served_read([f"/x=ext2:{ro_image},ro"], f"x/{FILE_NAME}"), args.before, "MiB/s",
              "ms/MiB")
        pairs(f"tar, diodcat {args.file_mib} MiB", args.runs,
              served_read([f"/x=tar:{srv / 'a.tar'}"], f"x/{FILE_NAME}"), args.before,
              "MiB/s", "ms/MiB")
        pairs(f"ext2 rw, create {args.files} files of 100 B", args.runs,
              fresh_rw(lambda addr: create_files(addr, args.files), 128, args.files,
                       args.files + 1000), args.before, "files/s", "us/file")
        pairs("ext2 rw, write 64 MiB + fsync", args.runs,
              fresh_rw(lambda addr: write_big(addr, 64 * MiB), 256, 64), args.before, "MiB/s",
              "us/MiB")

        print("this checkout: host file against the same file in a passthrough mount (@)")
        host, inside = [], []
        for _ in range(args.runs):
            host.append(served_read([f"/x=ext2:{ro_image},ro"], f"x/{FILE_NAME}")(ROOT)[0])
            inside.append(served_read([f"/srv=passthrough:{srv}", "/x=ext2:@/srv/fs.img,ro"],
                                      f"x/{FILE_NAME}")(ROOT)[0])
        print(f"  ext2 ro diodcat: host {statistics.median(host):.1f} MiB/s, @ in passthrough "
              f"{statistics.median(inside):.1f} MiB/s, ratio "
              f"{statistics.median(inside) / statistics.median(host):.2f}")
        host, inside = [], []
        for _ in range(args.runs):
            host.append(served_read([f"/x=tar:{srv / 'a.tar'}"], f"x/{FILE_NAME}")(ROOT)[0])
            inside.append(served_read([f"/srv=passthrough:{srv}", "/x=tar:@/srv/a.tar"],
                                      f"x/{FILE_NAME}")(ROOT)[0])
        print(f"  tar diodcat:     host {statistics.median(host):.1f} MiB/s, @ in passthrough "
              f"{statistics.median(inside):.1f} MiB/s, ratio "
              f"{statistics.median(inside) / statistics.median(host):.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
