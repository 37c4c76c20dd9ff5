"""Scenario driver: `watcher once` against N local feeds, next to the bare-loop baseline.

    python benchmarks/poll_bench.py                  # N = 200 and 1000
    python benchmarks/poll_bench.py --n 1000         # one size
    python benchmarks/poll_bench.py --with-5000      # add N = 5000
    python benchmarks/poll_bench.py --bare-only      # baseline and parse figures only

For each N: a fresh corpus (gen_feeds.py generate), nginx serving it (feedserver.py), a
webhook receiver on 127.0.0.1 counting POSTs, and three scenarios, each one
`watcher once --config <out>/watcher.toml` in a subprocess against the same state file:

- cold:      first poll of every feed (state file deleted first). With first_poll =
             "mark-seen" the backlog is recorded, not alerted: expect 0 alerts;
- unchanged: second poll, nothing changed: expect N requests, N 304s, 0 alerts;
- changed:   10% of feeds got 3 new entries each (mutate, outside the timing): expect
             N requests, 0.9 N 304s, and alerts for the new entries that match a topic.

Per scenario: wall time; CPU of the child and everything it reaped (wait4 rusage); its
peak RSS (largest process, ru_maxrss) and the peak of its process tree's summed PSS
(sampled); requests and 304s from nginx's access log; webhook POSTs received; CPU used
meanwhile by nginx and by anything else on the machine (a contention check).

Also printed: feedparser's parse throughput (MB/s, one process) on the generated corpus
and on /work/shared/data/feeds/*.xml, and the bare loop's figures (bare_loop.py) for
the same N, so that the table compares like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import feedparser
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_feeds
from common import BENCH_DIR, OUT_DIR, REPO_DIR, log, print_table, run_measured, wait_for_idle
from feedserver import FeedServer, feed_server

Row = dict[str, Any]  # one line of a results table
SHARED_FEEDS = Path("/work/shared/data/feeds")
VENV_WATCHER = REPO_DIR / ".venv" / "bin" / "watcher"


# --- the command under test --------------------------------------------------------------


def watcher_command(override: str | None) -> list[str]:
    if override:
        return shlex.split(override)
    if VENV_WATCHER.exists():
        return [str(VENV_WATCHER)]
    return [sys.executable, "-m", "watcher"]


def check_watcher_once(cmd: list[str]) -> str | None:
    """None when `<cmd> once --help` works, else why not."""
    try:
        probe = subprocess.run([*cmd, "once", "--help"], capture_output=True, text=True,
                               timeout=60, cwd=REPO_DIR)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{shlex.join(cmd)} could not be run: {exc}"
    if probe.returncode != 0:
        tail = (probe.stderr or probe.stdout).strip().splitlines()[-3:]
        return (f"`{shlex.join([*cmd, 'once', '--help'])}` exited {probe.returncode}: "
                + " / ".join(tail))
    return None


# --- webhook receiver --------------------------------------------------------------------


class HookReceiver:
    """An aiohttp server in a thread: POST /hook -> 200, counted (by topic, by delivery)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.posts = 0
        self.topics: Counter[str] = Counter()
        self.deliveries: set[str] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="hook-receiver", daemon=True)
        self._error: BaseException | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            topic = str(json.loads(body).get("topic", "?"))
        except (ValueError, AttributeError):
            topic = "?"
        with self._lock:
            self.posts += 1
            self.topics[topic] += 1
            self.deliveries.add(request.headers.get("X-Watcher-Delivery", f"#{self.posts}"))
        return web.Response(text="ok")

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.posts, len(self.deliveries)

    def __enter__(self) -> HookReceiver:
        self._thread.start()
        self._ready.wait(10)
        if self._error:
            raise RuntimeError(f"webhook receiver on port {self.port}: {self._error}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


# --- parse throughput --------------------------------------------------------------------


def parse_throughput(files: list[Path], repeat: int = 1) -> Row:
    """feedparser.parse over the files' bytes (read beforehand), in this process."""
    blobs = [f.read_bytes() for f in files]
    size = sum(map(len, blobs)) * repeat
    entries = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        for blob in blobs:
            entries += len(feedparser.parse(blob).entries)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"corpus": "", "files": len(files) * repeat, "mb": size / 1e6, "entries": entries,
            "cpu_s": cpu, "mb_per_s": size / 1e6 / cpu, "entries_per_s": entries / cpu,
            "ms_per_feed": 1000 * cpu / (len(files) * repeat), "wall_s": wall}


# --- one size ----------------------------------------------------------------------------


def run_bare(n: int, args: argparse.Namespace) -> list[Row]:
    out_json = OUT_DIR / f"bare-n{n}.json"
    cmd = [sys.executable, str(BENCH_DIR / "bare_loop.py"), "--n", str(n), "--seed",
           str(args.seed), "--port", str(args.port), "--idle-wait", str(args.idle_wait),
           "--repeat", str(args.repeat), "--json", str(out_json)]
    log(f"bare loop, N = {n}: {shlex.join(cmd)}")
    subprocess.run(cmd, check=True, timeout=args.timeout * 3 * args.repeat)
    rounds: list[Row] = json.loads(out_json.read_text())["rounds"]
    return rounds


def run_watcher(n: int, args: argparse.Namespace, cmd: list[str]) -> list[Row]:
    out = OUT_DIR / f"n{n}"
    corpus = gen_feeds.generate(out, n, args.seed, args.port, args.hook_port,
                                gen_feeds.datetime.fromisoformat(gen_feeds.DEFAULT_ANCHOR),
                                args.first_poll, args.per_host)
    config = out / "watcher.toml"
    runs: list[Row] = []
    with feed_server(out, args.port) as srv, HookReceiver(args.hook_port) as hook:
        res = run_measured([*cmd, "check", "--config", str(config)], timeout=120, cwd=REPO_DIR)
        check_row = {"n": n, "scenario": "check (startup)", "rc": res.returncode,
                     "wall_s": res.measurement.wall_s, "cpu_s": res.measurement.cpu_s,
                     "max_rss_mb": res.measurement.max_rss_mb,
                     "tree_pss_mb": res.measurement.peak_pss_mb}
        for rep in range(1, args.repeat + 1):
            gen_feeds.clear_state(out)  # cold means no state at all
            for scenario in ("cold", "unchanged", "changed"):
                if scenario == "changed":
                    chosen = gen_feeds.mutate(corpus.out, args.fraction, args.entries, rep)
                    log(f"mutated {len(chosen)} feeds ({args.entries} new entries each)")
                runs.append(run_scenario(n, scenario, cmd, config, srv, hook, args))
    medians = []
    for scenario in ("cold", "unchanged", "changed"):
        same = sorted((r for r in runs if r["scenario"] == scenario),
                      key=lambda r: r["wall_s"])
        medians.append({**same[(len(same) - 1) // 2], "runs": len(same)})
    return [check_row, *medians]


def run_scenario(n: int, scenario: str, cmd: list[str], config: Path, srv: FeedServer,
                 hook: HookReceiver, args: argparse.Namespace) -> Row:
    wait_for_idle(args.idle_wait)
    mark, posts0, server_cpu0 = srv.log_mark(), hook.snapshot()[0], srv.cpu_seconds()
    full = [*cmd, "once", "--config", str(config)]
    log(f"N = {n}, {scenario}: {shlex.join(full)}")
    res = run_measured(full, timeout=args.timeout, cwd=REPO_DIR)
    time.sleep(0.2)  # let the last access-log lines and POSTs land
    m, statuses = res.measurement, srv.statuses(mark)
    server_cpu = srv.cpu_seconds() - server_cpu0
    if res.returncode != 0:
        log(f"`watcher once` exited {res.returncode}; stderr tail:\n"
            + "\n".join(res.stderr.strip().splitlines()[-15:]))
    row: Row = {
        "n": n, "scenario": scenario, "rc": res.returncode, "wall_s": m.wall_s,
        "cpu_s": m.cpu_s, "max_rss_mb": m.max_rss_mb, "tree_pss_mb": m.peak_pss_mb,
        "requests": sum(statuses.values()), "304s": statuses.get(304, 0),
        "other_status": sum(v for k, v in statuses.items() if k not in (200, 304)),
        "alerts": hook.snapshot()[0] - posts0, "server_cpu_s": server_cpu,
        "others_cpu_s": max(0.0, m.rest_cpu_s - server_cpu),
    }
    log(", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                  for k, v in row.items() if k not in ("n", "scenario")))
    return row


# --- main --------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[200, 1000], help="feed counts")
    ap.add_argument("--with-5000", action="store_true", help="also N = 5000")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--port", type=int, default=gen_feeds.FEED_PORT)
    ap.add_argument("--hook-port", type=int, default=gen_feeds.HOOK_PORT)
    ap.add_argument("--fraction", type=float, default=0.1, help="feeds changed (changed)")
    ap.add_argument("--entries", type=int, default=3, help="new entries per changed feed")
    ap.add_argument("--first-poll", choices=["mark-seen", "alert"], default="mark-seen")
    ap.add_argument("--per-host", type=int, default=64,
                    help="concurrency = per_host in the generated config (0: defaults)")
    ap.add_argument("--watcher-cmd", help="command for watcher (default: .venv/bin/watcher, "
                                          "else python -m watcher)")
    ap.add_argument("--timeout", type=float, default=900, help="per run, seconds")
    ap.add_argument("--bare-only", action="store_true",
                    help="skip watcher: parse throughput and bare loop only")
    ap.add_argument("--skip-bare", action="store_true",
                    help="skip the bare-loop baseline (show its last saved figures)")
    ap.add_argument("--parse-sample", type=int, default=200,
                    help="generated feeds to parse for the throughput figure")
    ap.add_argument("--repeat", type=int, default=1,
                    help="repetitions of the three scenarios (bare loop too); median shown")
    ap.add_argument("--idle-wait", type=float, default=120,
                    help="seconds to wait for other processes to go quiet before each run")
    ap.add_argument("--json", type=Path, default=OUT_DIR / "poll_bench.json")
    args = ap.parse_args()
    sizes = sorted(set(args.n + ([5000] if args.with_5000 else [])))

    cmd = watcher_command(args.watcher_cmd)
    if not args.bare_only and (why := check_watcher_once(cmd)):
        print(f"poll_bench: `watcher once` is not available yet.\n  {why}\n"
              "The driver runs `watcher once --config P` (one poll of every feed, match, "
              "dedupe, deliver, exit 0).\nRun with --bare-only for the baseline and "
              "parse figures, or --watcher-cmd to point at another build.", file=sys.stderr)
        sys.exit(2)

    # Parse throughput, single process.
    sample = OUT_DIR / "parse-sample"
    gen_feeds.generate(sample, args.parse_sample, args.seed, args.port, args.hook_port,
                       gen_feeds.datetime.fromisoformat(gen_feeds.DEFAULT_ANCHOR),
                       args.first_poll, args.per_host)
    wait_for_idle(args.idle_wait)
    parse_rows = [
        {**parse_throughput(sorted((sample / "feeds").glob("*.xml"))),
         "corpus": f"generated ({args.parse_sample} feeds)"},
        {**parse_throughput(sorted(SHARED_FEEDS.glob("*.xml")), repeat=5),
         "corpus": f"{SHARED_FEEDS} x5"},
    ]
    print_table(parse_rows, ["corpus", "files", "mb", "entries", "cpu_s", "mb_per_s",
                             "entries_per_s", "ms_per_feed"],
                title="feedparser parse throughput, one process (CPU time)")

    bare: dict[int, list[Row]] = {}
    watcher_rows: list[Row] = []
    for n in sizes:
        if not args.skip_bare:
            bare[n] = run_bare(n, args)
        elif (saved := OUT_DIR / f"bare-n{n}.json").exists():  # the last baseline run
            bare[n] = json.loads(saved.read_text())["rounds"]
            log(f"bare loop, N = {n}: figures of the last run, from {saved}")
        if not args.bare_only:
            watcher_rows += run_watcher(n, args, cmd)

    if bare:
        rows = [{"n": n, **r} for n, rounds in bare.items() for r in rounds]
        print_table(rows, ["n", "round", "wall_s", "cpu_s", "peak_pss_mb", "max_rss_mb",
                           "requests", "not_modified", "entries", "others_cpu_s"],
                    title="bare loop (asyncio + aiohttp + feedparser, 2 parse processes)")
    if watcher_rows:
        bare_wall = {(n, r["round"]): r["wall_s"] for n, rounds in bare.items() for r in rounds}
        for row in watcher_rows:  # the baseline's wall time next to watcher's
            row["bare_wall_s"] = bare_wall.get((row["n"], row["scenario"]), "-")
        print_table(watcher_rows, ["n", "scenario", "rc", "wall_s", "bare_wall_s", "cpu_s",
                                   "max_rss_mb", "tree_pss_mb", "requests", "304s",
                                   "other_status", "alerts", "server_cpu_s", "others_cpu_s"],
                    title="watcher once")
        print("cpu_s: the child and all it reaped (wait4). max_rss_mb: its largest process; "
              "tree_pss_mb: peak summed PSS of its tree (sampled every 25 ms).\n"
              "requests/304s: nginx access log. alerts: webhook POSTs received. "
              "others_cpu_s: CPU used by other processes meanwhile (not 0 = contended).")
    args.json.write_text(json.dumps({"parse": parse_rows, "bare": bare,
                                     "watcher": watcher_rows}, indent=1, default=str))
    log(f"results written to {args.json}")
    if any(r.get("rc") for r in watcher_rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
