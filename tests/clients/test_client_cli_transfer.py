"""``ninep get``/``put``/``mkdir`` as a shell user runs them: trees, overwrites, the umask,
and a progress bar only on a terminal."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

from ninep.clients import Client
from tests.clients.targets import Target

ROOT = Path(__file__).resolve().parents[2]


def ninep(target: Target, *argv: str, umask: int = 0o022, **kwargs: object,
          ) -> subprocess.CompletedProcess[bytes]:
    verb, *rest = argv
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "ninep.clients.cli", verb, *target.cli_args(), *rest], cwd=ROOT,
        env=env, timeout=120, preexec_fn=lambda: os.umask(umask), **kwargs)


def remote_mode(target: Target, path: str) -> int:
    async def stat() -> int:
        async with await Client.connect(target.url) as client:
            root = await client.attach(target.uname, "", target.n_uname)
            return (await root.stat(path)).st_mode & 0o7777
    return asyncio.run(stat())


def test_mkdir_and_put_honour_the_local_umask(ninep_target: Target, tmp_path: Path) -> None:
    assert ninep(ninep_target, "mkdir", "-p", "um/a/b", umask=0o027).returncode == 0
    assert [remote_mode(ninep_target, p) for p in ("um", "um/a", "um/a/b")] == [0o750] * 3
    local = tmp_path / "f"
    local.write_bytes(b"data")
    local.chmod(0o666)
    assert ninep(ninep_target, "put", str(local), "um/f", umask=0o022).returncode == 0
    assert remote_mode(ninep_target, "um/f") == 0o644


def _make_tree(top: Path) -> None:
    (top / "sub" / "deeper").mkdir(parents=True)
    (top / "a.txt").write_bytes(b"alpha\n")
    (top / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    (top / "sub" / "deeper" / "c").write_bytes(b"")
    (top / "link").symlink_to("a.txt")


def _snapshot(top: Path) -> dict[str, bytes | str]:
    seen: dict[str, bytes | str] = {}
    for path in sorted(top.rglob("*")):
        name = str(path.relative_to(top))
        if path.is_symlink():
            seen[name] = "-> " + os.readlink(path)
        elif path.is_file():
            seen[name] = path.read_bytes()
        else:
            seen[name] = "dir"
    return seen


def test_put_and_get_recursive_round_trip(ninep_target: Target, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _make_tree(src)
    assert ninep(ninep_target, "put", str(src), "tree").returncode == 1  # a dir needs -r
    done = ninep(ninep_target, "put", "-r", str(src), "tree", capture_output=True)
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    back = tmp_path / "back"
    done = ninep(ninep_target, "get", "-r", "tree", str(back), capture_output=True)
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert _snapshot(back) == _snapshot(src)
    into = tmp_path / "into"
    into.mkdir()  # an existing directory receives the tree under its own name, like cp -r
    assert ninep(ninep_target, "get", "-r", "tree", str(into)).returncode == 0
    assert _snapshot(into / "tree") == _snapshot(src)


def test_get_never_replaces_a_local_file_without_f(ninep_target: Target, tmp_path: Path) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"remote copy")
    assert ninep(ninep_target, "put", str(local), "over").returncode == 0
    local.write_bytes(b"precious")
    done = ninep(ninep_target, "get", "over", str(local), capture_output=True)
    assert done.returncode == 1 and local.read_bytes() == b"precious"
    assert done.stderr.decode() == f"ninep: {local}: File exists (use -f to replace it)\n"
    done = ninep(ninep_target, "get", "-f", "over", str(local), capture_output=True)
    assert done.returncode == 0 and local.read_bytes() == b"remote copy"
    done = ninep(ninep_target, "get", "/", str(tmp_path / "x"), capture_output=True)
    assert done.returncode == 1 and b"(use -r)" in done.stderr


def _on_a_terminal(target: Target, *argv: str) -> tuple[int, bytes]:
    """Run with stderr on a pseudo-terminal; everything written to it."""
    master, slave = pty.openpty()
    # a terminal 24 x 100 (a fresh pty is 0 x 0, where tqdm draws an empty bar)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.Popen([sys.executable, "-m", "ninep.clients.cli", argv[0],
                                 *target.cli_args(), *argv[1:]], cwd=ROOT, stderr=slave,
                                stdout=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        os.close(slave)
        seen = b""
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            seen += chunk
        return proc.wait(60), seen
    finally:
        os.close(master)


def test_progress_bar_on_a_terminal_only(ninep_target: Target, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(os.urandom(3 << 20))
    code, seen = _on_a_terminal(ninep_target, "put", "--progress", "always", str(big), "big")
    assert code == 0 and b"/3.00M [" in seen and b"B/s]" in seen, seen  # tqdm draws
    code, seen = _on_a_terminal(ninep_target, "get", "--progress", "always", "big",
                                str(tmp_path / "big2"))
    assert code == 0 and b"/3.00M [" in seen and b"B/s]" in seen, seen
    code, seen = _on_a_terminal(ninep_target, "get", "--progress", "never", "big",
                                str(tmp_path / "big3"))
    assert (code, seen) == (0, b"")
    piped = ninep(ninep_target, "get", "--progress", "always", "big", str(tmp_path / "big4"),
                  capture_output=True)
    assert (piped.returncode, piped.stderr) == (0, b"")  # a pipe never gets a bar
    assert (tmp_path / "big4").read_bytes() == big.read_bytes()
