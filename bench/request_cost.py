"""Server CPU per request, in-process: frames fed to a Connection, replies dropped.

No sockets and no client: this is the CPU cost (process time, so other work on a
loaded machine counts less than in wall time) of decoding, handling and
encoding one request (the part of a round trip that is ours alone), for the
request mix of `diodls -l` (Twalk of one name, Tgetattr, Tclunk), of opening
files (Twalk, Tlopen, Tclunk) and for a 64 KiB Tread, on the RAM backend, a
passthrough export and a tar archive of it.

    python bench/request_cost.py                # 5,000 entries, best of 5
    python bench/request_cost.py --entries 2000 --repeat 3
    python bench/request_cost.py --backends passthrough --uid 1000   # a non-root attach
    python bench/request_cost.py --backends passthrough --uid 1000 --no-identity
                                                # the same, host calls as the server
"""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ninep.config.defaults import default_policy
from ninep.server.session import ServerLimits
from ninep.server.transport import Connection
from ninep.vfs.locks import LockManager
from ninep.wire import messages as m


class NullTransport:
    """Counts the replies; keeps the last one for a check."""

    def __init__(self) -> None:
        self.count = 0
        self.last: bytes = b""

    def write(self, data: Any) -> None:
        self.count += 1
        self.last = data

    def writelines(self, parts: Any) -> None:
        self.count += 1
        self.last = b"".join(bytes(p) for p in parts)

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def is_reading(self) -> bool:
        return True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        raise RuntimeError("the server closed the connection")


def reply_of(transport: NullTransport) -> m.Message:
    return m.decode(bytes(transport.last))[1]


async def answer(conn: Connection, transport: NullTransport, frame: bytes) -> m.Message:
    """The reply to one set-up request, waiting for it if it went to a thread."""
    before = transport.count
    conn.data_received(frame)
    for _ in range(5000):
        if transport.count > before:
            break
        await asyncio.sleep(0.001)
    return reply_of(transport)


async def measure(kind: str, source: str, entries: int, repeat: int,
                  uid: int = 0, identity: bool = True) -> dict[str, float]:
    from ninep.backends.registry import open_backend
    backend = await open_backend(kind, source, {}, False)
    if not identity:
        backend.host_identity = False  # what the switches cost: host calls as the server
    if kind == "ram":
        await fill_ram(backend, entries)
    policy = await default_policy([("/", backend, False)])
    conn = Connection(policy, LockManager(), ServerLimits())
    transport = NullTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    await answer(conn, transport, m.encode(m.NOTAG, m.Tversion(65536, "9P2000.L")))
    attached = await answer(conn, transport, m.encode(1, m.Tattach(0, m.NOFID, "bench", "", uid)))
    assert isinstance(attached, m.Rattach), attached
    walked = await answer(conn, transport, m.encode(1, m.Twalk(0, 1, ("d",))))
    assert isinstance(walked, m.Rwalk), walked
    names = [f"f{i}" for i in range(entries)]
    walks = [m.encode(1, m.Twalk(1, 2, (name,))) for name in names]
    getattr_frame = m.encode(1, m.Tgetattr(2, 0x3FFF))
    clunk_frame = m.encode(1, m.Tclunk(2))
    open_frame = m.encode(1, m.Tlopen(2, os.O_RDONLY))
    figures: dict[str, float] = {}
    feed = conn.data_received
    for label, frames in (
        ("walk", [(w,) for w in walks]),
        ("walk+getattr+clunk", [(w, getattr_frame, clunk_frame) for w in walks]),
        ("walk+open+clunk", [(w, open_frame, clunk_frame) for w in walks]),
    ):
        best = float("inf")
        for _ in range(repeat):
            count = transport.count
            start = time.process_time()
            for group in frames:
                for frame in group:
                    feed(frame)
                if label == "walk":
                    feed(clunk_frame)
            await asyncio.sleep(0)  # any request that waited finishes here
            elapsed = time.process_time() - start
            sent = transport.count - count
            assert sent == len(frames) * (2 if label == "walk" else 3), (label, sent)
            assert not isinstance(reply_of(transport), m.Rlerror), reply_of(transport)
            best = min(best, elapsed)
        per = len(frames) * (2 if label == "walk" else 3)
        figures[f"{label}: us per request"] = best / per * 1e6
    # reads: one open file, 64 KiB at a time
    await answer(conn, transport, m.encode(1, m.Twalk(0, 3, ("big",))))
    opened = await answer(conn, transport, m.encode(1, m.Tlopen(3, os.O_RDONLY)))
    assert isinstance(opened, m.Rlopen), opened
    reads = [m.encode(1, m.Tread(3, (i % 64) * 65536, 65536)) for i in range(2048)]
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for frame in reads:
            feed(frame)
        await asyncio.sleep(0)
        best = min(best, time.process_time() - start)
    figures["read 64 KiB: us per request"] = best / len(reads) * 1e6
    conn.connection_lost(None)
    await conn.finished()
    await policy.close()
    return figures


async def fill_ram(backend: Any, entries: int) -> None:
    """The tree of ``populate``, made through the RAM backend itself."""
    d = await backend.root.mkdir("d", 0o755, 0, 0)
    for i in range(entries):
        await d.mknod(f"f{i}", stat.S_IFREG | 0o644, 0, 0, 0)
    backend.add_file("big", os.urandom(64 * 65536))


def populate(root: Path, entries: int) -> None:
    (root / "d").mkdir()
    for i in range(entries):
        (root / "d" / f"f{i}").write_bytes(b"x")
    (root / "big").write_bytes(os.urandom(64 * 65536))



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--uid", type=int, default=0,
                        help="attach as this uid (n_uname): a server running as root then "
                             "makes passthrough's host calls under it (fsident.py)")
    parser.add_argument("--no-identity", action="store_true",
                        help="passthrough's host calls stay the server's whatever the uid")
    parser.add_argument("--backends", default="ram,passthrough,tar",
                        help="which to measure, comma-separated")
    args = parser.parse_args()
    if not args.no_uvloop:
        try:
            import uvloop
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # searchable by a --uid attach, as the files in it are readable
        populate(root, args.entries)
        kinds = args.backends.split(",")
        identity = not args.no_identity
        results = {kind: asyncio.run(measure(kind, source, args.entries, args.repeat, args.uid,
                                             identity))
                   for kind, source in (("ram", ""), ("passthrough", str(root)))
                   if kind in kinds}
        tar = root.parent / (root.name + ".tar")
        import subprocess
        subprocess.run(["tar", "-cf", str(tar), "-C", str(root), "."], check=True)
        try:
            if "tar" in kinds:
                results["tar"] = asyncio.run(measure("tar", str(tar), args.entries, args.repeat,
                                                     args.uid))
        finally:
            tar.unlink()
    print(f"server CPU per request, in-process, best of {args.repeat} "
          f"({args.entries} entries, attached as uid {args.uid}"
          f"{', host identity off' if args.no_identity else ''})")
    for backend, figures in results.items():
        for label, value in figures.items():
            print(f"  {backend:12} {label:38} {value:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
