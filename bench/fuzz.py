"""A longer run of the network fuzzer (tests/hostile/fuzzer.py) against a real server.

    python bench/fuzz.py --frames 1000000 --connections 20000 --seed 1
    python bench/fuzz.py --seed 1 --replay 4711      # one connection's frames again

Starts ``ninep serve`` with every backend mounted (ram, passthrough twice, tar,
ext2, overlay, a per-connection ram, null, zero, inline), fuzzes it, then prints
frames sent, connections, replies by type and errno, and the findings: server
log tracebacks grouped by their last frame, a server death, the RSS peak, and
what a fresh client could not do afterwards.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hostile.fuzz_findings import fsck_image, log_findings, probe_server
from tests.hostile.fuzzer import FuzzPlan, FuzzStats, build_fixtures, run_fuzz
from tests.hostile.serverproc import ServerProcess, serve_process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=4_000)
    parser.add_argument("--parallel", type=int, default=32, help="connections open at once")
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    parser.add_argument("--bursts", type=int, default=2)
    parser.add_argument("--burst-reads", type=int, default=512)
    parser.add_argument("--holds", type=int, default=64)
    parser.add_argument("--replay", type=int, help="run only this connection's script")
    parser.add_argument("--chunks", type=int, default=10,
                        help="split the run to sample RSS and the log between chunks")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--server-tree", type=Path,
                        help="serve the ninep of another tree (e.g. an older commit's "
                             "`git archive`), to see what the fuzzer finds there")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ninep-fuzz-") as tmp_name:
        tmp = Path(tmp_name)
        config = build_fixtures(tmp)
        env = {"PYTHONPATH": str(args.server_tree.resolve())} if args.server_tree else None
        with serve_process(["--config", str(config)], tmp, env=env,
                           log_level=args.log_level) as server:
            baseline = server.rss_kib()
            started = time.monotonic()
            stats, rss_peak = _run(args, server)
            elapsed = time.monotonic() - started
            alive = server.alive()
            problems = probe_server(server.address) if alive else ["the server is dead"]
            hwm = server.status("VmHWM") if alive else 0
            fds = server.open_fds() if alive else 0
            text = server.log_text()
            exit_note = "" if alive else f" (exit status {server.proc.poll()})"
        fsck = fsck_image(tmp / "ext2.img")  # the server has stopped: written back, marked clean
        if fsck:
            problems.append("the ext2 image after a clean stop: " + fsck)
    _report(args, stats, elapsed, baseline, max(rss_peak, hwm), fds, alive, exit_note,
            problems, text)
    return 0 if alive and not problems else 1


def _run(args: argparse.Namespace, server: ServerProcess) -> tuple[FuzzStats, int]:
    """The run in chunks of connections (each its own plan slice), sampling RSS between."""
    total = FuzzStats()
    rss_peak = 0
    chunks = 1 if args.replay is not None else max(1, args.chunks)
    deadline = time.monotonic() + args.seconds
    for chunk in range(chunks):
        left = deadline - time.monotonic()
        if left <= 0 or not server.alive():
            total.stopped_by = "time" if left <= 0 else "server death"
            break
        plan = FuzzPlan(seed=args.seed * 1000 + chunk, frames=args.frames // chunks,
                        connections=args.connections // chunks, parallel=args.parallel,
                        seconds=left, bursts=args.bursts if chunk == 0 else 0,
                        burst_reads=args.burst_reads, holds=args.holds if chunk == 0 else 0,
                        replay=args.replay)
        if args.replay is not None:
            plan = FuzzPlan(seed=args.seed, frames=args.frames, connections=args.connections,
                            parallel=1, seconds=left, bursts=args.bursts, holds=0,
                            burst_reads=args.burst_reads, replay=args.replay)
        stats = run_fuzz(plan, server.address)
        _merge(total, stats)
        if server.alive():
            rss_peak = max(rss_peak, server.status("VmHWM"))
        print(f"chunk {chunk + 1}/{chunks}: {total.frames_sent} frames, "
              f"{total.connections} connections, VmHWM {rss_peak // 1024} MiB", flush=True)
    return total, rss_peak


def _merge(total: FuzzStats, stats: FuzzStats) -> None:
    for name in ("frames_sent", "connections", "connect_failures", "closed_by_server",
                 "unanswered", "stalled_writes", "undecodable_replies"):
        setattr(total, name, getattr(total, name) + getattr(stats, name))
    for name in ("sent", "replies", "mutations", "scenarios", "unanswered_by"):
        getattr(total, name).update(getattr(stats, name))
    total.replay_of_port.update(stats.replay_of_port)
    total.eio_examples.extend(stats.eio_examples)
    total.unanswered_examples.extend(stats.unanswered_examples)
    if stats.stopped_by != "budget":
        total.stopped_by = stats.stopped_by


def _report(args: argparse.Namespace, stats: FuzzStats, elapsed: float, baseline: int,
            peak: int, fds: int, alive: bool, exit_note: str, problems: list[str],
            text: str) -> None:
    print(f"\nseed {args.seed}: {stats.frames_sent} frames over {stats.connections} connections "
          f"in {elapsed:.0f} s ({stats.frames_sent / max(elapsed, 1e-9):.0f} frames/s), "
          f"stopped by {stats.stopped_by}")
    print(f"scenarios: {dict(stats.scenarios)}")
    print(f"mutated frames: {dict(stats.mutations)}")
    print(f"connect failures {stats.connect_failures}, closed by the server "
          f"{stats.closed_by_server}, unanswered requests {stats.unanswered} "
          f"{dict(stats.unanswered_by.most_common(6))}, stalled writes "
          f"{stats.stalled_writes}, undecodable replies {stats.undecodable_replies}")
    print("sent:", ", ".join(f"{k} {v}" for k, v in stats.sent.most_common()))
    print("replies:", ", ".join(f"{k} {v}" for k, v in stats.replies.most_common()))
    print(f"server: {'alive' if alive else 'DEAD' + exit_note}, RSS {baseline // 1024} MiB "
          f"at start, peak (VmHWM) {peak // 1024} MiB, {fds} descriptors at the end")
    warnings = Counter(_headline(line) for line in text.splitlines() if " WARNING " in line)
    print(f"\nWARNING lines in the server log: {sum(warnings.values())}; the commonest:")
    for headline, count in warnings.most_common(12):
        print(f" - {count} x {headline}")
    findings = log_findings(text)
    print(f"\nfindings in the server log: {len(findings)} groups")
    for finding in findings:
        print(" -", finding.describe(stats))
    for example in stats.eio_examples:
        print(" - answered EIO:", example)
    for example in stats.unanswered_examples[:20]:
        print(" - no reply:", example)
    for problem in problems:
        print(" - a fresh client afterwards:", problem)


def _headline(line: str) -> str:
    """A log line without its time, peer, numbers and long client strings."""
    message = line.split(" WARNING ", 1)[1]
    message = re.sub(r"\S*127\.0\.0\.1:\d+\S*", "PEER", message)
    return re.sub(r"'[^']{24,}'", "'...'", re.sub(r"\d+", "N", message))[:150]


if __name__ == "__main__":
    sys.exit(main())
