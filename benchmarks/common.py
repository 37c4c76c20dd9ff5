"""Shared helpers for the benchmark scripts: CPU time, peak RSS, timing tables.

Linux only (reads /proc). Nothing here imports the watcher package.

Two kinds of measurement are offered:

- `TreeSampler`: a thread that samples a process tree (a pid and all its live
  descendants) every few milliseconds and records the peak *summed* RSS. This is the
  figure that matters for a daemon with worker processes: three 60 MB processes cost
  180 MB, not 60.
- `tree_cpu_seconds`: user + system CPU of a live process tree, including children it
  has already reaped, so that the delta over a round counts worker processes that are
  still alive (which `getrusage(RUSAGE_CHILDREN)` does not see until they are waited for).

For a subprocess that runs to completion, `run_measured` uses `os.wait4`, whose rusage is
exact: CPU of the child and of everything it reaped, and `ru_maxrss` of the largest of
those processes.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# --- process tree -----------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (all threads), via /proc/<pid>/task/<tid>/children."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def process_tree(pid: int) -> list[int]:
    """`pid` and all of its live descendants."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(_children(p))
    return tree


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss_mb(pid: int) -> float:
    """Current summed RSS of `pid` and its live descendants, in MB."""
    return sum(_rss_kb(p) for p in process_tree(pid)) / 1024


def _cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime of one process, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime..cstime are fields 14..17.
    return sum(int(f) for f in fields[11:15])


def tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds used so far by a live process tree (live and reaped descendants).

    A child counted directly while alive is counted in its parent's cutime once reaped,
    so deltas across a child's exit stay correct.
    """
    pid = os.getpid() if pid is None else pid
    return sum(_cpu_ticks(p) for p in process_tree(pid)) / _CLOCK_TICKS


class TreeSampler:
    """Samples the summed RSS of a process tree in a background thread; keeps the peak."""

    def __init__(self, pid: int | None = None, interval: float = 0.02) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.interval = interval
        self.peak_mb = 0.0
        self.processes = 0  # the most processes seen at once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            tree = process_tree(self.pid)
            self.processes = max(self.processes, len(tree))
            self.peak_mb = max(self.peak_mb, sum(_rss_kb(p) for p in tree) / 1024)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- measuring a block in this process ---------------------------------------------------


@dataclass
class Measurement:
    """What one measured block or subprocess cost."""

    wall_s: float = 0.0
    cpu_s: float = 0.0  # user + system, whole process tree
    peak_rss_mb: float = 0.0  # peak summed RSS of the tree (sampled)
    max_rss_mb: float = 0.0  # largest single process (kernel's ru_maxrss)
    extra: dict[str, float | int | str] = field(default_factory=dict)


def self_max_rss_mb() -> float:
    """Peak RSS of this process over its whole life (ru_maxrss is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def measure_tree(pid: int | None = None) -> Iterator[Measurement]:
    """Measure wall time, CPU delta and peak summed RSS of this process and its children."""
    m = Measurement()
    cpu0 = tree_cpu_seconds(pid)
    t0 = time.perf_counter()
    with TreeSampler(pid) as sampler:
        yield m
    m.wall_s = time.perf_counter() - t0
    m.cpu_s = tree_cpu_seconds(pid) - cpu0
    m.peak_rss_mb = sampler.peak_mb
    m.max_rss_mb = self_max_rss_mb()
    m.extra["processes"] = sampler.processes


# --- measuring a subprocess --------------------------------------------------------------


@dataclass
class ChildResult:
    returncode: int
    stdout: str
    stderr: str
    measurement: Measurement


def run_measured(cmd: Sequence[str], *, timeout: float, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> ChildResult:
    """Run `cmd` to completion; exact CPU and max RSS from wait4, summed peak RSS sampled.

    stdout/stderr go to temporary files (not pipes) so that a chatty child never blocks.
    """
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        deadline = t0 + timeout
        with TreeSampler(proc.pid) as sampler:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.005)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        out.seek(0)
        err.seek(0)
        m = Measurement(
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=sampler.peak_mb,
            max_rss_mb=usage.ru_maxrss / 1024,
            extra={"processes": sampler.processes},
        )
        return ChildResult(proc.returncode, out.read().decode(errors="replace"),
                           err.read().decode(errors="replace"), m)


# --- printing ----------------------------------------------------------------------------


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return str(value)


def print_table(rows: Sequence[dict[str, object]], columns: Sequence[str],
                title: str | None = None) -> None:
    """A plain fixed-width table (also valid Markdown)."""
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    if title:
        print(f"\n{title}")
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) + " |")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
