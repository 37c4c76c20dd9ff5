"""How fast the desk answers with 10,000 stories stored (issue 18: a page under 100 ms).

Fills a fresh SQLite state (or, with --pg URL, a PostgreSQL database) through the store's
own write method (record_poll): N stories over 8 topics and 30 days, each with 1-4 outlets
in two languages and one alert per channel (a few failed), plus the entries table; then
serves the desk on 127.0.0.1 and times each page with a real HTTP client, after a warm-up.

    .venv/bin/python benchmarks/desk_speed.py                  # 10,000 stories, SQLite
    .venv/bin/python benchmarks/desk_speed.py --stories 50000  # more
    .venv/bin/python benchmarks/desk_speed.py --pg postgresql://watcher@127.0.0.1:5432/x

Prints, per page, the median and the 95th percentile of --repeat requests (whole request:
queries, rendering, HTTP on loopback), and writes benchmarks/out/desk_speed.json.
Not a test: timings depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from watcher.config import load_config
from watcher.desk import Desk
from watcher.model import (
    Entry,
    FeedState,
    Hit,
    NewAlert,
    NewStory,
    PollRecord,
    StoryMember,
)
from watcher.store import Store, open_store

OUT = Path(__file__).resolve().parent / "out"
TOPICS = [f"topic-{i}" for i in range(8)]
FEEDS = [f"http://127.0.0.1:9/feed-{i}.xml" for i in range(40)]
CHANNELS = ["hook", "log"]
BATCH = 200  # stories per recorded poll
# a topic's newest stories without scanning the others' (proposed for the store's schema)
TOPIC_INDEX = "CREATE INDEX IF NOT EXISTS stories_by_topic ON stories (topic, opened_at, id)"
PAGES = ["/", "/?topic=topic-3", "/stories/{story}", "/alerts", "/alerts?status=failed",
         "/feeds", "/api/stories?limit=100", "/api/stories?topic=topic-5&since=7d",
         "/api/alerts?limit=200", "/topics/topic-2.atom", "/topics/topic-2.json",
         "/playground"]


def config_text() -> str:
    feeds = "".join(f'[[feeds]]\nurl = "{u}"\nname = "Outlet {i}"\n\n'
                    for i, u in enumerate(FEEDS))
    topics = "".join(f'[[topics]]\nname = "{t}"\nany = ["word{i} phrase"]\n'
                     f'channels = ["hook", "log"]\n\n' for i, t in enumerate(TOPICS))
    return textwrap.dedent("""\
        [watcher]
        keep_entries = "14d"

        [[channels]]
        name = "hook"
        type = "webhook"
        url = "http://127.0.0.1:9/hook"

        [[channels]]
        name = "log"
        type = "file"
        path = "alerts.jsonl"

        """) + feeds + topics


def make_entry(rng: random.Random, n: int, k: int) -> Entry:
    feed = FEEDS[(n + k * 7) % len(FEEDS)]
    link = f"https://news.test/{n}/{k}"
    return Entry(key=f"{n}-{k}", guid=f"{n}-{k}", title=f"Story {n} as outlet {k} tells it",
                 link=link, canonical_link=link, summary="Lorem ipsum dolor sit amet " * 8,
                 published=None, feed_url=feed, feed_name=f"Outlet {FEEDS.index(feed)}",
                 language=rng.choice(["en", "uk", "ru", "de"]))


async def fill(store: Store, stories: int, now: datetime) -> list[str]:
    """`stories` stories through record_poll, BATCH per poll; returns their ids."""
    rng = random.Random(7)
    ids: list[str] = []
    hit = Hit("word phrase", "title", "Story", 0, 5, 91.0)
    for start in range(0, stories, BATCH):
        at = now - timedelta(days=30) * (1 - start / stories)
        record = PollRecord(feed=FeedState(url=FEEDS[0], last_poll_at=at, last_status=200))
        for n in range(start, min(stories, start + BATCH)):
            sid = f"story-{n:06d}"
            ids.append(sid)
            opened = at + timedelta(seconds=n - start)
            topic = TOPICS[n % len(TOPICS)]
            members = [make_entry(rng, n, k) for k in range(rng.randint(1, 4))]
            record.stories.append(NewStory(sid, topic, members[0].title, "", opened))
            record.seen.extend(members)
            record.members.extend(StoryMember(sid, m, opened + timedelta(minutes=i))
                                  for i, m in enumerate(members))
            record.alerts.extend(NewAlert(f"{sid}-{ch}", topic, ch, sid, members[0], 91.0,
                                          (hit,), opened) for ch in CHANNELS)
        await store.record_poll(record)
    failed = [f"{sid}-hook" for sid in ids[::97]]
    await store.mark_failed(failed, "HTTP 404 from the webhook")
    await store.mark_delivered([f"{sid}-log" for sid in ids], now)
    return ids


async def measure(url: str, story: str, repeat: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    async with aiohttp.ClientSession() as session:
        for page in PAGES:
            path = page.format(story=story)
            times: list[float] = []
            for i in range(repeat + 3):
                started = time.perf_counter()
                async with session.get(url + path) as r:
                    body = await r.read()
                    assert r.status == 200, (path, r.status, body[:200])
                if i >= 3:  # warm-up: templates compiled, pages cached by the database
                    times.append((time.perf_counter() - started) * 1000)
            times.sort()
            results[path] = {"median_ms": round(statistics.median(times), 1),
                             "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
                             "bytes": len(body)}
            print(f"{path:42} median {results[path]['median_ms']:6.1f} ms   "
                  f"p95 {results[path]['p95_ms']:6.1f} ms   {len(body) // 1024:4d} KB")
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stories", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--pg", default="", help="a postgresql:// URL (an empty database)")
    parser.add_argument("--index", action="store_true",
                        help=f"first create {TOPIC_INDEX} (in the schema since step 6: a no-op)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "watcher.toml"
        path.write_text(config_text())
        config = load_config(path)
        store = open_store(args.pg or str(Path(tmp) / "state.db"))
        await store.open()
        try:
            started = time.perf_counter()
            ids = await fill(store, args.stories, datetime.now(UTC))
            print(f"stored {len(ids)} stories in {time.perf_counter() - started:.1f} s "
                  f"({'PostgreSQL' if args.pg else 'SQLite'})")
            if args.index:
                await store.execute(TOPIC_INDEX)  # type: ignore[attr-defined]
                print(f"with {TOPIC_INDEX}")
            desk = Desk(config, store, address="127.0.0.1:0")
            await desk.start()
            try:
                results = await measure(desk.url, ids[len(ids) // 2], args.repeat)
            finally:
                await desk.close()
        finally:
            await store.close()
    OUT.mkdir(exist_ok=True)
    (OUT / "desk_speed.json").write_text(json.dumps(
        {"stories": args.stories, "backend": "postgresql" if args.pg else "sqlite",
         "pages": results}, indent=2))
    worst = max(r["p95_ms"] for r in results.values())
    print(f"slowest page p95: {worst:.1f} ms (target: under 100 ms)")


if __name__ == "__main__":
    asyncio.run(main())
