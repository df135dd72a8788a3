"""A network fuzzer of our own: hostile but structurally valid 9P2000.L frames, built
from the codec's own message table, sent over real sockets to a real server process.

Deterministic from a seed: connection K draws every choice from
``Random(f"{seed}/{K}")``, so ``bench/fuzz.py --seed S --replay K`` sends that
connection's frames again. Bounded in frames, connections and seconds; it only
ever connects to the address it is given (127.0.0.1 in the test and the bench).
Used by tests/hostile/test_fuzz.py (a fixed budget in CI) and bench/fuzz.py.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import shutil
import socket
import struct
import subprocess
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from ninep.wire import constants as c
from ninep.wire import messages as m

from .fuzz_values import MOUNTS, MUTATIONS, FieldValues, mutate_frame

__all__ = ["CANARY", "CANARY_NAME", "INLINE_TEXT", "FuzzPlan", "FuzzStats", "build_fixtures",
           "run_fuzz"]

CANARY_NAME = "fuzz-canary"  # never in the fuzzer's vocabulary: it survives any run
CANARY = b"the fuzzer never names this file\n"
INLINE_TEXT = "inline text of the fuzzer"
IDLE_SECONDS = 0.5  # a connection waits this long for replies that stopped coming
_T_CLASSES = [cls for t, cls in sorted(m.MESSAGE_TYPES.items()) if cls.__name__.startswith("T")]


# --- fixtures ----------------------------------------------------------------

def _seed_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / CANARY_NAME).write_bytes(CANARY)
    (root / "hello.txt").write_bytes(b"hello from the fuzzer's fixtures\n" * 100)
    (root / "empty").write_bytes(b"")
    (root / "big").write_bytes(bytes(range(256)) * 800)
    (root / "sub" / "deep.txt").write_bytes(b"deep\n")
    (root / "sub" / "deeper" / "x").write_bytes(b"x\n")
    os.symlink("hello.txt", root / "link")


def build_fixtures(tmp: Path) -> Path:
    """Every backend's source under ``tmp`` and a config mounting them all; its path."""
    seed = tmp / "seed"
    _seed_tree(seed)
    for name in ("pt", "ptx"):
        shutil.copytree(seed, tmp / name, symlinks=True)
    archive = tmp / "fixtures.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(seed.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(seed)), recursive=False)
    image = tmp / "ext2.img"
    mke2fs = shutil.which("mke2fs") or "/usr/sbin/mke2fs"
    subprocess.run([mke2fs, "-q", "-F", "-t", "ext2", "-b", "1024", "-d", str(seed),
                    str(image), "8M"], check=True, capture_output=True)
    config = tmp / "fuzz.toml"
    # RAM disks get a size: a fuzzer's writes at random offsets must not fill the host.
    config.write_text(f"""\
[namespaces.fuzz]
mounts = [
  {{ path = "/", backend = "ram", options = {{ size = "64M" }} }},
  {{ path = "/pt", backend = "passthrough", source = "{tmp / 'pt'}" }},
  {{ path = "/ptx", backend = "passthrough", source = "{tmp / 'ptx'}", options = {{ security_model = "mapped-xattr" }} }},
  {{ path = "/tar", backend = "tar", source = "{archive}" }},
  {{ path = "/ext2", backend = "ext2", source = "{image}" }},
  {{ path = "/ovl", backend = "overlay", options = {{ lower = "tar:{archive}", upper = {{ backend = "ram", options = {{ size = "32M" }} }} }} }},
  {{ path = "/conn", backend = "ram", scope = "connection", options = {{ size = "8M" }} }},
  {{ path = "/null", backend = "null" }},
  {{ path = "/zero", backend = "zero" }},
  {{ path = "/inline", backend = "inline", source = "{INLINE_TEXT}" }},
]

[[policy]]
name = "everyone, as they say"
namespace = "fuzz"
""")
    return config


# --- plan and figures -----------------------------------------------------------

@dataclass(frozen=True)
class FuzzPlan:
    """What one run may spend. ``replay``: run only that connection's script."""

    seed: int
    frames: int = 20_000
    connections: int = 400
    parallel: int = 16
    seconds: float = 30.0
    bursts: int = 1  # connections that send burst_reads Treads of msize and never read
    burst_reads: int = 512
    holds: int = 16  # connections that send most of a 1 MiB frame before Tversion, then wait
    replay: int | None = None


@dataclass
class FuzzStats:
    """What a run did; every figure is a count."""

    frames_sent: int = 0
    connections: int = 0
    connect_failures: int = 0
    closed_by_server: int = 0
    unanswered: int = 0  # no reply within IDLE_SECONDS (a blocked Tlock waits, by design)
    stalled_writes: int = 0
    undecodable_replies: int = 0
    unanswered_by: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    mutations: Counter[str] = field(default_factory=Counter)
    scenarios: Counter[str] = field(default_factory=Counter)
    eio_examples: list[str] = field(default_factory=list)
    unanswered_examples: list[str] = field(default_factory=list)
    replay_of_port: dict[int, str] = field(default_factory=dict)  # bench/fuzz.py arguments
    stopped_by: str = "budget"


# --- one connection's script ----------------------------------------------------

class Conversation:
    """One connection's state as the client sees it (fids, tags, msize) and its choices."""

    def __init__(self, plan: FuzzPlan, index: int) -> None:
        self.rng = random.Random(f"{plan.seed}/{index}")
        self.index = index
        self.msize = 8192
        self.versioned = False
        self.fids: set[int] = set()
        self.dirs: set[int] = set()  # fids the server says are directories
        self.opened: set[int] = set()
        self.opened_files: set[int] = set()  # opened and not directories
        self.paths: dict[int, str] = {}  # what each fid was walked to, for the findings
        self.pending: dict[int, m.Message] = {}
        self.stuck: set[int] = set()  # tags whose replies never came (a blocked Tlock)
        self.next_tag = 1
        self.values = FieldValues(self)
        self.frames_left = self.rng.randint(1, 2 * max(1, plan.frames // plan.connections))
        self.mutate_at = self.rng.randrange(self.frames_left) if self.rng.random() < 0.5 else -1
        self.ended = False  # a mutated frame went out: the framing may be out of step

    def tag(self) -> int:
        """A fresh tag mostly; now and then one in flight, or NOTAG."""
        if self.pending and self.rng.random() < 0.02:
            return self.rng.choice(list(self.pending))
        if self.rng.random() < 0.005:
            return m.NOTAG
        return self.fresh_tag()

    def fresh_tag(self) -> int:
        while True:
            tag = self.next_tag
            self.next_tag = self.next_tag % 0xFFFE + 1
            if tag not in self.pending and tag not in self.stuck:
                return tag

    def frame(self, msg: m.Message, tag: int | None = None) -> bytes:
        """``msg`` encoded with a fresh tag (or ``tag``), now pending; EncodeError if it
        cannot be encoded."""
        tag = self.fresh_tag() if tag is None else tag
        frame = m.encode(tag, msg)
        self.pending[tag] = msg
        return frame

    def setup(self) -> Iterator[list[bytes]]:
        """Batches, each to be sent once the one before is answered (a client waits for
        Rattach before walking from its fid): Tattach, a walk to each mount, walks to a
        file in some, a few opens. The fuzzing that follows reaches the backends' code."""
        v, rng = self.values, self.rng
        uname, n_uname = ("root", 0) if rng.random() < 0.75 else (v.uname(), v.n_uname())
        aname = "" if rng.random() < 0.9 else v.aname()
        if not self.versioned:  # a hostile Tversion mid-session left the session unusable
            yield [self.frame(m.Tversion(self.msize, m.VERSION_9P2000L))]
        yield [self.frame(m.Tattach(0, m.NOFID, uname, aname, n_uname))]
        yield [self.frame(m.Twalk(0, 10 + k, (name,))) for k, name in enumerate(MOUNTS)]
        files = [k for k in range(len(MOUNTS)) if rng.random() < 0.6]
        yield [self.frame(m.Twalk(10 + k, 30 + k, (v.known_name(),))) for k in files]
        yield [self.frame(m.Tlopen(30 + k, rng.choice((c.O_RDONLY, c.O_RDWR))))
               for k in files if rng.random() < 0.7]

    def message(self) -> m.Message:
        """A T-message of a random class, each field from its hostile table."""
        cls = self.rng.choices(_T_CLASSES, [_WEIGHTS.get(k.__name__, 1) for k in _T_CLASSES])[0]
        args = [self.values.of(cls.__name__, f.name, letter)
                for f, letter in zip(fields(cls), cls._layout, strict=True)]  # type: ignore[arg-type]
        return cls(*args)

    def batch(self) -> list[bytes]:
        """The next frames to send without waiting (1 to 32); empty when done."""
        out: list[bytes] = []
        size = self.rng.choice((1, 1, 1, 2, 3, 4, 8, 16, 32))
        while len(out) < size and self.frames_left > 0:
            self.frames_left -= 1
            msg = self.message()
            tag = self.tag()
            try:
                frame = m.encode(tag, msg)
            except m.EncodeError:
                continue
            if len(frame) > self.msize:
                continue  # an oversize frame is one of the mutations, not an accident
            self.pending[tag] = msg
            if self.frames_left == self.mutate_at:
                kind = self.rng.choice(MUTATIONS)
                out.append(mutate_frame(frame, kind, self.rng, self.msize))
                self.mutation = kind
                self.ended = True
                break
            out.append(frame)
            if isinstance(msg, m.Tversion):
                break  # what follows depends on the msize it gets
        return out

    def on_reply(self, tag: int, reply: m.Message) -> None:
        """Track the fids the server now holds for us, and which are directories."""
        sent = self.pending.pop(tag, None)
        ok = not isinstance(reply, m.Rlerror)
        if isinstance(sent, (m.Tclunk, m.Tremove)):
            self._forget(sent.fid)
        elif isinstance(sent, m.Tversion):
            self.versioned = isinstance(reply, m.Rversion) and reply.version == m.VERSION_9P2000L
            for fid in list(self.fids):
                self._forget(fid)
            self.pending.clear()
            if isinstance(reply, m.Rversion):
                self.msize = min(max(reply.msize, 4096), 1 << 20)
        elif ok and isinstance(sent, m.Tattach) and isinstance(reply, m.Rattach):
            self._bind(sent.fid, reply.qid.type & c.QTDIR != 0)
            self.paths[sent.fid] = ""
        elif ok and isinstance(sent, m.Twalk) and isinstance(reply, m.Rwalk):
            if len(reply.qids) == len(sent.wnames) and sent.newfid not in self.fids:
                is_dir = (reply.qids[-1].type & c.QTDIR != 0 if reply.qids
                          else sent.fid in self.dirs)
                self._bind(sent.newfid, is_dir)
                self.paths[sent.newfid] = "/".join((self.paths.get(sent.fid, "?"), *sent.wnames))
        elif ok and isinstance(sent, m.Txattrwalk):
            self._bind(sent.newfid, False)
            self.opened.add(sent.newfid)
            self.opened_files.add(sent.newfid)
        elif ok and isinstance(sent, m.Tlcreate):
            self.paths[sent.fid] = f"{self.paths.get(sent.fid, '?')}/{sent.name}"
            self.dirs.discard(sent.fid)
            self.opened.add(sent.fid)
            self.opened_files.add(sent.fid)
        elif ok and isinstance(sent, m.Tlopen):
            self.opened.add(sent.fid)
            if sent.fid not in self.dirs:
                self.opened_files.add(sent.fid)

    def describe(self, msg: m.Message) -> str:
        """``msg`` with the paths its fids were walked to, for a finding's report."""
        fids = [f"{f.name}={self.paths[getattr(msg, f.name)] or '/'}"
                for f in fields(msg)  # type: ignore[arg-type]
                if "fid" in f.name and getattr(msg, f.name) in self.paths]
        return f"connection {self.index}: {msg!r:.240} {' '.join(fids)}"

    def _bind(self, fid: int, is_dir: bool) -> None:
        self.fids.add(fid)
        if is_dir:
            self.dirs.add(fid)

    def _forget(self, fid: int) -> None:
        self.fids.discard(fid)
        self.dirs.discard(fid)
        self.opened.discard(fid)
        self.opened_files.discard(fid)
        self.paths.pop(fid, None)


_WEIGHTS = {"Twalk": 8, "Tlopen": 6, "Tread": 6, "Twrite": 6, "Tlcreate": 4, "Tmkdir": 3,
            "Tmknod": 3, "Tsymlink": 3, "Tsetattr": 5, "Tgetattr": 3, "Treaddir": 4,
            "Txattrwalk": 3, "Txattrcreate": 3, "Tclunk": 5, "Tlock": 3, "Tgetlock": 2,
            "Trenameat": 3, "Trename": 2, "Tunlinkat": 3, "Tlink": 2, "Tflush": 3,
            "Tversion": 1, "Tattach": 2, "Treadlink": 2, "Tfsync": 2, "Tstatfs": 1}


# --- the driver -------------------------------------------------------------------

class _Wire:
    """One socket: a reader task decoding replies into the conversation and the figures."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conv: Conversation, stats: FuzzStats) -> None:
        self.reader, self.writer, self.conv, self.stats = reader, writer, conv, stats
        self.progress = asyncio.Event()
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                header = await self.reader.readexactly(7)
                size, rtype, tag = struct.unpack("<IBH", header)
                body = await self.reader.readexactly(max(size - 7, 0))
                self._account(header + body, rtype, tag)
                self.progress.set()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            if self.conv.pending and not self.conv.ended:
                self.stats.closed_by_server += 1
        finally:
            self.closed = True
            self.progress.set()

    def _account(self, frame: bytes, rtype: int, tag: int) -> None:
        try:
            _, reply = m.decode(frame)
        except m.DecodeError:
            self.stats.undecodable_replies += 1
            return
        if isinstance(reply, m.Rlerror):
            name = "Rlerror " + errno.errorcode.get(reply.ecode, str(reply.ecode))
            if reply.ecode == errno.EIO:  # this server's answer to the unexpected: say to what
                sent = self.conv.pending.get(tag)
                name += f" to {type(sent).__name__}"
                if len(self.stats.eio_examples) < 20 and sent is not None:
                    self.stats.eio_examples.append(self.conv.describe(sent))
            self.stats.replies[name] += 1
        else:
            self.stats.replies[type(reply).__name__] += 1
        self.conv.on_reply(tag, reply)

    async def send(self, frames: list[bytes]) -> bool:
        if self.closed or not frames:
            return False
        for frame in frames:
            self.stats.frames_sent += 1
            self.stats.sent[_name_of(frame)] += 1
        self.writer.write(b"".join(frames))
        try:
            await asyncio.wait_for(self.writer.drain(), IDLE_SECONDS * 4)
        except TimeoutError:
            self.stats.stalled_writes += 1
            return False
        except (ConnectionError, OSError):
            return False
        return True

    async def settle(self) -> None:
        """Wait for every reply, or until none came for IDLE_SECONDS."""
        while self.conv.pending and not self.closed:
            self.progress.clear()
            try:
                await asyncio.wait_for(self.progress.wait(), IDLE_SECONDS)
            except TimeoutError:
                if not self.conv.ended:  # after a lying size field, silence is right
                    self.stats.unanswered += len(self.conv.pending)
                    self.stats.unanswered_by.update(
                        type(p).__name__ for p in self.conv.pending.values())
                    self.stats.unanswered_examples += [
                        self.conv.describe(p) for p in self.conv.pending.values()][:3]
                self.conv.stuck.update(self.conv.pending)
                self.conv.pending.clear()

    async def rpc(self, msg: m.Message) -> None:
        await self.send([self.conv.frame(msg)])
        await self.settle()

    def close(self) -> None:
        self.task.cancel()
        self.writer.transport.abort()


def _name_of(frame: bytes) -> str:
    cls = m.MESSAGE_TYPES.get(frame[4]) if len(frame) > 4 else None
    return cls.__name__ if cls is not None else f"type {frame[4] if len(frame) > 4 else '?'}"


async def _session(wire: _Wire, deadline: float) -> None:
    conv = wire.conv
    loop = asyncio.get_running_loop()
    if not conv.versioned:
        conv.msize = conv.rng.choice((4096, 8192, 65536, 1 << 20))
    needs_setup = True
    while conv.frames_left > 0 and not wire.closed and loop.time() < deadline:
        if needs_setup:
            for frames in conv.setup():
                conv.frames_left -= len(frames)
                if await wire.send(frames):
                    await wire.settle()
            needs_setup = False
            continue
        frames = conv.batch()
        needs_setup = bool(frames) and frames[-1][4] == m.Tversion.type and not conv.ended
        if not await wire.send(frames) or conv.ended:
            break
        if conv.rng.random() < 0.03:
            return  # leave with requests in flight: the server clunks what we held
        await wire.settle()


async def _before_version(wire: _Wire, deadline: float) -> None:
    """Frames before any Tversion, then hostile Tversions, then (maybe) a session."""
    conv, v = wire.conv, wire.conv.values
    for _ in range(conv.rng.randint(1, 3)):
        msg = conv.message()
        if not isinstance(msg, m.Tversion):
            await wire.send([conv.frame(msg)])
    await wire.send([conv.frame(m.Tversion(v.msize(), v.version()), m.NOTAG)])
    await wire.settle()
    if not wire.closed and conv.rng.random() < 0.5:
        await _session(wire, deadline)


async def _burst(wire: _Wire, plan: FuzzPlan) -> None:
    """A file of one msize on the RAM disk, then Treads of all of it in one burst, never
    reading a reply (the replies of a RAM file each hold their own bytes)."""
    conv = wire.conv
    await wire.rpc(m.Tversion(1 << 20, m.VERSION_9P2000L))
    conv.msize = 1 << 20
    count = conv.msize - m.IOHDRSZ
    for msg in (m.Tattach(0, m.NOFID, "root", "", 0), m.Twalk(0, 1, ()),
                m.Tlcreate(1, f"burst-{conv.index}", c.O_RDWR, 0o644, 0),
                m.Twrite(1, 0, b"\x5a" * count)):
        await wire.rpc(msg)
    wire.task.cancel()  # from here on nobody reads: the replies stay with the server
    await wire.send([m.encode(tag, m.Tread(1, 0, count)) for tag in range(1, plan.burst_reads + 1)])
    await asyncio.sleep(1.0)  # let the server answer into its buffers before we leave


async def _connection(index: int, plan: FuzzPlan, address: tuple[str, int],
                      stats: FuzzStats, deadline: float) -> None:
    conv = Conversation(plan, index)
    try:
        reader, writer = await asyncio.open_connection(*address)
    except OSError:
        stats.connect_failures += 1
        return
    stats.connections += 1
    stats.replay_of_port[writer.get_extra_info("sockname")[1]] = (
        f"--seed {plan.seed} --frames {plan.frames} --connections {plan.connections} "
        f"--bursts {plan.bursts} --burst-reads {plan.burst_reads} --replay {index}")
    wire = _Wire(reader, writer, conv, stats)
    burst_every = max(1, plan.connections // plan.bursts) if plan.bursts else 0
    roll = conv.rng.random()
    try:
        if burst_every and index % burst_every == burst_every // 2:
            stats.scenarios["burst"] += 1
            await _burst(wire, plan)
        elif roll < 0.1:
            stats.scenarios["before version"] += 1
            await _before_version(wire, deadline)
        else:
            stats.scenarios["session"] += 1
            await _session(wire, deadline)
        if conv.ended:
            stats.mutations[getattr(conv, "mutation", "?")] += 1
            await wire.settle()
    finally:
        wire.close()


async def _hold(address: tuple[str, int], stats: FuzzStats) -> socket.socket | None:
    """A connection that sends all but the last byte of a 1 MiB frame before Tversion."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, address)
        body = struct.pack("<IBH", 1 << 20, m.Tversion.type, m.NOTAG) + bytes((1 << 20) - 8)
        await asyncio.wait_for(loop.sock_sendall(sock, body), IDLE_SECONDS * 4)
    except (OSError, TimeoutError):
        stats.scenarios["hold refused at once"] += 1
        sock.close()
        return None
    return sock


async def _fuzz(plan: FuzzPlan, address: tuple[str, int], stats: FuzzStats) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + plan.seconds
    held = [s for s in [await _hold(address, stats) for _ in range(plan.holds)] if s]
    indices = iter([plan.replay] if plan.replay is not None else range(plan.connections))

    async def worker() -> None:
        for index in indices:
            if loop.time() >= deadline:
                stats.stopped_by = "time"
                return
            if stats.frames_sent >= plan.frames and plan.replay is None:
                return
            await _connection(index, plan, address, stats, deadline)

    try:
        await asyncio.gather(*(worker() for _ in range(plan.parallel)))
    finally:
        for sock in held:
            stats.scenarios[f"hold {await _hold_outcome(sock)}"] += 1
            sock.close()


async def _hold_outcome(sock: socket.socket) -> str:
    """Whether the server kept a held connection open (its bytes buffered) to the end."""
    try:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 64), 0.05)
    except TimeoutError:
        return "kept open to the end"
    except OSError:
        return "reset by the server"
    return "closed by the server" if not data else "answered"


def run_fuzz(plan: FuzzPlan, address: tuple[str, int]) -> FuzzStats:
    """Run ``plan`` against the server at ``address``; the figures of the run."""
    if address[0] != "127.0.0.1":
        raise ValueError("the fuzzer only connects to 127.0.0.1")
    stats = FuzzStats()
    asyncio.run(_fuzz(plan, address, stats))
    return stats
