"""``ninep serve``: start-up errors that name the problem, and a real server process."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys

import pytest

from ninep.wire import messages as m
from tests.conftest import RawPeer, free_port, wait_for_port


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ninep", "serve", *args], capture_output=True,
                          text=True, timeout=30, check=False)


@pytest.mark.parametrize("args,needle", [
    (["--listen", "ftp://127.0.0.1:1"], "ftp://127.0.0.1:1"),
    (["--listen", "tcp://127.0.0.1"], "tcp://HOST:PORT"),
    (["--mount", "relative=ram"], "relative=ram"),
    (["--mount", "/x=nosuch"], "unknown backend 'nosuch'"),
    (["--mount", "/x=ram,bogus"], "unknown option 'bogus'"),
    (["--msize", "100"], "at least 4096"),
    (["--mount", "/=ram,ro", "--mount", "/x=ram"], "does not exist in the read-only backend"),
])
def test_bad_arguments_exit_2_naming_what_was_wrong(args: list[str], needle: str) -> None:
    result = serve(*args)
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = serve("--listen", f"tcp://127.0.0.1:{port}")
    assert result.returncode == 1
    assert "address already in use" in result.stderr.lower() and "Traceback" not in result.stderr


def test_serve_runs_the_embedded_default_and_stops_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--listen",
                             f"tcp://127.0.0.1:{port}", "--mount", "/=ram", "--mount", "/ro=ram,ro"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc)
        peer = RawPeer(("127.0.0.1", port))
        peer.handshake()
        walked = peer.rpc(m.Twalk(1, 2, ("ro",)))
        assert isinstance(walked, m.Rwalk) and walked.qids[0].type == 0x80
        assert peer.rpc(m.Tmkdir(2, "x", 0o755, 0)) == m.Rlerror(30)  # EROFS
        peer.close()
        if shutil.which("diodls"):
            listing = subprocess.run(["diodls", "-s", f"127.0.0.1:{port}", "-a", "ctl", "/"],
                                     capture_output=True, text=True, timeout=30, check=False)
            assert "zero" in listing.stdout, listing.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "listening on tcp://127.0.0.1" in err
