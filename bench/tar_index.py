"""Benchmark the tar backend's index: mount time of an archive of 100,000+ entries, and the
time to list directories of 1,000 / 10,000 / 100,000 entries (per entry: flat = linear).

    python bench/tar_index.py [--scale 1.0] [--gzip] [--no-server] [--keep DIR]

Builds the archive with Python's tarfile in a temporary directory (``--keep DIR``
reuses/keeps it there), then measures in this process (``TarBackend.open`` and
``readdir`` batches of 1,000 entries) and, unless ``--no-server``, through a real
``ninep serve --mount /t=tar:ARCHIVE`` with our client (Treaddir at msize 64 KiB).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ninep.backends.tar import TarBackend  # noqa: E402
from ninep.clients.sync import SyncClient  # noqa: E402

SIZES = (1_000, 10_000, 100_000)


def build(path: Path, scale: float) -> dict[str, int]:
    """Directories d1000, d10000, d100000 (scaled) of small files; returns dir -> entries."""
    dirs = {f"d{n}": max(int(n * scale), 1) for n in SIZES}
    payload = b"0123456789abcdef"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, count in dirs.items():
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_600_000_000
            tf.addfile(info)
            for i in range(count):
                info = tarfile.TarInfo(f"{name}/file-{i:06d}.txt")
                info.size, info.mtime = len(payload), 1_600_000_000
                tf.addfile(info, io.BytesIO(payload))
    return dirs


async def list_backend(backend: TarBackend, name: str) -> tuple[int, float, float]:
    """Entries listed, wall seconds, CPU seconds (steadier on a shared machine)."""
    directory = await backend.root.walk(name)
    start, cpu = time.perf_counter(), time.process_time()
    count, cookie = 0, 0
    while batch := await directory.readdir(cookie, 1000):
        count += len(batch)
        cookie = batch[-1].cookie
    return count, time.perf_counter() - start, time.process_time() - cpu


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure_in_process(archive: Path, dirs: dict[str, int]) -> None:
    rss0 = _rss_mib()
    start, cpu = time.perf_counter(), time.process_time()
    backend = TarBackend.open(str(archive))
    mount, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"mount (index) {archive.name}: {backend.members} members, "
          f"{archive.stat().st_size / 2**20:.0f} MiB: {mount:.2f} s wall, {cpu:.2f} s CPU "
          f"({mount / backend.members * 1e6:.1f} us/member; RSS +{_rss_mib() - rss0:.0f} MiB)")
    for name, want in dirs.items():
        runs = [asyncio.run(list_backend(backend, name)) for _ in range(5)]
        count, best, cpu = runs[0][0], min(r[1] for r in runs), min(r[2] for r in runs)
        assert count == want, (name, count, want)
        print(f"  readdir {name}: {count} entries in {best * 1000:.1f} ms wall, "
              f"{cpu * 1000:.1f} ms CPU ({cpu / count * 1e6:.2f} us/entry CPU, best of 5)")
    asyncio.run(backend.close())


def measure_server(archive: Path, dirs: dict[str, int]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--log-level", "WARNING",
                             "--listen", f"tcp://127.0.0.1:{port}", "--mount", "/=ram",
                             "--mount", f"/t=tar:{archive},ro"], cwd=REPO)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit("the server exited")
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        print(f"server start to listening, archive indexed: {time.perf_counter() - start:.2f} s")
        with SyncClient(f"tcp://127.0.0.1:{port}", uname="root", n_uname=0,
                        msize=65536) as fs:
            for name, want in dirs.items():
                best = float("inf")
                for _ in range(3):
                    t0 = time.perf_counter()
                    count = len(fs.scandir(f"t/{name}"))
                    best = min(best, time.perf_counter() - t0)
                assert count == want, (name, count, want)
                print(f"  client scandir t/{name}: {count} entries in {best * 1000:.0f} ms "
                      f"({best / count * 1e6:.1f} us/entry, best of 3)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="entries x SCALE (smoke: 0.05)")
    parser.add_argument("--gzip", action="store_true", help="also mount a gzip copy")
    parser.add_argument("--no-server", action="store_true", help="skip the end-to-end part")
    parser.add_argument("--keep", type=Path, help="build into (or reuse) this directory")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="tar-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    archive = work / f"bench-{args.scale:g}.tar"
    try:
        start = time.perf_counter()
        dirs = {f"d{n}": max(int(n * args.scale), 1) for n in SIZES}
        if not archive.exists():
            dirs = build(archive, args.scale)
            print(f"built {archive} with tarfile in {time.perf_counter() - start:.1f} s")
        measure_in_process(archive, dirs)
        if args.gzip:
            packed = archive.with_suffix(".tar.gz")
            if not packed.exists():
                with open(archive, "rb") as src, gzip.open(packed, "wb", compresslevel=1) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            measure_in_process(packed, dirs)
        if not args.no_server:
            measure_server(archive, dirs)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
