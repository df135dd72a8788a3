"""ninep/server/malloc_tuning.py: 1 MiB frames come from the heap, not a fresh mmap each."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ninep.server.malloc_tuning import tune_malloc
from tests.hostile.serverproc import serve_process

ROOT = Path(__file__).resolve().parents[2]
DIODLOAD = shutil.which("diodload") or "/usr/sbin/diodload"


def _minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


@pytest.mark.skipif(not Path(DIODLOAD).exists(), reason="Debian's diodload is not installed")
def test_copying_at_msize_1mib_does_not_fault_in_every_frame(tmp_path: Path) -> None:
    # the package from PYTHONPATH is the start-up after which glibc's dynamic mmap
    # threshold never rose: ~470 page faults per MiB copied before the thresholds
    # were fixed, none once the heap has grown (a bound on counts, not on time)
    with serve_process([], tmp_path, env={"PYTHONPATH": str(ROOT)}) as server:
        before = _minor_faults(server.proc.pid)
        done = subprocess.run([DIODLOAD, "-s", f"127.0.0.1:{server.port}", "-m", "1048576",
                               "-n", "1", "-r", "2"], capture_output=True, text=True,
                              timeout=60)
        faults = _minor_faults(server.proc.pid) - before
    rate = re.search(r"(\d+) rMB/s", done.stdout + done.stderr)
    assert done.returncode == 0 and rate is not None, done.stdout + done.stderr
    copied_mib = 2 * int(rate.group(1)) * 2  # read and written, for 2 seconds
    assert copied_mib > 0
    assert faults < 4 * 1024 + copied_mib // 8, (faults, copied_mib)


def test_the_operators_malloc_settings_are_left_alone() -> None:
    assert tune_malloc({"MALLOC_TRIM_THRESHOLD_": "0"}) is False
    assert tune_malloc({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"}) is False
