"""Hosts for federation tests: network namespaces on one bridge, or loopback addresses.

Each host is a network namespace (``ip netns``) with one veth end, addressed
10.99.0.N/24; the other ends hang on a bridge in a namespace of its own, so
nothing is added to the namespace the tests run in. Where namespaces cannot be
made (not root, no ``ip``), the hosts are 127.0.0.N of this host's loopback.
``NINEP_FEDERATION_NET=loopback`` asks for that fallback. The test client runs
on a thread of its own that joins the client host's namespace (setns(2) moves
the calling thread only), so every socket it opens lives on that host.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ClientThread", "Host", "Network", "ServerProc", "network"]

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
_PREFIX = "ninep-fed-"  # every namespace these tests make: stale ones are removed by it
_CLONE_NEWNET = 0x40000000  # <linux/sched.h>
#: How long one client call may take before it counts as a hang (seconds).
CALL_TIMEOUT = 60.0


@dataclass(frozen=True)
class Host:
    """One host: its address and the namespace its processes run in (None: this one)."""

    name: str
    address: str
    netns: str | None = None

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run on this host."""
        if self.netns is None:
            return list(argv)
        return ["ip", "netns", "exec", self.netns, *argv]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _remove_stale() -> None:
    """Namespaces left by a run that was killed (their pid is gone)."""
    try:
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return
    for name in names:
        found = re.fullmatch(re.escape(_PREFIX) + r"(\d+)-\w+", name)
        if found and not Path(f"/proc/{found.group(1)}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@dataclass
class Network:
    """The hosts of one test module, and how they were made (``mode``)."""

    mode: str  # "netns" or "loopback"
    hosts: dict[str, Host] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def port(self, host: Host) -> int:
        """The port a server listens on: 5640 on a host of its own, else one free now."""
        if self.mode == "netns":
            return 5640
        with socket.socket() as probe:
            probe.bind((host.address, 0))
            return int(probe.getsockname()[1])

    def close(self) -> None:
        # a namespace's veth ends go with it; its processes were stopped before
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self.namespaces.clear()


def _netns_usable() -> bool:
    if os.environ.get("NINEP_FEDERATION_NET", "") == "loopback":
        return False
    return os.geteuid() == 0 and shutil.which("ip") is not None and sys.platform == "linux"


def _make_netns(names: Sequence[str]) -> Network:
    net = Network("netns")
    tag = f"{_PREFIX}{os.getpid()}-"
    switch = tag + "switch"
    _ip("netns", "add", switch)
    net.namespaces.append(switch)
    _ip("-n", switch, "link", "add", "br0", "type", "bridge")
    _ip("-n", switch, "link", "set", "br0", "up")
    for number, name in enumerate(names, start=1):
        ns = tag + name
        _ip("netns", "add", ns)
        net.namespaces.append(ns)
        # made in the switch namespace, one end moved to the host's: the namespace the
        # tests run in never holds either end
        _ip("-n", switch, "link", "add", f"port{number}", "type", "veth",
            "peer", "name", "eth0", "netns", ns)
        _ip("-n", switch, "link", "set", f"port{number}", "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"10.99.0.{number}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        net.hosts[name] = Host(name, f"10.99.0.{number}", ns)
    return net


@contextlib.contextmanager
def network(names: Sequence[str]) -> Iterator[Network]:
    """Hosts named ``names`` (10.99.0.1, .2, ... or 127.0.0.1, .2, ...); removed after,
    whatever happened. Namespaces that cannot be made fall back to loopback."""
    net: Network | None = None
    if _netns_usable():
        _remove_stale()
        try:
            net = _make_netns(names)
        except (OSError, subprocess.SubprocessError):
            if net is not None:
                net.close()
            net = None
    if net is None:
        net = Network("loopback", {name: Host(name, f"127.0.0.{number}")
                                   for number, name in enumerate(names, start=1)})
    try:
        yield net
    finally:
        net.close()


def _enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns({name}): {os.strerror(code)}")
    finally:
        os.close(fd)


class ClientThread:
    """An event loop on a thread of the client host: ``call`` runs a coroutine there."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"client-{host.name}",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            if self.host.netns is not None:
                _enter_netns(self.host.netns)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """The coroutine's result; TimeoutError (the coroutine cancelled) if it takes
        longer than ``timeout``: a hang is a failure, never a stuck test run."""
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self.loop)
        return future.result(timeout + 10)

    def close(self) -> None:
        if self._thread.is_alive():
            async def finish() -> None:
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(finish(), self.loop).result(30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
        if not self._thread.is_alive():
            self.loop.close()


def _die_with_parent() -> None:
    pr_set_pdeathsig = 1  # <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class ServerProc:
    """``python -m ninep serve ARGS`` on a host, listening on ADDRESS:PORT; restartable."""

    def __init__(self, host: Host, port: int, args: Sequence[str], workdir: Path,
                 listen: bool = True, wildcard: bool = False) -> None:
        self.host = host
        self.port = port
        self.args = list(args)
        self.listen = listen  # False: the args (a config file) name the listener
        self.wildcard = wildcard  # the listener is 0.0.0.0:PORT
        self.log_path = workdir / f"server-{host.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"tcp://{self.host.address}:{self.port}"

    def start(self) -> None:
        listen = ["--listen", self.url] if self.listen else []
        argv = self.host.argv([sys.executable, "-m", "ninep", "serve", "--log-level", "info",
                               *listen, *self.args])
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== start {self.starts}: {' '.join(argv)}\n".encode())
            log.flush()
            offset = log.tell()
            # a test run killed outright takes its servers along (prctl's parent-death
            # signal, kept across ip's exec of the server; it fires when the starting
            # thread ends, so servers are started from the test's own thread)
            self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        want = f"listening on tcp://0.0.0.0:{self.port}" if self.wildcard else \
            f"listening on {self.url}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = self._log_from(offset)
            if want in text:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"server on {self.host.name} exited "
                                   f"({self.proc.returncode}):\n{text}")
            time.sleep(0.05)
        raise RuntimeError(f"server on {self.host.name} did not log {want!r} within 60 s:\n"
                           f"{self._log_from(offset)}")

    def _log_from(self, offset: int) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s; the process group (ip netns exec execs the
        server, so it is the group's leader) goes with it."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(20)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
