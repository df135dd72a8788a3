"""The Linux v9fs client against our server: one test per (share, scenario).

The guest runs every check of a boot in one go (see harness.py); each test here
reports one check, with the guest's output (and the server log's tail) on failure.
"""

from __future__ import annotations

import pytest

from .backends import parse_manifest
from .harness import Suite, all_checks

CHECKS = all_checks()


@pytest.mark.parametrize(("boot", "check"), CHECKS, ids=[check for _, check in CHECKS])
def test_kernel(kernel_suite: Suite, boot: str, check: str) -> None:
    outcome = kernel_suite.outcome(boot)
    result = outcome.result(check)
    if not result.passed:
        where = f"\n(console log and server log: {outcome.rundir})" if outcome.rundir else ""
        pytest.fail(f"{check} failed in the guest:\n{result.output}\n"
                    f"--- server log (tail) ---\n{outcome.server_log}{where}", pytrace=False)


@pytest.mark.parametrize("check", ["tcp_tar_64k_user/ro_tree"])
def test_tar_share_shows_the_archive(kernel_suite: Suite, check: str) -> None:
    """What the kernel lists of the tar share is the archived tree: names, types, sizes,
    modes, owners, times, link counts, link targets and contents."""
    outcome = kernel_suite.outcome("backends")
    seen = parse_manifest(outcome.result(check).output)
    expected = sorted(outcome.expected_tree, key=lambda e: e.path)
    assert expected, "the boot produced no seed manifest"
    assert [e for e in seen if e not in expected] == []
    assert [e for e in expected if e not in seen] == []
