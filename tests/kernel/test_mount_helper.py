"""``ninep mount`` with the real Linux 9p client: TLS and Tauth in user space, trans=fd.

One guest boot (mount_helper_boot.py): a key-authenticated mount over TCP, one over
TLS through the relay process (4 MiB written and compared; the relay gone after
umount), a wrong key refused, the kernel alone refused on the key-only aname and
admitted on the open one.
"""

from __future__ import annotations

import re

from . import mount_helper_boot


def test_ninep_mount_in_the_guest() -> None:
    result = mount_helper_boot.run()
    checks = [line for line in result.lines if re.match(r"(ok|FAILED)", line)]
    failed = [line for line in checks if line.startswith("FAILED")]
    assert not failed and result.exit_status == 0, (
        f"exit status {result.exit_status}, timed out {result.timed_out}\n"
        + "\n".join(result.lines[-80:]))
    assert len(checks) >= 12, "\n".join(result.lines[-80:])
