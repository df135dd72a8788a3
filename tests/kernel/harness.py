"""The kernel conformance matrix, the server under test, and the boots that run it.

The matrix of the issue (cache=none/loose/mmap, msize 8 KiB/1 MiB, access=user with two
uids and access=client, TCP and the virtio-serial ``trans=fd`` share) is covered by a
few *shares*, each one mount with its own options and connection, batched into one
boot per transport, plus a third boot for the other backends:

- the primary share (cache=none, msize=1 MiB, access=user over TCP) runs every
  scenario but one, the heavy 64 MiB file and 5,000-entry ``rm -rf`` included;
- the fd boot's primary share (cache=none, msize=8 KiB, access=user) runs the
  10,000-entry listing (many Treaddir round trips at 8 KiB) and the light scenarios;
- the other shares run the light scenarios with their own options;
- the tcp and fd boots end with the server restarted under a mounted share;
- the backends boot runs the light scenarios on ext2, passthrough and overlay
  mounts (``Share.base``) and lists the tar mount, then the host checks the
  image and the archive (backends.py); it also imports another server's RAM
  disk and serves an ext2 image stored there (import_store.py).

Two boots run at a time (``NINEP_KERNEL_PARALLEL``), so the heavy scenarios are
split between tcp and fd to balance the guests' CPU time.

A scenario is a shell function ``sc_NAME`` in ``scenarios/*.sh``; each (share,
scenario) pair is one pytest test named ``SHARE/SCENARIO``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from . import guest
from .backends import BackendStore, TarEntry, seed_manifest
from .trace import TraceRelay

__all__ = [
    "ALL_SCENARIOS",
    "BOOTS",
    "BootPlan",
    "CheckResult",
    "ServerProcess",
    "Share",
    "Suite",
    "all_checks",
]

HERE = Path(__file__).resolve().parent
SCENARIO_DIR = HERE / "scenarios"
REPO = HERE.parents[1]
KIB = 1024
MIB = 1024 * 1024
#: Guest-side limit for one check (the guest kills it and reports a failure).
SCENARIO_TIMEOUT = int(os.environ.get("NINEP_KERNEL_SCENARIO_TIMEOUT", "900"))


def _discover() -> tuple[str, ...]:
    names: list[str] = []
    for path in sorted(SCENARIO_DIR.glob("*.sh")):
        names += re.findall(r"^sc_([a-z0-9_]+)\s*\(\)", path.read_text(), re.M)
    return tuple(names)


ALL_SCENARIOS = _discover()
#: Scenarios too costly under TCG to repeat on every share: the primary share runs them.
HEAVY = frozenset({"file_size_64m", "rm_rf_5000", "ls_10000"})
#: Shared writable mmap needs a page cache: not with cache=none.
NEEDS_CACHE = frozenset({"mmap"})


#: NINEP_KERNEL_ONLY=name,name...: run only these scenarios (for working on the suite).
_ONLY = frozenset(filter(None, os.environ.get("NINEP_KERNEL_ONLY", "").split(",")))


def _scenarios(cache: str, *, heavy: Iterable[str] = (),
               only: Iterable[str] | None = None) -> tuple[str, ...]:
    """The scenarios for a share: ``only`` (default: all) less the heavy ones not in
    ``heavy``, less those needing a page cache when ``cache`` is none."""
    heavy = set(heavy)
    generic = {name for name in ALL_SCENARIOS
               if not name.startswith(("ro_", "ov_", "px_", "fed_"))}
    wanted = set(generic if only is None else only) - (HEAVY - heavy) | heavy
    if cache == "none":
        wanted -= NEEDS_CACHE
    if _ONLY:
        wanted &= _ONLY
    return tuple(name for name in ALL_SCENARIOS if name in wanted)


@dataclass(frozen=True)
class Share:
    """One mount in the guest: transport, options, and the scenarios run on it."""

    name: str
    transport: str  # "tcp" or "fd"
    cache: str
    msize: int
    access: str
    scenarios: tuple[str, ...]
    peer: str | None = None  # another share of the same tree (cross-connection checks)
    base: str = ""  # a backend's mount point in the server's namespace: scenarios run there

    @property
    def options(self) -> str:
        return f"version=9p2000.L,msize={self.msize},cache={self.cache},access={self.access}"

    @property
    def checks(self) -> tuple[str, ...]:
        return ("mount", *self.scenarios)


@dataclass(frozen=True)
class BootPlan:
    """One guest boot: its shares, the share the server restart runs under, a hard timeout."""

    name: str
    shares: tuple[Share, ...]
    restart: str | None
    timeout: float
    backends: bool = False  # the server also mounts the BackendStore (ext2, passthrough, tar)
    server_args: tuple[str, ...] = ()  # more arguments for ``ninep serve``
    root: str = "ram"  # what / and /ro are: RAM disks, or "passthrough" host directories

    def check_ids(self) -> list[str]:
        ids = [f"{s.name}/{c}" for s in self.shares for c in s.checks]
        if self.restart:
            ids.append(f"{self.restart}/server_restart")
        if self.backends:
            ids += [f"{self.name}/{check}" for check in BackendStore.HOST_CHECKS]
        return ids


LIGHT_FD = ("file_size_0", "file_size_4097", "file_size_5m", "append", "truncate", "sparse",
            "dd_odd_blocks", "overwrite_middle", "open_unlink", "readdir_concurrent",
            "name_255", "name_too_long", "hardlink", "symlinks", "rename_over_file",
            "access_uids", "eacces", "setgid_dir", "flock", "fcntl_locks", "df_statfs",
            "fio_verify_seq", "fio_verify_rand", "inode_stable", "erofs", "mmap")

#: What the ext2 and passthrough shares run: the light scenarios that do not need the
#: share's own top (erofs uses the RAM share's /ro).
BACKEND = tuple(name for name in LIGHT_FD if name not in ("erofs", "mmap"))
#: What the overlay share runs besides ov_copy_up (in fresh upper-only directories).
OVERLAY = ("file_size_5m", "truncate", "open_unlink", "readdir_concurrent", "hardlink",
           "symlinks", "rename_over_file", "access_uids", "fcntl_locks", "inode_stable")
#: POSIX semantics the kernel client leaves to the server (scenarios/posix.sh), on RAM and
#: every backend share of the backends boot, whose server takes groups on the client
#: kernel's word (``--groups client``): the guest's uids and groups are unknown to the host.
POSIX = tuple(name for name in ALL_SCENARIOS if name.startswith("px_")
              and (not _ONLY or name in _ONLY))
#: What the imported mount (/imp, another server's RAM disk) and the ext2 image stored
#: there (/inner) run besides their own scenarios (scenarios/federation.sh).
IMPORTED = ("file_size_5m", "append", "truncate", "overwrite_middle", "rename_over_file",
            "hardlink", "symlinks", "fcntl_locks", "readdir_concurrent", "inode_stable")

#: What the workers boot runs: the passthrough share's light scenarios, less df_statfs,
#: which compares two statfs calls of the host's disk and fails when another program
#: writes to it between them (seen here in this boot's first run, 48 KiB apart)
WORKERS = tuple(name for name in BACKEND if name != "df_statfs")

BOOTS: tuple[BootPlan, ...] = (
    BootPlan("tcp", (
        Share("tcp_none_1m_user", "tcp", "none", MIB, "user",
              _scenarios("none", heavy=("file_size_64m", "rm_rf_5000")),
              peer="tcp_loose_8k_client"),
        Share("tcp_loose_8k_client", "tcp", "loose", 8 * KIB, "client", _scenarios("loose")),
        Share("tcp_mmap_1m_user", "tcp", "mmap", MIB, "user", _scenarios("mmap")),
    ), restart="tcp_none_1m_user", timeout=float(os.environ.get("NINEP_KERNEL_TIMEOUT", 1800))),
    BootPlan("fd", (
        Share("fd_none_8k_user", "fd", "none", 8 * KIB, "user",
              _scenarios("none", heavy=("ls_10000",), only=LIGHT_FD), peer="fd_mmap_1m_client"),
        Share("fd_mmap_1m_client", "fd", "mmap", MIB, "client", _scenarios("mmap", only=LIGHT_FD)),
    ), restart="fd_none_8k_user", timeout=float(os.environ.get("NINEP_KERNEL_TIMEOUT", 1800))),
    BootPlan("backends", (
        Share("tcp_ext2_1m_user", "tcp", "none", MIB, "user",
              (*_scenarios("none", only=BACKEND), *POSIX), base="ext2"),
        Share("tcp_pt_1m_user", "tcp", "none", MIB, "user",
              (*_scenarios("none", only=BACKEND), *POSIX), base="pt"),
        Share("tcp_tar_64k_user", "tcp", "loose", 64 * KIB, "user", ("ro_tree",), base="tar"),
        Share("tcp_ovl_1m_user", "tcp", "none", MIB, "user",
              ("ov_copy_up", *_scenarios("none", only=OVERLAY), *POSIX), base="ovl"),
        Share("tcp_ram_1m_user", "tcp", "none", MIB, "user", POSIX),
        Share("tcp_imp_1m_user", "tcp", "none", MIB, "user",
              _scenarios("none", only=("fed_import", "fed_exdev", *IMPORTED)), base="imp"),
        Share("tcp_inner_1m_user", "tcp", "none", MIB, "user",
              _scenarios("none", only=("fed_image", *IMPORTED)), base="inner"),
    ), restart=None, timeout=float(os.environ.get("NINEP_KERNEL_TIMEOUT", 1800)), backends=True,
        server_args=("--groups", "client")),
    # The tcp boot's light scenarios against two worker processes (ninep/workers/): the
    # two shares' connections, and the reconnect after the restart, may land on
    # different workers, so the peer checks see one tree and one set of locks and qids
    # across them. / and /ro are host directories, which every worker serves itself.
    BootPlan("workers", (
        Share("w2_none_1m_user", "tcp", "none", MIB, "user", _scenarios("none", only=WORKERS),
              peer="w2_loose_8k_client"),
        Share("w2_loose_8k_client", "tcp", "loose", 8 * KIB, "client",
              _scenarios("loose", only=WORKERS)),
    ), restart="w2_none_1m_user", timeout=float(os.environ.get("NINEP_KERNEL_TIMEOUT", 1800)),
        server_args=("--workers", "2", "--groups", "client"), root="passthrough"),
)


def all_checks() -> list[tuple[str, str]]:
    """(boot, check id) for every test, in run order."""
    return [(b.name, c) for b in BOOTS for c in b.check_ids()]


# ---------------------------------------------------------------------------
# The server under test


RAM_ROOT = ("--mount", "/=ram", "--mount", "/ro=ram,ro")  # the server's / and /ro by default


class ServerProcess:
    """``python -m ninep serve`` on 127.0.0.1 (TCP) and a UNIX socket, restartable."""

    def __init__(self, workdir: Path, log_level: str | None = None,
                 extra_args: Iterable[str] = (),
                 root_args: Iterable[str] = RAM_ROOT) -> None:
        self.workdir = workdir
        self.extra_args = list(extra_args)
        self.root_args = list(root_args)
        # a short path: sun_path holds 107 bytes, and the cache may live deep
        self.sockdir = Path(tempfile.mkdtemp(prefix="ninep-kernel-"))
        self.socket = self.sockdir / "9p.sock"
        self.log_path = workdir / "server.log"
        self.log_level = log_level or os.environ.get("NINEP_KERNEL_SERVER_LOG", "INFO")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        argv = [sys.executable, "-m", "ninep", "serve",
                "--listen", f"tcp://127.0.0.1:{self.port}", "--listen", f"unix://{self.socket}",
                *self.root_args, *self.extra_args,
                "--log-level", self.log_level]
        self.starts += 1
        with open(self.log_path, "ab") as logf:
            logf.write(f"=== start {self.starts}: {' '.join(argv)}\n".encode())
            logf.flush()
            offset = logf.tell()
            self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=guest.die_with_parent)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as logf:
                logf.seek(offset)
                text = logf.read().decode(errors="replace")
            found = re.search(r"listening on tcp://127\.0\.0\.1:(\d+)", text)
            if found and f"listening on unix://{self.socket}" in text:
                self.port = int(found.group(1))
                return
            if self.proc.poll() is not None:
                raise guest.GuestError(f"the server exited ({self.proc.returncode}):\n{text}")
            time.sleep(0.05)
        raise guest.GuestError(f"the server did not start listening within 60 s "
                               f"(log: {self.log_path})")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.sockdir, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------
# Running a boot


@dataclass
class CheckResult:
    """One check's outcome as reported by the guest."""

    check: str
    passed: bool
    output: str
    secs: float | None = None


@dataclass
class BootOutcome:
    """Everything a boot produced: per-check results and the raw material for reports."""

    plan: BootPlan
    results: dict[str, CheckResult] = field(default_factory=dict)
    console: str = ""
    error: str | None = None  # the boot as a whole went wrong
    boot: guest.BootResult | None = None
    server_log: str = ""
    rundir: Path | None = None
    expected_tree: list[TarEntry] = field(default_factory=list)  # the tar share's content

    def result(self, check: str) -> CheckResult:
        if check in self.results:
            return self.results[check]
        reason = self.error or "the guest never started this check"
        tail = "\n".join(self.console.splitlines()[-60:])
        return CheckResult(check, False, f"{reason}\n--- end of the console ---\n{tail}")


def _config_layer(plan: BootPlan, port: int) -> Callable[[guest.CpioWriter], None]:
    def fill(w: guest.CpioWriter) -> None:
        for path in sorted(SCENARIO_DIR.iterdir()):
            if path.name in ("main.sh", "mount.sh"):
                w.copy(f"run/ninep/{path.name}", str(path), 0o755)
            elif path.name in ("lib.sh", "restart.sh"):
                w.copy(f"run/ninep/{path.name}", str(path), 0o644)
            elif path.is_file():
                w.copy(f"run/ninep/scenarios/{path.name}", str(path), 0o644)
        w.file("run/main.sh", b"#!/bin/sh\nexec /run/ninep/main.sh\n", 0o755)
        conf = (f"SERVER_PORT={port}\nSCENARIO_TIMEOUT={SCENARIO_TIMEOUT}\n"
                f"RESTART={plan.restart or ''}\n"
                f"RESTART_KEEPS={'1' if plan.root == 'passthrough' else ''}\n")
        w.file("run/ninep/conf.sh", conf.encode())
        lines = []
        for i, share in enumerate(plan.shares):
            port_name = f"ninep{i}" if share.transport == "fd" else "-"
            lines.append(f"{share.name} {share.transport} {port_name} {share.options} "
                         f"{share.peer or '-'} {share.base or '-'} {' '.join(share.scenarios)}")
        w.file("run/ninep/mounts", ("\n".join(lines) + "\n").encode())
    return fill


def _qemu_extra(plan: BootPlan, socket: Path) -> list[str]:
    extra: list[str] = []
    if any(s.transport == "tcp" for s in plan.shares):
        extra += ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile="]
    fd_shares = [(i, s) for i, s in enumerate(plan.shares) if s.transport == "fd"]
    if fd_shares:
        extra += ["-device", "virtio-serial-pci,id=vser0"]
        for i, _share in fd_shares:
            extra += ["-chardev", f"socket,id=c{i},path={socket},reconnect=1",
                      "-device", f"virtserialport,bus=vser0.0,chardev=c{i},name=ninep{i}"]
    return extra


def parse_console(lines: list[str]) -> dict[str, CheckResult]:
    """Turn the BEGIN/END markers of a console log into per-check results."""
    results: dict[str, CheckResult] = {}
    current: str | None = None
    body: list[str] = []
    for line in lines:
        begin = re.search(r"@@NINEP-BEGIN (\S+)", line)
        end = re.search(r"@@NINEP-END (\S+) rc=(\d+) secs=([0-9.]+)", line)
        if begin:
            current, body = begin.group(1), []
        elif end and current is not None and end.group(1) == current:
            results[current] = CheckResult(current, end.group(2) == "0", "\n".join(body),
                                           float(end.group(3)))
            current = None
        elif current is not None:
            body.append(line)
    if current is not None:
        results[current] = CheckResult(current, False, "\n".join(body) + "\n(no end marker: "
                                       "the guest stopped or timed out during this check)")
    return results


def _boot_into(outcome: BootOutcome, image: guest.GuestImage, server: ServerProcess,
               console: TextIO) -> None:
    assert outcome.rundir is not None
    server.start()
    port, socket = server.port, server.socket
    relay = None
    if os.environ.get("NINEP_KERNEL_TRACE", "") not in ("", "0"):
        relay = TraceRelay(server.port, server.socket, outcome.rundir / "trace.log")
        port, socket = relay.port, relay.socket
    try:
        _run_guest(outcome, image, server, console, port, socket)
    finally:
        if relay is not None:
            relay.close()


def _run_guest(outcome: BootOutcome, image: guest.GuestImage, server: ServerProcess,
               console: TextIO, port: int, socket: Path) -> None:
    plan = outcome.plan
    assert outcome.rundir is not None
    initrd = guest.make_initrd(image, _config_layer(plan, port), outcome.rundir / "initrd.cpio")
    command = guest.qemu_command(image, initrd, extra=_qemu_extra(plan, socket))
    console.write(" ".join(command) + "\n")

    def on_line(line: str) -> None:
        console.write(line + "\n")
        console.flush()
        if "@@NINEP-CONTROL restart-server" in line:
            server.restart()
            console.write(f"[host] server restarted on port {server.port}\n")

    result = guest.boot(command, plan.timeout, on_line)
    outcome.boot = result
    outcome.console = result.output
    outcome.results = parse_console(result.lines)
    if result.timed_out:
        outcome.error = f"the boot hit its hard timeout of {plan.timeout:.0f} s"
    elif result.exit_status is None:
        outcome.error = (f"the guest stopped without reporting (QEMU exit "
                         f"{result.returncode}): {result.stderr.strip()}")
    initrd.unlink(missing_ok=True)


def run_boot(plan: BootPlan, image: guest.GuestImage, rundir: Path) -> BootOutcome:
    """Start a server, boot the guest against it, and collect the results."""
    outcome = BootOutcome(plan, rundir=rundir)
    shutil.rmtree(rundir, ignore_errors=True)
    rundir.mkdir(parents=True)
    store = BackendStore(rundir / "store") if plan.backends else None
    if store is not None:
        store.create()
        outcome.expected_tree = seed_manifest(store.seed)
    root_args: list[str] = list(RAM_ROOT)
    if plan.root == "passthrough":
        for name in ("root", "ro"):
            (rundir / name).mkdir()
        root_args = ["--mount", f"/=passthrough:{rundir / 'root'}",
                     "--mount", f"/ro=passthrough:{rundir / 'ro'},ro"]
    server = ServerProcess(rundir, extra_args=[*(store.mount_args() if store else ()),
                                               *plan.server_args],
                           root_args=root_args)
    with open(rundir / "console.log", "w") as console:
        try:
            _boot_into(outcome, image, server, console)
        except guest.GuestError as exc:
            outcome.error = str(exc)
        finally:
            server.close()
            outcome.server_log = server.log_tail()
    if store is not None:
        verdicts = store.host_checks()
        for name, (passed, report) in verdicts.items():
            check = f"{plan.name}/{name}"
            outcome.results[check] = CheckResult(check, passed, report)
        if all(passed for passed, _ in verdicts.values()):
            store.remove()
    return outcome


def _new_run_dir() -> Path:
    """A fresh directory for this run's logs (old runs' are pruned after a day)."""
    runs = guest.cache_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for old in runs.iterdir():
        try:
            if time.time() - old.stat().st_mtime > 86400:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs))


class Suite:
    """Runs the boots on demand (all the needed ones at once, in parallel) and caches them."""

    def __init__(self, needed: Iterable[str], workers: int | None = None) -> None:
        self.needed = [b for b in BOOTS if b.name in set(needed)]
        self.workers = workers or int(os.environ.get("NINEP_KERNEL_PARALLEL", "2"))
        self.lock = threading.Lock()
        self.futures: dict[str, Future[BootOutcome]] = {}
        self.image: guest.GuestImage | None = None
        self.build_error: str | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.started = 0.0

    def _start(self) -> None:
        self.started = time.monotonic()
        try:
            self.image = guest.build_guest()
        except guest.GuestError as exc:
            self.build_error = f"building the guest failed: {exc}"
            return
        self.pool = ThreadPoolExecutor(max_workers=max(1, self.workers))
        runs = _new_run_dir()
        image = self.image
        for plan in self.needed:
            self.futures[plan.name] = self.pool.submit(run_boot, plan, image, runs / plan.name)

    def outcome(self, boot: str) -> BootOutcome:
        with self.lock:
            if not self.futures and self.build_error is None:
                self._start()
        plan = next(b for b in BOOTS if b.name == boot)
        if self.build_error is not None:
            return BootOutcome(plan, error=self.build_error)
        return self.futures[boot].result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def summary(self) -> str:
        """Timings for the terminal summary."""
        if self.image is None:
            return self.build_error or "the kernel suite did not run"
        lines = [f"guest image: {'cached' if self.image.cached else 'built'} in "
                 f"{self.image.build_seconds:.1f} s ({self.image.kernel_release})"]
        for name, future in self.futures.items():
            if not future.done():
                continue
            out = future.result()
            b = out.boot
            if b is None:
                lines.append(f"boot {name}: {out.error}")
                continue
            passed = sum(r.passed for r in out.results.values())
            lines.append(f"boot {name}: booted in {b.booted_after or float('nan'):.1f} s, "
                         f"wall {b.wall:.1f} s, {passed}/{len(out.plan.check_ids())} checks "
                         f"passed; console and server log in {out.rundir}")
        lines.append(f"kernel suite wall time: {time.monotonic() - self.started:.1f} s")
        return "\n".join(lines)
