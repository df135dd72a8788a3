"""Build, cache and boot the Linux guest that mounts our server with the kernel's v9fs client.

The guest is made only from Debian packages:

- the kernel: ``apt-get download`` of the image that ``linux-image-amd64`` depends on,
  unpacked with ``dpkg-deb -x`` (never installed); the decompressed ``vmlinux`` is
  pulled out of the bzImage so QEMU boots it through its PVH entry (no xz under TCG);
- the modules: the dependency closure of virtio_pci, virtio_net, virtio_console,
  9pnet, 9pnet_fd, netfs, fscache and 9p, read from each module's ``.modinfo``
  (what ``depmod`` would write to modules.dep) and loaded in order by ``/init``;
- ``busybox-static`` for the shell and the core tools;
- a second, uncompressed cpio layer with fio, perl-base (fcntl locks, rename(2),
  the open-unlink idiom), util-linux's ``flock`` and ``setpriv`` (Debian's busybox
  has neither ``flock`` nor ``setuidgid``) and every library they load, copied with
  the ELF loader.

Both layers are cached under ``$NINEP_KERNEL_CACHE`` (default
``~/.cache/ninep-kernel``), keyed by the kernel package and the host tools, so
a fresh machine builds once (apt-get installs what is missing when running as
root). Each boot appends a small third layer with the guest scripts and the run's
configuration; the kernel unpacks the concatenated archives in order.

``boot()`` runs QEMU with ``-accel tcg`` (this host's KVM is PVM-only and hangs a
stock kernel) under a hard timeout, streaming the serial console line by line.

Run ``python -m tests.kernel.guest build`` to build (or show) the cache, and
``python -m tests.kernel.guest shell --port PORT`` for an interactive guest.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import lzma
import os
import re
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "BootResult",
    "GuestError",
    "GuestImage",
    "boot",
    "build_guest",
    "cache_dir",
    "write_cpio",
]

#: Bump when the layout of the cached layers changes.
BUILD_VERSION = "7"
MODULES = ("virtio_pci", "virtio_net", "virtio_console", "9pnet", "9pnet_fd",
           "netfs", "fscache", "9p")
#: Host programs copied (with their libraries) into the tools layer.
TOOL_BINARIES = ("/usr/bin/fio", "/usr/bin/perl", "/usr/bin/flock", "/usr/bin/setpriv")
#: Directory trees copied as they are into the tools layer.
TOOL_TREES = ("/usr/lib/x86_64-linux-gnu/perl-base",)
#: What to apt-get install when a host program is missing.
APT_FOR = {
    "qemu-system-x86_64": "qemu-system-x86",
    "fio": "fio",
    "busybox": "busybox-static",
    "perl": "perl-base",
    "flock": "util-linux",
    "setpriv": "util-linux",
    "dpkg-deb": "dpkg",
}
LIB_PATH = "/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu"


class GuestError(RuntimeError):
    """The guest could not be built or booted; the message says why and what to install."""


def cache_dir() -> Path:
    root = os.environ.get("NINEP_KERNEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ninep-kernel")
    return Path(root)


def die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the process that started it dies (no orphans)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def log(message: str) -> None:
    print(f"[kernel-guest] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Host tools


def _run(argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), check=True, capture_output=True, text=True,
                              cwd=cwd, env=env, timeout=timeout)
    except FileNotFoundError as exc:
        raise GuestError(f"{argv[0]} is not installed") from exc
    except subprocess.CalledProcessError as exc:
        raise GuestError(f"{' '.join(argv)} failed ({exc.returncode}):\n{exc.stderr}") from exc
    except subprocess.TimeoutExpired as exc:
        raise GuestError(f"{' '.join(argv)} timed out after {timeout} s") from exc


def _is_static_elf(path: str) -> bool:
    """True for an ELF executable without a PT_INTERP program header."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return False
            phoff, = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def _missing_tools() -> list[str]:
    missing = []
    for tool in ("qemu-system-x86_64", "dpkg-deb", "fio", "perl", "flock", "setpriv"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            missing.append(tool)
    if not _is_static_elf(_busybox_path()):
        missing.append("busybox")
    return missing


def _busybox_path() -> str:
    return shutil.which("busybox") or "/bin/busybox"


def ensure_host_tools() -> None:
    """Install missing host packages with apt-get when root; otherwise say what to install."""
    missing = _missing_tools()
    if not missing:
        return
    packages = sorted({APT_FOR[t] for t in missing})
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise GuestError(f"missing {', '.join(missing)}: install the Debian packages "
                         f"{' '.join(packages)} (apt-get install --no-install-recommends ...)")
    log(f"installing {' '.join(packages)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-qq"], env=env, timeout=600)
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
         env=env, timeout=900)
    still = _missing_tools()
    if still:
        raise GuestError(f"still missing after apt-get install: {', '.join(still)}")


def _kernel_package() -> str:
    """The versioned image package that ``linux-image-amd64`` depends on."""
    def query() -> str | None:
        try:
            out = _run(["apt-cache", "depends", "linux-image-amd64"]).stdout
        except GuestError:
            return None
        found = re.search(r"Depends:\s*(linux-image-[0-9][^\s]*)", out)
        return found.group(1) if found else None

    name = query()
    if name is None and os.geteuid() == 0:
        _run(["apt-get", "update", "-qq"], timeout=600)
        name = query()
    if name is None:
        raise GuestError("apt-cache cannot resolve linux-image-amd64 (run apt-get update)")
    return name


# ---------------------------------------------------------------------------
# cpio (newc) writer


class CpioWriter:
    """A minimal writer of uncompressed newc archives, parents created implicitly."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.ino = 1
        self.seen: set[str] = set()

    def _header(self, name: str, mode: int, size: int, nlink: int = 1,
                rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1],
                  len(encoded), 0)
        self.ino += 1
        header = b"070701" + b"".join(b"%08X" % v for v in fields)
        self.out.write(header + encoded)
        self._pad(len(header) + len(encoded))

    def _pad(self, length: int) -> None:
        if length % 4:
            self.out.write(b"\0" * (4 - length % 4))

    def _parents(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.mkdir("/".join(parts[:i]))

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        path = path.strip("/")
        if path in self.seen:
            return
        self._parents(path)
        self.seen.add(path)
        self._header(path, stat.S_IFDIR | mode, 0, nlink=2)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        self._parents(path)
        self.seen.add(path)
        self._header(path, stat.S_IFREG | mode, len(data))
        self.out.write(data)
        self._pad(len(data))

    def copy(self, path: str, source: str, mode: int | None = None) -> None:
        path = path.strip("/")
        self._parents(path)
        self.seen.add(path)
        st = os.stat(source)
        self._header(path, stat.S_IFREG | (mode if mode is not None else st.st_mode & 0o7777),
                     st.st_size)
        with open(source, "rb") as f:
            shutil.copyfileobj(f, self.out, 1 << 20)
        self._pad(st.st_size)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self._parents(path)
        self.seen.add(path)
        data = target.encode()
        self._header(path, stat.S_IFLNK | 0o777, len(data))
        self.out.write(data)
        self._pad(len(data))

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        path = path.strip("/")
        self._parents(path)
        self.seen.add(path)
        self._header(path, stat.S_IFCHR | mode, 0, rdev=(major, minor))

    def finish(self) -> None:
        self._header("TRAILER!!!", 0, 0)
        tail = self.out.tell() % 512
        if tail:
            self.out.write(b"\0" * (512 - tail))


def write_cpio(path: Path, fill: Callable[[CpioWriter], None]) -> None:
    """Write an archive atomically: ``fill`` adds the entries."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        writer = CpioWriter(out)
        fill(writer)
        writer.finish()
    tmp.replace(path)


# ---------------------------------------------------------------------------
# Kernel and modules


def _vmlinux_from_bzimage(bzimage: bytes) -> bytes:
    """Decompress the xz payload of an x86 bzImage (boot protocol >= 2.08)."""
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start:start + payload_length]
    if not payload.startswith(b"\xfd7zXZ\x00"):
        raise GuestError("the kernel's payload is not xz-compressed; cannot extract vmlinux")
    vmlinux = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    if not vmlinux.startswith(b"\x7fELF"):
        raise GuestError("the decompressed kernel payload is not an ELF image")
    return vmlinux


def _modinfo(path: Path) -> dict[str, str]:
    """The key=value strings of a module's ``.modinfo`` section."""
    data = path.read_bytes()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", data, shoff + i * shentsize)
        return name, offset, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        end = data.index(b"\0", stroff + name)
        if data[stroff + name:end] == b".modinfo":
            info: dict[str, str] = {}
            for item in data[offset:offset + size].split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep and key not in info:
                    info[key] = value
            return info
    return {}


def module_closure(moddir: Path, wanted: Iterable[str]) -> list[Path]:
    """The modules in ``wanted`` and everything they depend on, dependencies first."""
    index = {p.name.split(".ko")[0].replace("-", "_"): p for p in moddir.rglob("*.ko*")}
    order: list[Path] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in visiting:
            return
        visiting.add(name)
        if name not in index:
            raise GuestError(f"module {name} is not in {moddir}")
        for dep in filter(None, _modinfo(index[name]).get("depends", "").split(",")):
            visit(dep)
        order.append(index[name])

    for name in wanted:
        visit(name)
    return order


# ---------------------------------------------------------------------------
# The guest image


@dataclass(frozen=True)
class GuestImage:
    """The cached pieces of a guest: boot ``kernel`` with ``layers`` + a per-run layer."""

    kernel: Path
    layers: tuple[Path, ...]
    kernel_release: str
    build_seconds: float = 0.0
    cached: bool = True


INIT = r"""#!/bin/sh
# ninep kernel-test guest: set up the machine, run /run/main.sh, power off.
export PATH=/usr/bin:/bin:/usr/sbin:/sbin LD_LIBRARY_PATH=@LIBPATH@ HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs -o size=75% tmp /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mkdir -p /dev/pts /dev/virtio-ports /run/ninep
for m in $(cat /etc/ninep/modules); do
    insmod "$m" || echo "@@NINEP-WARN insmod $m failed"
done
hostname ninep-guest
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2
fi
for p in /sys/class/virtio-ports/*; do
    [ -e "$p/name" ] || continue
    ln -sf "/dev/${p##*/}" "/dev/virtio-ports/$(cat "$p/name")"
done
echo "@@NINEP-BOOTED $(cut -d' ' -f1 /proc/uptime)"
if [ -x /run/main.sh ]; then
    /run/main.sh
    echo "@@NINEP-EXIT $?"
else
    setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'
fi
sync
poweroff -f
"""


def _base_layer(writer: CpioWriter, tree: Path, modules: list[Path], release: str) -> None:
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run",
              "root", "mnt", "etc/ninep", "var/tmp"):
        writer.mkdir(d)
    writer.chardev("dev/console", 5, 1)
    writer.chardev("dev/null", 1, 3, 0o666)
    writer.copy("bin/busybox", _busybox_path(), 0o755)
    applets = _run([_busybox_path(), "--list-full"]).stdout.split()
    for applet in applets:
        if applet.rsplit("/", 1)[-1] != "busybox":
            writer.symlink(applet, "/bin/busybox")
    writer.file("init", INIT.replace("@LIBPATH@", LIB_PATH).encode(), 0o755)
    writer.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                              b"u1:x:1000:1000:u1:/tmp:/bin/sh\n"
                              b"u2:x:1001:1001:u2:/tmp:/bin/sh\n"
                              b"nobody:x:65534:65534:nobody:/:/bin/sh\n")
    writer.file("etc/group", b"root:x:0:\nu1:x:1000:\nu2:x:1001:\nshared:x:1234:u1,u2\n"
                             b"nogroup:x:65534:\n")
    paths = []
    for module in modules:
        dest = f"lib/modules/{release}/{module.relative_to(tree / 'lib/modules' / release)}"
        writer.copy(dest, str(module), 0o644)
        paths.append("/" + dest)
    writer.file("etc/ninep/modules", ("\n".join(paths) + "\n").encode())


def _ldd(binary: str) -> list[str]:
    out = _run(["ldd", binary]).stdout
    libs = []
    for line in out.splitlines():
        found = re.search(r"=>\s*(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if found:
            libs.append(found.group(1))
    return libs


def _tools_layer(writer: CpioWriter) -> None:
    files: dict[str, str] = {}
    for binary in TOOL_BINARIES:
        files[binary] = binary
        for lib in _ldd(binary):
            files[lib] = lib
    files["/lib64/ld-linux-x86-64.so.2"] = "/lib64/ld-linux-x86-64.so.2"
    for dest, source in sorted(files.items()):
        writer.copy(dest, os.path.realpath(source))
    for tree in TOOL_TREES:
        for dirpath, _dirs, names in os.walk(tree):
            for name in names:
                source = os.path.join(dirpath, name)
                if os.path.isfile(source):
                    writer.copy(source, os.path.realpath(source))


def _fingerprint(kernel_pkg: str) -> str:
    parts = [BUILD_VERSION, kernel_pkg]
    for path in (*TOOL_BINARIES, _busybox_path()):
        st = os.stat(path)
        parts.append(f"{path}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def build_guest(force: bool = False) -> GuestImage:
    """Return the cached guest, building it first when missing or stale."""
    started = time.monotonic()
    ensure_host_tools()
    pkg = _kernel_package()
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time (concurrent test runs)
        return _build_locked(root, pkg, started, force)


def _build_locked(root: Path, pkg: str, started: float, force: bool) -> GuestImage:
    key = _fingerprint(pkg)
    out = root / key
    meta = out / "image.json"
    if meta.exists() and not force:
        info = json.loads(meta.read_text())
        return GuestImage(Path(info["kernel"]), tuple(Path(p) for p in info["layers"]),
                          info["release"], time.monotonic() - started, cached=True)
    log(f"building the guest from {pkg} into {out}")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        work = Path(tmp)
        try:
            _run(["apt-get", "download", pkg], cwd=work, timeout=900)
        except GuestError:
            if os.geteuid() != 0:
                raise
            _run(["apt-get", "update", "-qq"], timeout=600)  # stale lists: refresh once
            _run(["apt-get", "download", pkg], cwd=work, timeout=900)
        deb = next(work.glob("*.deb"))
        tree = work / "tree"
        _run(["dpkg-deb", "-x", str(deb), str(tree)], timeout=900)
        vmlinuz = next((tree / "boot").glob("vmlinuz-*"))
        release = vmlinuz.name.removeprefix("vmlinuz-")
        (out / "vmlinux").write_bytes(_vmlinux_from_bzimage(vmlinuz.read_bytes()))
        modules = module_closure(tree / "lib/modules" / release, MODULES)
        write_cpio(out / "base.cpio", lambda w: _base_layer(w, tree, modules, release))
    write_cpio(out / "tools.cpio", _tools_layer)
    image = GuestImage(out / "vmlinux", (out / "base.cpio", out / "tools.cpio"), release,
                       time.monotonic() - started, cached=False)
    meta.write_text(json.dumps({"kernel": str(image.kernel), "release": release,
                                "layers": [str(p) for p in image.layers], "package": pkg}))
    for stale in root.iterdir():
        if stale.is_dir() and stale.name != key and re.fullmatch(r"[0-9a-f]{16}", stale.name):
            shutil.rmtree(stale, ignore_errors=True)
    log(f"guest built in {image.build_seconds:.1f} s")
    return image


# ---------------------------------------------------------------------------
# Booting


@dataclass
class BootResult:
    """What a boot printed, how it ended, and how long it took."""

    lines: list[str] = field(default_factory=list)
    exit_status: int | None = None  # from the @@NINEP-EXIT marker
    timed_out: bool = False
    returncode: int | None = None  # QEMU's
    booted_after: float | None = None  # seconds from QEMU start to @@NINEP-BOOTED
    wall: float = 0.0
    stderr: str = ""

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def qemu_command(image: GuestImage, initrd: Path, *, memory_mb: int = 1024, cpus: int = 2,
                 extra: Sequence[str] = (), append: str = "") -> list[str]:
    """The QEMU command line that boots ``image`` with the concatenated ``initrd``."""
    # Everything that costs guest CPU under TCG and buys nothing in a throwaway test VM
    # is off: CPU-bug mitigations, crypto self-tests, zeroing allocations, LSMs, audit.
    cmdline = (f"console=ttyS0 loglevel=4 panic=-1 rdinit=/init mitigations=off "
               f"cryptomgr.notests tsc=reliable init_on_alloc=0 audit=0 apparmor=0 "
               f"security=none {append}").strip()
    return ["qemu-system-x86_64", "-accel", "tcg", "-M", "pc", "-cpu", "max",
            "-m", str(memory_mb), "-smp", str(cpus), "-nodefaults", "-no-reboot",
            "-display", "none", "-vga", "none", "-serial", "stdio", "-monitor", "none",
            "-kernel", str(image.kernel), "-initrd", str(initrd), "-append", cmdline,
            *extra]


def make_initrd(image: GuestImage, run_layer: Callable[[CpioWriter], None], dest: Path) -> Path:
    """Concatenate the cached layers and a per-run layer into ``dest``."""
    layer = dest.with_name(dest.name + ".run")
    write_cpio(layer, run_layer)
    with open(dest, "wb") as out:
        for part in (*image.layers, layer):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    layer.unlink()
    return dest


def boot(command: Sequence[str], timeout: float,
         on_line: Callable[[str], None] | None = None) -> BootResult:
    """Run QEMU, stream its serial console, and kill it at ``timeout`` seconds."""
    result = BootResult()
    started = time.monotonic()
    proc = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=die_with_parent)
    assert proc.stdout is not None and proc.stderr is not None
    pending = b""
    streams = {proc.stdout.fileno(): "out", proc.stderr.fileno(): "err"}
    errbuf = b""
    try:
        while streams:
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                result.timed_out = True
                break
            ready, _, _ = select.select(list(streams), [], [], min(left, 1.0))
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    del streams[fd]
                    continue
                if streams[fd] == "err":
                    errbuf += chunk
                    continue
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    line = raw.decode(errors="replace").rstrip("\r")
                    result.lines.append(line)
                    if "@@NINEP-BOOTED" in line and result.booted_after is None:
                        result.booted_after = time.monotonic() - started
                    found = re.search(r"@@NINEP-EXIT (\d+)", line)
                    if found:
                        result.exit_status = int(found.group(1))
                    if on_line is not None:
                        on_line(line)
    finally:
        if pending:
            result.lines.append(pending.decode(errors="replace"))
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        result.returncode = proc.wait(30)
        result.stderr = errbuf.decode(errors="replace")
        result.wall = time.monotonic() - started
    return result


def _main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the cached guest (or show it)")
    build.add_argument("--force", action="store_true")
    shell = sub.add_parser("shell", help="boot an interactive guest (serial on this terminal)")
    shell.add_argument("--port", type=int, default=5640, help="a server on 127.0.0.1:PORT")
    shell.add_argument("--socket", help="a server's UNIX socket, as virtio-serial port 'ninep'")
    args = parser.parse_args()
    image = build_guest(force=getattr(args, "force", False))
    print(json.dumps({"kernel": str(image.kernel), "layers": [str(p) for p in image.layers],
                      "release": image.kernel_release, "cached": image.cached,
                      "seconds": round(image.build_seconds, 1)}, indent=2))
    if args.command == "shell":
        with tempfile.TemporaryDirectory() as tmp:
            initrd = make_initrd(image, lambda w: None, Path(tmp) / "initrd.cpio")
            extra = ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile="]
            if args.socket:
                extra += ["-chardev", f"socket,id=c0,path={args.socket},reconnect=1",
                          "-device", "virtio-serial-pci",
                          "-device", "virtserialport,chardev=c0,name=ninep"]
            cmd = qemu_command(image, initrd, extra=extra)
            cmd[cmd.index("stdio")] = "mon:stdio"
            print(f"mount -t 9p -o trans=tcp,port={args.port},version=9p2000.L,"
                  f"msize=1048576 10.0.2.2 /mnt   (Ctrl-A X quits)", flush=True)
            return subprocess.call(cmd)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
