"""The figures of bench/compare_diod.py: what each run measured, and the report.

Medians per server, ratios ours/diod (of medians, and the median of run-by-run
ratios), each of ours against the first (``--workers 1,2``: w2/w1), and the CPU
each diodload figure cost per operation in the server and in diodload
(bench/cpu_cost.py), with the ceiling that cost puts on more worker processes.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cpu_cost import Cost, ceiling


class MetricInfo(Protocol):
    """What the report needs of a figure (compare_diod.Metric)."""

    @property
    def key(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def ours_only(self) -> bool: ...


@dataclass(frozen=True)
class Measured:
    """A figure with the CPU it cost per operation (diodload runs)."""

    value: float
    cost: Cost


@dataclass
class Results:
    """Every figure taken, per metric and server, in run order."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    costs: dict[str, dict[str, list[Cost]]] = field(default_factory=dict)

    def add(self, key: str, server: str, value: float | Measured) -> float:
        if isinstance(value, Measured):
            self.costs.setdefault(key, {}).setdefault(server, []).append(value.cost)
            value = value.value
        self.values.setdefault(key, {}).setdefault(server, []).append(value)
        return value

    def median_cost(self, key: str, server: str) -> Cost | None:
        got = self.costs.get(key, {}).get(server)
        if not got:
            return None
        return Cost(statistics.median(c.server_us for c in got),
                    statistics.median(c.client_us for c in got))

    def fail(self, key: str, server: str, error: str) -> None:
        self.errors.setdefault(key, {})[server] = error

    def median(self, key: str, server: str) -> float | None:
        got = self.values.get(key, {}).get(server)
        return statistics.median(got) if got else None

    def ratio(self, key: str, ours: str = "ours", other: str = "diod") -> float | None:
        """Median ours/other over medians: the figure the table leads with."""
        mine, theirs = self.median(key, ours), self.median(key, other)
        return mine / theirs if mine is not None and theirs else None

    def paired_ratio(self, key: str, ours: str = "ours", other: str = "diod") -> float | None:
        """Median of run-by-run ratios: steadier when the machine's load drifts."""
        mine = self.values.get(key, {}).get(ours, [])
        theirs = self.values.get(key, {}).get(other, [])
        if not mine or len(mine) != len(theirs) or not all(theirs):
            return None
        return statistics.median(o / d for o, d in zip(mine, theirs, strict=True))



def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def cost_lines(table: Sequence[MetricInfo], results: Results, names: list[str],
               cpus: int) -> list[str]:
    """CPU microseconds per operation (server + diodload, medians) for each diodload
    figure and, with several of ours, the most that any number of worker processes
    could win over the first on these ``cpus`` CPUs (bench/cpu_cost.py)."""
    ours = [n for n in names if n != "diod"]
    lines = ["", f"CPU us per operation, server + diodload (medians; {cpus} CPUs)"
             + (f"; ceiling = what any number of workers could reach over {ours[0]} "
                "with the clients on the same CPUs" if len(ours) > 1 else "")]
    for metric in table:
        cells = []
        for name in names:
            cost = results.median_cost(metric.key, name)
            if cost is not None:
                cells.append(f"{name} {cost.server_us:.1f} + {cost.client_us:.1f}")
        first = results.median_cost(metric.key, ours[0]) if ours else None
        if cells and first is not None and len(ours) > 1:
            cells.append(f"ceiling {ceiling(first, cpus):.2f}")
        if cells:
            lines.append(f"  {metric.label:24} " + ", ".join(cells))
    return lines if len(lines) > 2 else []


def report(table: Sequence[MetricInfo], results: Results, header: list[str],
           names: list[str], cpus: int) -> str:
    """Medians per server, then ours/diod for each of ours (median ratio and paired),
    then each of ours against the first (``--workers 1,2``: w2/w1)."""
    ours = [n for n in names if n != "diod"]
    has_diod = "diod" in names
    columns = ["metric", "unit", *names]
    columns += [f"{n}/diod" for n in ours if has_diod]
    columns += [f"{n}/diod paired" for n in ours if has_diod]
    columns += [f"{n}/{ours[0]}" for n in ours[1:]]
    rows = []
    for metric in table:
        row = [metric.label, metric.unit]
        row += ["(n/a)" if metric.ours_only and n == "diod" else
                _fmt(results.median(metric.key, n)) for n in names]
        if has_diod:
            row += [_ratio(results.ratio(metric.key, n)) for n in ours]
            row += [_ratio(results.paired_ratio(metric.key, n)) for n in ours]
        row += [_ratio(results.ratio(metric.key, n, ours[0])) for n in ours[1:]]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [columns, *rows]) for i in range(len(columns))]
    lines = [*header, ""]
    for row in [columns, *rows]:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells))
    lines.append("")
    lines.append("runs: " + "; ".join(
        f"{m.label}: " + " | ".join(
            f"{n} " + " ".join(_fmt(v) for v in results.values.get(m.key, {}).get(n, []))
            for n in names if not (m.ours_only and n == "diod"))
        for m in table))
    lines += cost_lines(table, results, names, cpus)
    for metric in table:
        for name, error in results.errors.get(metric.key, {}).items():
            lines.append(f"! {metric.label} against {name} failed: "
                         + error.replace("\n", "\n    "))
    return "\n".join(lines)


def as_json(table: Sequence[MetricInfo], results: Results, config: dict[str, Any],
            names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"config": config, "metrics": {}}
    for metric in table:
        out["metrics"][metric.key] = {
            "label": metric.label, "unit": metric.unit,
            "runs": results.values.get(metric.key, {}),
            "median": {n: results.median(metric.key, n) for n in names},
            "ratio_over_diod": {n: results.ratio(metric.key, n) for n in names if n != "diod"},
            "paired_ratio_over_diod": {n: results.paired_ratio(metric.key, n)
                                       for n in names if n != "diod"},
            "errors": results.errors.get(metric.key, {}),
        }
    return out

