"""The back server the backends boot imports, and the ext2 image that lives in its RAM disk.

A second ``ninep serve`` (a RAM disk) runs beside the server under test, which
mounts it at /imp (``9p:tcp://...``) and serves ``/imp/inner.img``, an ext2 image
in that RAM disk, at /inner (``ext2:@/imp/inner.img``): an imported mount, and
an image that is a file of another mount of the namespace. The host seeds the
RAM disk through 9P before the server under test starts, and after the boot
reads the image back and runs ``e2fsck -fn`` on it.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ninep.clients import SyncClient

from . import guest

__all__ = ["ImportStore"]

#: What the guest finds at /imp/hello.txt (scenarios/federation.sh).
IMPORT_SEED = b"served by the back server\n"
IMAGE_NAME = "inner.img"


class ImportStore:
    """The back server process (started by ``create``) and the mounts that reach it."""

    HOST_CHECKS = ("inner_image_e2fsck_clean",)

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log_path = workdir / "back-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def create(self) -> None:
        """Start the back server on a free port and put the seed and the image in it."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "ninep", "serve", "--listen", "tcp://127.0.0.1:0",
                "--mount", "/=ram", "--log-level", "INFO"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=guest.die_with_parent)
        deadline = time.monotonic() + 60
        while not self.url:
            found = re.search(r"listening on (tcp://127\.0\.0\.1:\d+)",
                              self.log_path.read_text(errors="replace"))
            if found:
                self.url = found.group(1)
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                raise guest.GuestError(f"the back server did not start: {self.log_path}")
            else:
                time.sleep(0.05)
        image = self.workdir / IMAGE_NAME
        subprocess.run([_sbin("mke2fs"), "-q", "-F", "-t", "ext2", "-b", "1024", str(image),
                        "16M"], check=True, capture_output=True)
        with SyncClient(self.url, uname="root", n_uname=0) as back:
            back.write_bytes("hello.txt", IMPORT_SEED)
            back.write_bytes(IMAGE_NAME, image.read_bytes())
        image.unlink()

    def mount_args(self) -> list[str]:
        # the server under test attaches as root there: the guest's users are checked
        # against the back server's owners and modes by the front (docs/backends.md)
        return ["--mount", f"/imp=9p:{self.url},uname=root,uid=0",
                "--mount", f"/inner=ext2:@/imp/{IMAGE_NAME}"]

    def host_checks(self) -> dict[str, tuple[bool, str]]:
        """After the server under test stopped: the image as the guest left it is clean."""
        image = self.workdir / IMAGE_NAME
        try:
            with SyncClient(self.url, uname="root", n_uname=0) as back:
                image.write_bytes(back.read_bytes(IMAGE_NAME))
        except OSError as exc:
            return {"inner_image_e2fsck_clean": (False, f"reading the image back: {exc}")}
        finally:
            self.close()
        fsck = subprocess.run([_sbin("e2fsck"), "-fn", str(image)], capture_output=True,
                              text=True)
        return {"inner_image_e2fsck_clean": (fsck.returncode == 0, fsck.stdout + fsck.stderr)}

    def close(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)

    def remove(self) -> None:
        (self.workdir / IMAGE_NAME).unlink(missing_ok=True)


def _sbin(tool: str) -> str:
    return shutil.which(tool) or f"/usr/sbin/{tool}"
