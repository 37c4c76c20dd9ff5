"""Shared helpers for the benchmark scripts: CPU time, memory, timing tables.

Linux only (reads /proc). Nothing here imports the watcher package.

- `TreeSampler`: a thread that samples a process tree (a pid and all its live
  descendants) and records the peak of its summed PSS (proportional set size: pages
  shared between processes, as after fork, are split between them, so the sum is what
  the tree really costs) and the largest single RSS. For a daemon with worker processes
  the sum is the figure that matters: three 60 MB processes may cost 180 MB, not 60.
- `tree_cpu_seconds`: user + system CPU of a live process tree, including children it
  has already reaped, so that the delta over a round counts worker processes that are
  still alive (which `getrusage(RUSAGE_CHILDREN)` does not see until they are waited for).
- `run_measured`: a subprocess run to completion, measured with `os.wait4` (CPU of the
  child and everything it reaped, ru_maxrss of the largest of those processes), plus the
  helpers it leaves behind (re-parented to us as subreaper), plus a `TreeSampler`.
- `machine_busy_seconds` / `wait_for_idle`: how busy the rest of the machine is, since
  other jobs on a shared machine inflate every figure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
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


def process_tree(pid: int, exclude: frozenset[int] = frozenset()) -> list[int]:
    """`pid` and all of its live descendants, except `exclude` and theirs."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in exclude:
            continue
        tree.append(p)
        todo.extend(_children(p))
    return tree


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def _pss_kb(pid: int) -> int:
    """Proportional set size (falls back to RSS where smaps_rollup is missing)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return _rss_kb(pid)


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


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds of one process's own threads (utime + stime; not its children's)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def tree_cpu_seconds(pid: int | None = None, exclude: frozenset[int] = frozenset()) -> float:
    """CPU seconds used so far by a live process tree (live and reaped descendants).

    A child counted directly while alive is counted in its parent's cutime once reaped,
    so deltas across a child's exit stay correct.
    """
    pid = os.getpid() if pid is None else pid
    return sum(_cpu_ticks(p) for p in process_tree(pid, exclude)) / _CLOCK_TICKS


class TreeSampler:
    """Samples a process tree's memory in a background thread; keeps the peaks.

    `own_cpu_s` is the sampler thread's own CPU, to subtract when it runs inside the
    process being measured.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.025,
                 exclude: frozenset[int] = frozenset()) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.exclude = exclude
        self.interval = interval
        self.peak_pss_mb = 0.0  # the largest sum of PSS over the tree
        self.max_rss_mb = 0.0  # the largest RSS of a single process
        self.peak_tree_rss_mb = 0.0  # the largest sum of RSS over the tree (counts shared twice)
        self.processes = 0  # the most processes seen at once
        self.own_cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mem-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            tree = process_tree(self.pid, self.exclude)
            self.processes = max(self.processes, len(tree))
            self.peak_pss_mb = max(self.peak_pss_mb, sum(_pss_kb(p) for p in tree) / 1024)
            rss = [_rss_kb(p) / 1024 for p in tree]
            self.max_rss_mb = max(self.max_rss_mb, *rss)
            self.peak_tree_rss_mb = max(self.peak_tree_rss_mb, sum(rss))
            if self._stop.wait(self.interval):
                self.own_cpu_s = time.thread_time()
                return

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the rest of the machine -------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs have spent not idle since boot (from /proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / _CLOCK_TICKS  # guest time is already in user


def wait_for_idle(max_wait: float = 120.0, busy_below: float = 0.15) -> float:
    """Wait until the machine's other load is under `busy_below` CPUs; return that load.

    Benchmarks on a shared machine are only comparable when nothing else runs; this gives
    other jobs up to `max_wait` seconds to finish, then goes ahead anyway.
    """
    deadline = time.monotonic() + max_wait
    warned = False
    while True:
        own0, busy0, t0 = tree_cpu_seconds(), machine_busy_seconds(), time.monotonic()
        time.sleep(0.5)
        own = tree_cpu_seconds() - own0
        load = (machine_busy_seconds() - busy0 - own) / (time.monotonic() - t0)
        if load < busy_below or time.monotonic() > deadline:
            if load >= busy_below:
                log(f"WARNING: other processes keep {load:.1f} CPUs busy; figures will be "
                    "inflated")
            return load
        if not warned:
            log(f"waiting for the machine to be idle (others use {load:.1f} CPUs)")
            warned = True


# --- measuring a block in this process ---------------------------------------------------


@dataclass
class Measurement:
    """What one measured block or subprocess cost."""

    wall_s: float = 0.0
    cpu_s: float = 0.0  # user + system, whole process tree
    peak_pss_mb: float = 0.0  # peak summed PSS of the tree (sampled)
    max_rss_mb: float = 0.0  # largest single process (ru_maxrss, or sampled)
    rest_cpu_s: float = 0.0  # CPU used meanwhile by everything else (feed server, others)
    extra: dict[str, float | int | str] = field(default_factory=dict)


@contextmanager
def measure_tree(pid: int | None = None,
                 exclude: frozenset[int] = frozenset()) -> Iterator[Measurement]:
    """Wall time, CPU delta and peak summed PSS of a process tree (default: this one).

    `exclude` leaves out subtrees, e.g. a feed server that this process started.
    """
    m = Measurement()
    cpu0, busy0 = tree_cpu_seconds(pid, exclude), machine_busy_seconds()
    t0 = time.perf_counter()
    with TreeSampler(pid, exclude=exclude) as sampler:
        yield m
    m.wall_s = time.perf_counter() - t0
    m.cpu_s = tree_cpu_seconds(pid, exclude) - cpu0
    m.rest_cpu_s = machine_busy_seconds() - busy0 - m.cpu_s
    if sampler.pid == os.getpid():  # the sampler's reads of /proc are not the workload's
        m.cpu_s -= sampler.own_cpu_s
    m.peak_pss_mb = sampler.peak_pss_mb
    m.max_rss_mb = sampler.max_rss_mb
    m.extra["processes"] = sampler.processes


# --- measuring a subprocess --------------------------------------------------------------


@dataclass
class ChildResult:
    returncode: int
    stdout: str
    stderr: str
    measurement: Measurement


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux prctl).

    A child's helper processes that outlive it (a multiprocessing forkserver, say) are then
    re-parented to us instead of to init, so that we can wait for them and count their CPU.
    """
    import ctypes  # only the subprocess measurement needs it

    pr_set_child_subreaper = 36
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0


def _reap_orphans(known: set[int], timeout: float) -> tuple[float, int]:
    """Wait for re-parented descendants (not in `known`); kill those left after `timeout`.

    Returns their CPU seconds and largest ru_maxrss (KB).
    """
    cpu, maxrss = 0.0, 0
    deadline = time.monotonic() + timeout
    while orphans := [p for p in _children(os.getpid()) if p not in known]:
        for pid in orphans:
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                done, _, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if done:
                cpu += usage.ru_utime + usage.ru_stime
                maxrss = max(maxrss, usage.ru_maxrss)
        time.sleep(0.01)
    return cpu, maxrss


def run_measured(cmd: Sequence[str], *, timeout: float, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> ChildResult:
    """Run `cmd` to completion and measure it with its whole process tree.

    CPU and max RSS come from wait4 (the child and all it reaped); descendants that it left
    behind (re-parented to us, see `become_subreaper`) are waited for and added. The peak
    summed RSS of the tree is sampled. Wall time ends when the child exits.
    stdout/stderr go to temporary files (not pipes) so that a chatty child never blocks.
    """
    subreaper = become_subreaper()
    known = set(_children(os.getpid()))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0, busy0 = time.perf_counter(), machine_busy_seconds()
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
        orphan_cpu, orphan_rss = _reap_orphans(known, 10.0) if subreaper else (0.0, 0)
        cpu = usage.ru_utime + usage.ru_stime + orphan_cpu
        rest = machine_busy_seconds() - busy0 - cpu
        out.seek(0)
        err.seek(0)
        m = Measurement(
            wall_s=wall, cpu_s=cpu, peak_pss_mb=sampler.peak_pss_mb,
            max_rss_mb=max(usage.ru_maxrss, orphan_rss) / 1024, rest_cpu_s=rest,
            extra={"processes": sampler.processes, "orphan_cpu_s": orphan_cpu},
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
