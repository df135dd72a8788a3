"""Boot the kernel-test guest once and run ``ninep mount`` in it against a real server.

About 90 s under TCG (test_mount_helper.py). The guest gets a layer holding this
host's Python runtime (scripts/mount-helper-files, at the same paths, plus the
ldd closure), the keys and certificates; the server has a key policy and a TLS
listener. Each guest check prints ``ok: ...`` or ``FAILED: ...``; the guest's exit
status is 0 when every check passed. Also runnable by hand:

    .venv/bin/python -m tests.kernel.mount_helper_boot
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ninep.certs import make_ca, make_client, make_server
from tests.auth_policy import AuthServer, auth_server

from . import guest

ROOT = Path(__file__).resolve().parents[2]

GUEST_SCRIPT = """#!/bin/sh
PY={python}
export PYTHONPATH={pythonpath}
K=/etc/ninep/keys
fail=0
check() {{ if "$@"; then echo "ok: $*"; else echo "FAILED: $*"; fail=1; fi; }}
refused() {{ if "$@"; then echo "FAILED (not refused): $*"; fail=1; else echo "ok, refused: $*"; fi; }}
relay_running() {{ ps | grep -v grep | grep -q 'ninep mount --tls'; }}  # busybox has no pgrep
mkdir -p /mnt/a /mnt/b /mnt/c
check $PY -m ninep mount --auth-key $K/alice --aname secret --uname root 10.0.2.2:{port} /mnt/a
check grep -q secret /mnt/a/only-for-alice
grep ' /mnt/a ' /proc/mounts
check $PY -m ninep mount --tls --ca $K/ca.crt --cert $K/laptop.crt --key $K/laptop.key \\
    --auth-key $K/alice --aname secret --uname root -o msize=262144 10.0.2.2:{tls_port} /mnt/b
dd if=/dev/urandom of=/tmp/big bs=1M count=4 2>/dev/null
check cp /tmp/big /mnt/b/big
check cmp /tmp/big /mnt/b/big
check relay_running
check umount /mnt/b
sleep 2
refused relay_running
refused $PY -m ninep mount --auth-key $K/mallory --aname secret 10.0.2.2:{port} /mnt/c
refused mount -t 9p -o trans=tcp,port={port},version=9p2000.L,aname=secret 10.0.2.2 /mnt/c
check mount -t 9p -o trans=tcp,port={port},version=9p2000.L,aname=public 10.0.2.2 /mnt/c
check ls /mnt/c/for-everyone
umount /mnt/c; umount /mnt/a
exit $fail
"""


def _runtime_files() -> tuple[list[str], str, str]:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "mount-helper-files")],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    python = next(line.split(": ", 1)[1] for line in out if line.startswith("# interpreter"))
    pythonpath = next(line.split("=", 1)[1] for line in out if "PYTHONPATH=" in line)
    files = [line for line in out if not line.startswith("#")]
    libs: set[str] = set()
    for path in files:
        if ".so" in Path(path).name or path == python:
            ldd = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
            libs.update(tok for tok in ldd.split() if tok.startswith("/"))
    return sorted(set(files) | libs), python, pythonpath


#: The guest mounts a tmpfs on /tmp: host files from there (a checkout or a venv in
#: /tmp) go here instead, and PYTHONPATH follows them.
_GUEST_TMP = "/var/lib/ninep-host-tmp"


def _guest_path(path: str) -> str:
    """Where a host file lives in the guest: the same path, unless /tmp hides it."""
    return _GUEST_TMP + path if path.startswith("/tmp/") else path


def _tls_listener(server: AuthServer, pki: Path) -> int:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "srv" / "server.crt", pki / "srv" / "server.key")
    ctx.load_verify_locations(pki / "ca" / "ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    running = server.running

    async def listen() -> asyncio.AbstractServer:
        return await asyncio.get_running_loop().create_server(
            lambda: running.server.connection("tls"), "127.0.0.1", 0, ssl=ctx)

    return int(running.call(listen()).sockets[0].getsockname()[1])


def run(on_line: Callable[[str], None] | None = None) -> guest.BootResult:
    """Make the keys, start the servers, boot the guest; what the guest printed."""
    work = Path(tempfile.mkdtemp(prefix="ninep-guest-mount-"))
    try:
        pki = work / "pki"
        make_ca(pki / "ca")
        make_server(pki / "ca", pki / "srv", "10.0.2.2")  # the host, as the guest sees it
        make_client(pki / "ca", pki / "cli", "laptop")
        servers = auth_server(work)
        server = next(servers)
        try:
            return _boot(server, _tls_listener(server, pki), pki, work, on_line)
        finally:
            servers.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _boot(server: AuthServer, tls_port: int, pki: Path, work: Path,
          on_line: Callable[[str], None] | None) -> guest.BootResult:
    files, python, pythonpath = _runtime_files()
    if python.startswith("/tmp/"):
        raise guest.GuestError(f"the interpreter {python} lives in /tmp, which the guest hides")
    pythonpath = ":".join(_guest_path(entry) for entry in pythonpath.split(":"))
    script = GUEST_SCRIPT.format(python=python, pythonpath=pythonpath,
                                 port=server.running.port, tls_port=tls_port)

    def layer(w: guest.CpioWriter) -> None:
        for path in files:
            w.copy(_guest_path(path).lstrip("/"), path)
        w.file("run/main.sh", script.encode(), 0o755)
        keys = {"alice": server.alice_file, "mallory": server.mallory_file,
                "ca.crt": pki / "ca" / "ca.crt", "laptop.crt": pki / "cli" / "laptop.crt",
                "laptop.key": pki / "cli" / "laptop.key"}
        for name, source in keys.items():
            w.copy(f"etc/ninep/keys/{name}", str(source), 0o600)

    image = guest.build_guest()
    initrd = guest.make_initrd(image, layer, work / "initrd.cpio")
    command = guest.qemu_command(image, initrd, extra=[
        "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile="])
    return guest.boot(["nice", "-n", "10", *command], 600, on_line=on_line)  # shared machine


if __name__ == "__main__":
    outcome = run(on_line=print)
    print(f"guest exit status {outcome.exit_status}, {outcome.wall:.0f} s")
    sys.exit(0 if outcome.exit_status == 0 else 1)
