"""The supervisor: binds the listeners once, forks N workers that accept on them, replaces
a worker that dies, hands a checked SIGHUP on to every worker and drains them on SIGTERM.

Every worker accepts on the same listening sockets (inherited across fork), so
the kernel gives each new connection to one worker and it lives there for its
whole life. The supervisor itself serves nothing and runs no event loop: it
forks from a single-threaded process (a fork beside running threads could copy
a lock held by one of them) and waits for signals and readiness pipes.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ninep.server.listeners import ListenAddress, bind_listener
from ninep.server.sd_notify import notify, notify_reloading

__all__ = ["Bound", "Supervisor", "WorkerMain", "exit_text"]

log = logging.getLogger(__name__)

#: each listener with its bound sockets, ``(name for the log, socket)``
Bound = list[tuple[ListenAddress, list[tuple[str, socket.socket]]]]
#: runs in a worker: (its index, the sockets, call once it accepts) -> exit status
WorkerMain = Callable[[int, Bound, Callable[[], None]], int]

STOP_GRACE = 30.0  # seconds workers have to drain after SIGTERM before SIGKILL
_RESPAWN_DELAY_MAX = 30.0  # a worker that keeps dying before it is ready is retried slower
_SIGNALS = (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


def exit_text(status: int) -> str:
    """A waitpid status in words: "exit status 1", "killed by signal 9 (SIGKILL)"."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exit status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "?"
    return f"killed by signal {-code} ({name})"


@dataclass
class _Worker:
    index: int
    pid: int
    ready_fd: int  # read end of the pipe the worker writes one byte to once it accepts
    ready: bool = False
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    """N workers of ``main`` on ``listens``; :meth:`run` returns the exit status."""

    def __init__(self, count: int, listens: list[ListenAddress], main: WorkerMain,
                 config_path: Path | None = None, first_alone: bool = False) -> None:
        self.count = count
        self.first_alone = first_alone  # worker 0 accepts before the others start
        self.listens = listens
        self.main = main
        self.config_path = config_path
        self.workers: dict[int, _Worker] = {}  # pid -> worker
        self.bound: Bound = []
        self._pending: list[int] = []  # signals caught, handled by the loop
        self._wake_r = self._wake_w = -1
        self._respawn_at: dict[int, float] = {}  # index -> when to start it again
        self._failures: dict[int, int] = {}  # index -> deaths before ready in a row

    def run(self) -> int:
        for address in self.listens:
            self.bound.append((address, bind_listener(address)))
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in _SIGNALS:
            signal.signal(sig, self._caught)
        try:
            if self.first_alone:
                self._spawn(0)
                if not self._wait_ready():
                    self._stop()
                    return 2
            for index in range(1 if self.first_alone else 0, self.count):
                self._spawn(index)
            if not self._wait_ready():
                self._stop()
                return 2
            where = ", ".join(_where(address, sock) for address, socks in self.bound
                              for _, sock in socks)
            log.info("%d workers serving %s", self.count, where)
            notify("READY=1", f"STATUS={self.count} workers listening on {where}")
            self._loop()
            return 0
        finally:
            self._close()

    # the child side

    def _spawn(self, index: int) -> None:
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns here
            code = 1
            try:
                os.close(ready_r)
                self._child_setup()
                code = self.main(index, self.bound, lambda: _tell_ready(ready_w))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(ready_w)
        self.workers[pid] = _Worker(index, pid, ready_r)
        log.debug("worker %d started (pid %d)", index, pid)

    def _child_setup(self) -> None:
        """What the supervisor set up for itself is undone in a worker: the signal
        handlers (the worker's event loop installs its own), the wakeup pipe, the
        other workers' pipes and systemd's notify socket (the supervisor speaks)."""
        signal.set_wakeup_fd(-1)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        os.close(self._wake_r)
        os.close(self._wake_w)
        for worker in self.workers.values():
            os.close(worker.ready_fd)
        self.workers.clear()
        os.environ.pop("NOTIFY_SOCKET", None)

    # the supervisor side

    def _caught(self, signum: int, frame: object) -> None:
        self._pending.append(signum)

    def _wait_ready(self) -> bool:
        """Until every worker says it accepts; False when one exits first (it could not
        open a backend, ...: what it logged says why)."""
        while not all(w.ready for w in self.workers.values()):
            self._select(1.0)
            for signum in self._take_signals():
                if signum in (signal.SIGTERM, signal.SIGINT):
                    return False
                if signum == signal.SIGCHLD:
                    for worker, status in self._reap():
                        log.error("worker %d (pid %d) exited before it was ready: %s",
                                  worker.index, worker.pid, exit_text(status))
                        return False
        return True

    def _loop(self) -> None:
        while True:
            timeout = None
            if self._respawn_at:
                timeout = max(min(self._respawn_at.values()) - time.monotonic(), 0.0)
            self._select(timeout)
            for signum in self._take_signals():
                if signum == signal.SIGCHLD:
                    self._replace_dead()
                elif signum == signal.SIGHUP:
                    self._reload()
                else:
                    log.info("stopping: %d workers drain", len(self.workers))
                    notify("STOPPING=1")
                    self._stop()
                    return
            now = time.monotonic()
            for index, when in list(self._respawn_at.items()):
                if when <= now:
                    del self._respawn_at[index]
                    self._spawn(index)

    def _select(self, timeout: float | None) -> None:
        fds = [self._wake_r] + [w.ready_fd for w in self.workers.values() if not w.ready]
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            return
        for fd in readable:
            if fd == self._wake_r:
                try:
                    while os.read(self._wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                continue
            for worker in self.workers.values():
                # an empty read: it exited before it was ready, which SIGCHLD tells
                if worker.ready_fd == fd and not worker.ready and os.read(fd, 1):
                    worker.ready = True
                    self._failures.pop(worker.index, None)
                    log.debug("worker %d (pid %d) accepting", worker.index, worker.pid)

    def _take_signals(self) -> list[int]:
        taken = []
        while self._pending:  # popped one by one: a handler may append meanwhile
            taken.append(self._pending.pop(0))
        return taken

    def _reap(self) -> list[tuple[_Worker, int]]:
        dead = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            os.close(worker.ready_fd)
            dead.append((worker, status))
        return dead

    def _replace_dead(self) -> None:
        """A worker died: its clients lost their connections (they may reconnect, to
        another worker); the others go on. It is replaced at once, or, when it keeps
        dying before it accepts, after a delay that doubles up to 30 s."""
        for worker, status in self._reap():
            if worker.ready:
                log.error("worker %d (pid %d) died: %s; its connections are closed, "
                          "starting a new one", worker.index, worker.pid, exit_text(status))
                self._spawn(worker.index)
                continue
            failures = self._failures[worker.index] = self._failures.get(worker.index, 0) + 1
            delay = min(2.0 ** (failures - 1), _RESPAWN_DELAY_MAX)
            log.error("worker %d (pid %d) exited before it was ready: %s; trying again in "
                      "%g s", worker.index, worker.pid, exit_text(status), delay)
            self._respawn_at[worker.index] = time.monotonic() + delay

    def _reload(self) -> None:
        """SIGHUP: the file is read and checked here once; a file that fails is logged
        once and no worker hears of it. A good one goes to every worker, which opens
        its backends and swaps its policy as a single server does (Server.reload)."""
        notify_reloading()
        if self.config_path is not None:
            from ninep.backends.registry import BackendConfigError
            from ninep.config.file import load_config
            try:
                config = load_config(self.config_path)
            except BackendConfigError as exc:
                log.error("reload rejected, every worker keeps the running configuration: %s",
                          exc)
                notify("READY=1")
                return
            if config.workers != self.count or list(config.listeners) not in ([], self.listens):
                log.warning("%s: workers and listeners change only with a restart",
                            self.config_path)
        for worker in self.workers.values():
            _signal(worker.pid, signal.SIGHUP)
        log.info("reload handed to %d workers", len(self.workers))
        notify("READY=1")

    def _stop(self) -> None:
        """SIGTERM to every worker (each closes its listeners and drains as a single
        server does), SIGKILL to any still there after STOP_GRACE seconds."""
        self._respawn_at.clear()
        for worker in self.workers.values():
            _signal(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self.workers:
            left = deadline - time.monotonic()
            if left <= 0:
                for worker in self.workers.values():
                    log.warning("worker %d (pid %d) did not stop in %g s: killed",
                                worker.index, worker.pid, STOP_GRACE)
                    _signal(worker.pid, signal.SIGKILL)
                deadline = time.monotonic() + STOP_GRACE
            self._select(min(max(left, 0.0), 0.5))
            self._take_signals()  # a second SIGTERM changes nothing
            for worker, status in self._reap():
                if os.waitstatus_to_exitcode(status) != 0:
                    log.warning("worker %d (pid %d) stopped: %s", worker.index, worker.pid,
                                exit_text(status))

    def _close(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        for address, socks in self.bound:
            for _, sock in socks:
                sock.close()
            if address.kind == "unix":
                try:
                    os.unlink(address.path)
                except OSError:
                    pass
        self.bound.clear()


def _where(address: ListenAddress, sock: socket.socket) -> str:
    """What a bound socket listens on, with the port the kernel chose for port 0."""
    if sock.family == socket.AF_UNIX:
        return f"unix://{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    return f"{'tls' if address.tls is not None else 'tcp'}://{host}:{port}"


def _tell_ready(fd: int) -> None:  # pragma: no cover - runs in a worker
    try:
        os.write(fd, b"r")
        os.close(fd)
    except OSError:
        pass


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError as exc:
        if exc.errno != errno.ESRCH:  # already gone: SIGCHLD will tell
            raise
