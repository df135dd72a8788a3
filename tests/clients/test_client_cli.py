"""The client verbs of the ``ninep`` command, run as a shell user would run them."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clients.targets import Target

ROOT = Path(__file__).resolve().parents[2]


def ninep(target: Target | None, *argv: str, stdin: bytes | None = None,
          ) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m clients.cli VERB ...`` with the target's connection options."""
    verb, *rest = argv
    options = target.cli_args() if target is not None else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NINEP_SERVER", None)
    return subprocess.run([sys.executable, "-m", "ninep.clients.cli", verb, *options, *rest],
                          input=stdin, capture_output=True, cwd=ROOT, env=env, timeout=60)


def test_put_get_cat_round_trip(target: Target, workdir: str, tmp_path: Path) -> None:
    local = tmp_path / "data.bin"
    data = os.urandom(3 * 1024 * 1024 + 5)
    local.write_bytes(data)
    assert ninep(target, "put", str(local), f"{workdir}/remote.bin").returncode == 0
    back = tmp_path / "back.bin"
    done = ninep(target, "get", f"{workdir}/remote.bin", str(back))
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert ninep(target, "put", str(local), workdir).returncode == 0  # into a directory
    cat = ninep(target, "cat", f"{workdir}/data.bin")
    assert cat.returncode == 0 and cat.stdout == data


def test_ls_mkdir_mv_rm(target: Target, workdir: str) -> None:
    assert ninep(target, "mkdir", f"{workdir}/d").returncode == 0
    assert ninep(target, "mkdir", "-p", f"{workdir}/p/q/r").returncode == 0
    assert ninep(target, "mv", f"{workdir}/d", f"{workdir}/e").returncode == 0
    ls = ninep(target, "ls", workdir)
    assert ls.returncode == 0 and ls.stdout.decode().split() == ["e", "p"]
    long = ninep(target, "ls", "-l", workdir)
    lines = long.stdout.decode().splitlines()
    assert long.returncode == 0 and len(lines) == 2
    assert lines[0].startswith("drwx") and lines[0].endswith(" e")
    rm = ninep(target, "rm", f"{workdir}/p", f"{workdir}/e/../missing", f"{workdir}/e")
    assert rm.returncode == 1
    assert rm.stderr.decode().splitlines() == [
        f"ninep: {workdir}/p: Is a directory",
        f"ninep: {workdir}/e/../missing: No such file or directory",
        f"ninep: {workdir}/e: Is a directory"]
    assert ninep(target, "rm", "-r", f"{workdir}/p").returncode == 0
    assert ninep(target, "rm", "-f", f"{workdir}/nothing").returncode == 0
    assert ninep(target, "ls", workdir).stdout.decode().split() == ["e"]


def test_stat_and_tree(target: Target, workdir: str, tmp_path: Path) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"12345")
    ninep(target, "mkdir", "-p", f"{workdir}/a/b")
    ninep(target, "put", str(local), f"{workdir}/a/b/f")
    ninep(target, "put", str(local), f"{workdir}/a/g")
    st = ninep(target, "stat", f"{workdir}/a/b/f")
    assert st.returncode == 0
    assert "Size: 5" in st.stdout.decode() and "regular file" in st.stdout.decode()
    tree = ninep(target, "tree", f"{workdir}/a")
    assert tree.returncode == 0
    assert tree.stdout.decode().splitlines() == [
        f"{workdir}/a", "├── b", "│   └── f", "└── g", "", "1 directory, 2 files"]


def test_missing_path_is_exit_1_with_message(target: Target, workdir: str) -> None:
    for verb in ("ls", "cat", "stat", "rm"):
        done = ninep(target, verb, f"{workdir}/missing")
        assert done.returncode == 1
        assert done.stderr.decode() == f"ninep: {workdir}/missing: No such file or directory\n"
    done = ninep(target, "get", f"{workdir}/missing", "/tmp/never-written")
    assert done.returncode == 1 and not os.path.exists("/tmp/never-written")


def test_local_error_names_the_local_file(target: Target, workdir: str, tmp_path: Path) -> None:
    done = ninep(target, "put", str(tmp_path / "absent"), f"{workdir}/x")
    assert done.returncode == 1
    assert done.stderr.decode() == f"ninep: {tmp_path / 'absent'}: No such file or directory\n"


def test_usage_errors_exit_2() -> None:
    assert ninep(None, "frobnicate").returncode == 2
    done = ninep(None, "ls", "--server", "http://nowhere")
    assert done.returncode == 2 and b"tcp://" in done.stderr
    done = ninep(None, "ls", "--server", "tcp://127.0.0.1:1", "--ca", "/nonexistent")
    assert done.returncode == 2 and b"tls://127.0.0.1:1" in done.stderr
    assert ninep(None, "get", "--server", "tcp://127.0.0.1:1").returncode == 2


def test_connection_refused_is_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = ninep(None, "ls", "--server", f"tcp://127.0.0.1:{port}")
    assert done.returncode == 1
    message = done.stderr.decode()
    assert message.count("\n") == 1 and "Traceback" not in message
    assert message.startswith(f"ninep: tcp://127.0.0.1:{port}: cannot connect")


def test_default_server_is_the_servers_default_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from ninep.clients.cli import build_parser

    monkeypatch.delenv("NINEP_SERVER", raising=False)
    assert build_parser().parse_args(["ls"]).server == "tcp://127.0.0.1:5640"
    monkeypatch.setenv("NINEP_SERVER", "files.example:564")
    assert build_parser().parse_args(["ls"]).server == "files.example:564"


def test_host_port_means_tcp(target: Target, workdir: str) -> None:
    hostport = target.url.removeprefix("tcp://")
    options = target.cli_args()
    options[options.index("--server") + 1] = hostport
    done = subprocess.run([sys.executable, "-m", "ninep.clients.cli", "ls", *options, workdir],
                          capture_output=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr


def test_help_lists_the_verbs() -> None:
    done = subprocess.run([sys.executable, "-m", "ninep.clients.cli", "--help"], capture_output=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 0
    for verb in ("ls", "cat", "get", "put", "stat", "mkdir", "rm", "mv", "tree"):
        assert verb in done.stdout.decode()


@pytest.mark.parametrize("verb", ["ls", "tree"])
def test_server_from_environment(target: Target, workdir: str, verb: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NINEP_SERVER": target.url}
    options = [a for a in target.cli_args()]
    i = options.index("--server")
    del options[i:i + 2]
    done = subprocess.run([sys.executable, "-m", "ninep.clients.cli", verb, *options, workdir],
                          capture_output=True, cwd=ROOT, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
