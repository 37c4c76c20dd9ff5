"""Several nodes on one PostgreSQL vs one node on SQLite: rounds over N local feeds (issue 9).

    python benchmarks/multinode_bench.py                 # N = 5000, 3 unchanged rounds
    python benchmarks/multinode_bench.py --n 1000 --rounds 2 --nodes 1 2

A corpus from gen_feeds.py is served by nginx (or the aiohttp fallback); a throwaway
PostgreSQL server (tests/pgserver.py, with its crash-safe defaults: fsync on) holds the
shared state. Each node is its own process running the real pipeline (fetcher, parser pool,
store) in the daemon's claim loop: claim a batch of due feeds with a lease, poll them,
claim again when half the window is free. A round starts with every feed due and ends when
every node finds nothing left to claim.

Configurations: SQLite x 1 node, PostgreSQL x 1, 2 and 3 nodes. Rounds: "cold" (first poll
of every feed: 200s, parse, backlog recorded) and "unchanged" (every feed answers 304).

Reported per round: wall time and rounds per second; store latency per poll (the time a
poll spends awaiting store calls, measured in the node: for PostgreSQL it includes the
network round trips and the pool); database server CPU per poll (PostgreSQL's processes;
for SQLite the work is inside the nodes); lease overhead (time in claim_due per feed
claimed, and claims per round); the nodes' CPU per poll. The target: one PostgreSQL node's
unchanged round within 1.5x of SQLite's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import sys
import time
from collections import Counter, defaultdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import gen_feeds
from common import OUT_DIR, log, print_table, tree_cpu_seconds, wait_for_idle
from feedserver import feed_server

LEASE = 300.0
Row = dict[str, Any]


class TimedStore:
    """Wraps a store; adds up the time spent awaiting each of its coroutine methods."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await attr(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.calls[name] += 1
        return timed

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


# --- one node (a child process) ----------------------------------------------------------


def node_main(index: int, location: str, config_path: str, pipe: Connection) -> None:
    asyncio.run(_node(index, location, config_path, pipe))


async def _node(index: int, location: str, config_path: str, pipe: Connection) -> None:
    from watcher.config import load_config
    from watcher.daemon import Runtime, parse_executor
    from watcher.store import open_store

    config = load_config(config_path)
    raw = open_store(location)
    await raw.open()
    store = TimedStore(raw)
    runtime = Runtime(config, store, workers=parse_executor(len(config.feeds)))  # type: ignore[arg-type]
    await runtime.pipeline.start()
    feeds = {f.url: f for f in config.feeds}
    node = f"bench-node-{index}"
    pipe.send("ready")
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, pipe.recv) == "round":
        store.reset()
        cpu0 = _cpu()
        started = time.perf_counter()
        polls, claims = await _round(runtime, store, feeds, node, config.watcher.concurrency)
        pipe.send({"node": index, "polls": polls, "claims": claims, "cpu_s": _cpu() - cpu0,
                   "wall_s": time.perf_counter() - started, "store_s": dict(store.seconds),
                   "calls": dict(store.calls)})
    await runtime.close()


async def _round(runtime: Any, store: TimedStore, feeds: dict[str, Any], node: str,
                 concurrency: int) -> tuple[int, int]:
    """The daemon's claim loop without its one-second tick: claim, poll, claim again."""
    from watcher.pipeline import utcnow

    inflight: set[asyncio.Task[Any]] = set()
    polls = claims = 0
    window = concurrency * 2
    while True:
        if len(inflight) <= window - concurrency:
            claimed = await store.claim_due(node, utcnow(), LEASE, window - len(inflight))
            claims += 1
            polls += len(claimed)
            for state in claimed:
                inflight.add(asyncio.create_task(runtime.poll(feeds[state.url], state)))
            if not claimed and not inflight:
                return polls, claims
            if not claimed:  # nothing left to claim: finish what is in flight
                await asyncio.wait(inflight)
                inflight.clear()
                continue
        _, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


# --- the driver ----------------------------------------------------------------------------


def make_all_due(location: str) -> None:
    """Every feed due now (outside the timing)."""
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute("UPDATE feeds SET next_poll_at = now(), lease_owner = NULL, "
                         "lease_until = NULL")
            conn.execute("VACUUM ANALYZE feeds")
    else:
        import sqlite3

        with sqlite3.connect(location) as db:
            db.execute("UPDATE feeds SET next_poll_at = ?, lease_owner = NULL, "
                       "lease_until = NULL", (time.time(),))


async def _sync(location: str, config_path: Path) -> None:
    from watcher.config import load_config
    from watcher.pipeline import utcnow
    from watcher.store import open_store

    store = open_store(location)
    await store.open()
    try:
        await store.sync_feeds([f.url for f in load_config(config_path).feeds], utcnow(), 0)
    finally:
        await store.close()


def run_config(backend: str, nodes: int, location: str, config: Path, rounds: int,
               pg_pid: int | None, idle_wait: float) -> list[Row]:
    asyncio.run(_sync(location, config))
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for i in range(nodes):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=node_main, args=(i, location, str(config), child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    for pipe in pipes:
        assert pipe.recv() == "ready"
    rows = []
    try:
        for rnd in range(rounds + 1):
            make_all_due(location)
            wait_for_idle(idle_wait)
            db_cpu0 = tree_cpu_seconds(pg_pid) if pg_pid else 0.0
            started = time.perf_counter()
            for pipe in pipes:
                pipe.send("round")
            reports = [pipe.recv() for pipe in pipes]
            wall = time.perf_counter() - started
            db_cpu = (tree_cpu_seconds(pg_pid) - db_cpu0) if pg_pid else 0.0
            rows.append(_row(backend, nodes, "cold" if rnd == 0 else "unchanged", wall,
                             reports, db_cpu))
            log(json.dumps(rows[-1]))
    finally:
        for pipe in pipes:
            pipe.send("stop")
        for proc in procs:
            proc.join(60)
    return rows


def _row(backend: str, nodes: int, scenario: str, wall: float, reports: list[Row],
         db_cpu: float) -> Row:
    polls = sum(r["polls"] for r in reports)
    store_s = sum(sum(r["store_s"].values()) for r in reports)
    claim_s = sum(r["store_s"].get("claim_due", 0.0) for r in reports)
    return {
        "backend": backend, "nodes": nodes, "round": scenario, "polls": polls,
        "wall_s": round(wall, 2), "rounds_per_s": round(1 / wall, 4),
        "polls_per_s": round(polls / wall, 1),
        "store_ms_per_poll": round(1000 * store_s / max(polls, 1), 3),
        "db_cpu_ms_per_poll": round(1000 * db_cpu / max(polls, 1), 3),
        "claim_ms_per_feed": round(1000 * claim_s / max(polls, 1), 3),
        "claims": sum(r["claims"] for r in reports),
        "node_cpu_ms_per_poll": round(1000 * sum(r["cpu_s"] for r in reports)
                                      / max(polls, 1), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3, help="unchanged rounds after the cold one")
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--port", type=int, default=8189, help="feed server port")
    ap.add_argument("--idle-wait", type=float, default=20.0)
    ap.add_argument("--json", type=Path, default=OUT_DIR / "multinode-bench.json")
    args = ap.parse_args()

    from pgserver import PgServer

    out = OUT_DIR / f"multinode-n{args.n}"
    gen_feeds.generate(out, args.n, args.seed, args.port, args.port + 1,
                       gen_feeds.datetime.fromisoformat(gen_feeds.DEFAULT_ANCHOR),
                       "mark-seen", 64)
    config = out / "watcher.toml"
    rows: list[Row] = []
    with feed_server(out, args.port, OUT_DIR / "nginx-multinode"), \
            PgServer(durable=True) as pg:
        gen_feeds.clear_state(out)
        rows += run_config("sqlite", 1, str(out / "watcher.db"), config, args.rounds, None,
                           args.idle_wait)
        for nodes in args.nodes:
            assert pg.proc is not None
            rows += run_config("postgresql", nodes, pg.create_database("bench"), config,
                               args.rounds, pg.proc.pid, args.idle_wait)
    summary = _summary(rows)
    columns = list(rows[0])
    print_table(rows, columns, title=f"N = {args.n}: every round")
    print_table(summary, list(summary[0]), title="median unchanged round")
    args.json.write_text(json.dumps({"n": args.n, "rows": rows, "summary": summary}, indent=1))
    log(f"results in {args.json}")


def _summary(rows: list[Row]) -> list[Row]:
    out = []
    sqlite_wall = None
    for key in dict.fromkeys((r["backend"], r["nodes"]) for r in rows):
        same = sorted((r for r in rows if (r["backend"], r["nodes"]) == key
                       and r["round"] == "unchanged"), key=lambda r: r["wall_s"])
        if not same:
            continue
        median = same[(len(same) - 1) // 2]
        sqlite_wall = sqlite_wall or median["wall_s"]
        out.append({**median, "vs_sqlite": round(median["wall_s"] / sqlite_wall, 2)})
    return out


if __name__ == "__main__":
    main()
