"""What the benchmarks share: peers timed in interleaved batches, medians, plain-text tables, the summary."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = [
    "BatchFn",
    "Peer",
    "Summary",
    "finish",
    "gc_paused",
    "median_with_interval",
    "pin_apart",
    "run_interleaved",
    "section",
    "start",
    "table",
    "verdict",
]

BatchFn = Callable[[int], None]
"""Runs the measured operation ``n`` times."""


@dataclass
class Peer:
    """One side of a comparison: the batch function, its batch size, and what to do between batches (untimed)."""

    name: str
    batch: BatchFn
    n: int
    reset: Callable[[], None] | None = None
    per_call_ns: list[float] = field(default_factory=list)

    @property
    def median_us(self) -> float:
        return statistics.median(self.per_call_ns) / 1000

    @property
    def min_us(self) -> float:
        return min(self.per_call_ns) / 1000

    @property
    def max_us(self) -> float:
        return max(self.per_call_ns) / 1000


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collect, then keep the cyclic gc off for the duration."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run_interleaved(peers: list[Peer], batches: int) -> None:
    """Time ``batches`` batches of every peer, interleaved in a rotating order; fills ``peer.per_call_ns``."""
    for peer in peers:  # warm-up: caches, lazy imports, resolved models
        if peer.reset is not None:
            peer.reset()
        peer.batch(max(1, peer.n // 10))
    for number in range(batches):
        shift = number % len(peers)
        for peer in peers[shift:] + peers[:shift]:
            if peer.reset is not None:
                peer.reset()
            with gc_paused():
                start = time.perf_counter_ns()
                peer.batch(peer.n)
                elapsed = time.perf_counter_ns() - start
            peer.per_call_ns.append(elapsed / peer.n)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if index == 0 else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), "  ".join("-" * width for width in widths), *(line(row) for row in rows)])


def section(title: str) -> None:
    print()
    print("=" * len(title))
    print(title)
    print("=" * len(title))


@dataclass
class Summary:
    """The targets' outcomes, for the final block."""

    rows: list[list[str]] = field(default_factory=list)

    def add(self, target: str, measured: str, ok: bool) -> None:
        self.rows.append([target, measured, verdict(ok)])


def start(doc: str | None, argv: list[str] | None, versions: str, quick_help: str) -> bool:
    """Parse ``--quick``, print the versions line and a warning when the machine is busy; return whether quick."""
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    quick: bool = parser.parse_args(argv).quick
    print(f"{versions}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, mode={'quick' if quick else 'full'}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5:
        print(f"warning: 1-minute load average is {load:.2f} before starting: other processes compete for the CPU")
    return quick


def finish(summary: Summary, started: float) -> None:
    """Print the summary of every target, the total time since ``started`` and the load average at the end."""
    import os

    section("Summary")
    print(table(["target", "measured", "result"], summary.rows))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(
        f"\ntotal benchmark time: {time.perf_counter() - started:.0f} s; 1-minute load average at the end: {load:.2f}"
    )


def pin_apart(server_pid: int) -> bool:
    """Pin this process to one CPU and a server process to another, so neither preempts the other mid-call (the
    main source of noise on a small machine); a no-op where CPU affinity is not available."""
    import os

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return False
    os.sched_setaffinity(server_pid, {cpus[1]})
    os.sched_setaffinity(0, {cpus[0]})
    return True


def median_with_interval(values: list[int]) -> tuple[float, float, float]:
    """The median of paired differences (ns) and a distribution-free 95 % confidence interval for it (order
    statistics of the sorted values), in microseconds."""
    ordered = sorted(values)
    n = len(ordered)
    half_width = 1.96 * n**0.5 / 2
    low = ordered[max(0, int(n / 2 - half_width))]
    high = ordered[min(n - 1, int(n / 2 + half_width))]
    return statistics.median(ordered) / 1000, low / 1000, high / 1000
