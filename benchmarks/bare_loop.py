"""The baseline: a bare asyncio + aiohttp + feedparser loop polling N local feeds.

    python benchmarks/bare_loop.py --n 1000 [--repeat 3]

What watcher is compared with. No scheduler, no store, no matching: one aiohttp session,
conditional GET with the ETag / Last-Modified of the last answer kept in a dict, and
feedparser in a ProcessPoolExecutor of 2 processes. Three rounds against nginx:

- cold:      the first poll; every feed is a 200 and is parsed;
- unchanged: a second poll; every feed answers 304;
- changed:   10% of feeds got 3 new entries (gen_feeds.py mutate, outside the timing);
             those are 200s and parsed, the rest 304.

Per round: wall time, CPU time of this process and its pool workers (the feed server is
excluded), their peak summed PSS and largest RSS, requests, 304s, entries parsed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import feedparser

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_feeds
from common import OUT_DIR, log, measure_tree, print_table, wait_for_idle
from feedserver import FeedServer, feed_server

# The project's stated bar, measured with 1000 feeds behind nginx (seconds, wall).
BAR = {"cold": 8.3, "unchanged": 0.36, "changed": 1.2}

EntryTuple = tuple[str, str, str, str, str]


def parse(body: bytes) -> list[EntryTuple]:
    """In a pool worker: feedparser, then the fields a poller would keep."""
    parsed = feedparser.parse(body)
    return [(e.get("id", ""), e.get("title", ""), e.get("link", ""), e.get("summary", ""),
             e.get("published", e.get("updated", ""))) for e in parsed.entries]


def _warm(_: int) -> int:
    return os.getpid()


@dataclass
class RoundStats:
    requests: int = 0
    ok: int = 0
    not_modified: int = 0
    errors: int = 0
    bytes: int = 0  # decoded body bytes handed to the parser
    entries: int = 0


class Poller:
    """Conditional GET of every URL, parse of every 200; validators kept in memory."""

    def __init__(self, session: aiohttp.ClientSession, pool: ProcessPoolExecutor,
                 concurrency: int) -> None:
        self.session = session
        self.pool = pool
        self.limit = asyncio.Semaphore(concurrency)
        self.validators: dict[str, tuple[str | None, str | None]] = {}

    async def poll_one(self, url: str, stats: RoundStats) -> None:
        etag, modified = self.validators.get(url, (None, None))
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        async with self.limit:
            stats.requests += 1
            try:
                async with self.session.get(url, headers=headers) as resp:
                    if resp.status == 304:
                        stats.not_modified += 1
                        return
                    if resp.status != 200:
                        stats.errors += 1
                        return
                    body = await resp.read()
                    self.validators[url] = (resp.headers.get("ETag"),
                                            resp.headers.get("Last-Modified"))
            except (aiohttp.ClientError, TimeoutError):
                stats.errors += 1
                return
            stats.ok += 1
            stats.bytes += len(body)
            # Parse inside the limit: a feed counts as in flight until parsed, so bodies
            # never pile up in memory waiting for the (slower) parse workers.
            entries = await asyncio.get_running_loop().run_in_executor(self.pool, parse, body)
            stats.entries += len(entries)

    async def poll_all(self, urls: list[str]) -> RoundStats:
        stats = RoundStats()
        await asyncio.gather(*(self.poll_one(u, stats) for u in urls))
        return stats


@dataclass
class RoundResult:
    round: str
    wall_s: float
    cpu_s: float
    peak_pss_mb: float
    max_rss_mb: float
    requests: int
    not_modified: int
    errors: int
    entries: int
    mb: float
    server_304: int  # from the feed server's access log, to cross-check
    server_cpu_s: float  # nginx, meanwhile
    others_cpu_s: float  # everything else on the machine, meanwhile (should be ~0)


async def run_rounds(urls: list[str], out: Path, srv: FeedServer, args: argparse.Namespace,
                     ) -> list[RoundResult]:
    """`args.repeat` times: cold, unchanged, changed (each repetition a new mutate round)."""
    results: list[RoundResult] = []
    server_pids = frozenset({srv.proc.pid}) if srv.proc else frozenset()
    client_timeout = aiohttp.ClientTimeout(total=30)
    with ProcessPoolExecutor(args.workers) as pool:
        # Start the workers before timing: a daemon starts its pool once, at startup.
        list(pool.map(_warm, range(args.workers * 4)))
        for rep in range(1, args.repeat + 1):
            # A new session and no validators: the cold round starts from nothing.
            connector = aiohttp.TCPConnector(limit=args.concurrency,
                                             limit_per_host=args.concurrency)
            async with aiohttp.ClientSession(connector=connector,
                                             timeout=client_timeout) as session:
                poller = Poller(session, pool, args.concurrency)
                for name in ("cold", "unchanged", "changed"):
                    if name == "changed":
                        subprocess.run([sys.executable, gen_feeds.__file__, "mutate",
                                        "--fraction", "0.1", "--entries", "3",
                                        "--round", str(rep), "--out", str(out)], check=True)
                    wait_for_idle(args.idle_wait)
                    mark, server_cpu0 = srv.log_mark(), srv.cpu_seconds()
                    with measure_tree(exclude=server_pids) as m:
                        stats = await asyncio.wait_for(poller.poll_all(urls), args.timeout)
                    server_cpu = srv.cpu_seconds() - server_cpu0
                    statuses = srv.statuses(mark)
                    results.append(RoundResult(
                        name, m.wall_s, m.cpu_s, m.peak_pss_mb, m.max_rss_mb, stats.requests,
                        stats.not_modified, stats.errors, stats.entries, stats.bytes / 1e6,
                        statuses.get(304, 0), server_cpu, max(0.0, m.rest_cpu_s - server_cpu)))
                    log(f"{name}: {m.wall_s:.2f} s wall, {m.cpu_s:.2f} s CPU, "
                        f"{stats.requests} requests, {stats.not_modified} 304s, "
                        f"{stats.entries} entries, others {results[-1].others_cpu_s:.2f} s CPU")
    return results


def medians(results: list[RoundResult]) -> list[RoundResult]:
    """Per round name, the repetition with the median wall time."""
    out = []
    for name in ("cold", "unchanged", "changed"):
        runs = sorted((r for r in results if r.round == name), key=lambda r: r.wall_s)
        out.append(runs[(len(runs) - 1) // 2])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="feeds (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, help="corpus folder (default benchmarks/out/n<N>)")
    ap.add_argument("--port", type=int, default=gen_feeds.FEED_PORT)
    ap.add_argument("--workers", type=int, default=2, help="parse processes")
    ap.add_argument("--hosts", type=int, default=1,
                    help="feeds spread over 127.0.0.1..<hosts> (nginx listens on each)")
    ap.add_argument("--concurrency", type=int, default=64,
                    help="feeds in flight, fetch and parse (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=600, help="per round, seconds")
    ap.add_argument("--aiohttp-server", action="store_true",
                    help="serve with the aiohttp fallback even if nginx is installed")
    ap.add_argument("--idle-wait", type=float, default=120,
                    help="seconds to wait for other processes to go quiet before a round")
    ap.add_argument("--repeat", type=int, default=1,
                    help="repetitions of the three rounds; the median is reported")
    ap.add_argument("--json", type=Path, help="also write the (median) results here")
    args = ap.parse_args()
    out: Path = args.out or OUT_DIR / f"n{args.n}"

    # A fresh corpus every run, so that round 1 of `mutate` applies. In a subprocess, so
    # that generating does not leave its memory in the process being measured.
    subprocess.run([sys.executable, gen_feeds.__file__, "generate", "--n", str(args.n),
                    "--seed", str(args.seed), "--port", str(args.port), "--out", str(out),
                    "--hosts", str(args.hosts)], check=True)
    corpus = gen_feeds.Corpus.load(out)
    urls = [corpus.feed_url(i) for i in range(corpus.n)]

    with feed_server(out, args.port, force_aiohttp=args.aiohttp_server, hosts=args.hosts) as srv:
        results = asyncio.run(run_rounds(urls, out, srv, args))
        server_name = srv.name

    results = medians(results)
    rows = [{**asdict(r), "bar_s": BAR[r.round] if args.n == 1000 else "-"} for r in results]
    print_table(rows, ["round", "wall_s", "bar_s", "cpu_s", "peak_pss_mb", "max_rss_mb",
                       "requests", "not_modified", "server_304", "errors", "entries", "mb",
                       "server_cpu_s", "others_cpu_s"],
                title=f"bare loop: {args.n} feeds, {server_name}, {args.workers} parse "
                      f"processes, {args.concurrency} in flight, {os.cpu_count()} CPUs"
                      + (f", median of {args.repeat}" if args.repeat > 1 else ""))
    print("bar_s: the project's stated bar for 1000 feeds behind nginx. cpu_s: this process "
          "+ parse workers. peak_pss_mb: their summed PSS; max_rss_mb: the largest RSS.\n"
          "others_cpu_s: CPU that other processes used during the round (not 0 = contended).")
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "server": server_name,
                                         "rounds": [asdict(r) for r in results]}, indent=1))


if __name__ == "__main__":
    main()
