"""What the read-only commands print: `watcher test`, `watcher status`, and `watcher retry`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from watcher import schedule
from watcher.config import Config
from watcher.daemon import open_config_store
from watcher.dedupe import StoryIndex
from watcher.fetch import Fetcher
from watcher.model import Entry, Hit, Match
from watcher.parse import FeedParseError, parse_feed
from watcher.pipeline import Rules, short_hash, story_time
from watcher.store.base import FeedState, Store, digest_conflicts

_EPOCH = datetime.min.replace(tzinfo=UTC)
_EPOCH_1970 = datetime(1970, 1, 1, tzinfo=UTC)


def _as_url(source: str) -> str:
    if "://" in source:
        return source
    return Path(source).resolve().as_uri()


async def _load_entries(sources: list[str], config: Config,
                        err: TextIO) -> tuple[list[Entry], int]:
    """Entries of every source in the order a poll would see them; and how many sources failed."""
    fetcher = Fetcher(timeout=config.watcher.timeout.total_seconds(),
                      max_bytes=config.watcher.max_bytes)
    names = {f.url: f.name for f in config.feeds}
    entries: list[Entry] = []
    failed = 0
    try:
        for source in sources:
            url = _as_url(source)
            result = await fetcher.fetch(url)
            if not result.ok or result.body is None:
                print(f"watcher test: {source}: {result.error}", file=err)
                failed += 1
                continue
            try:
                parsed = parse_feed(result.body, url, names.get(url, ""), result.content_type)
            except FeedParseError as exc:
                print(f"watcher test: {source}: {exc}", file=err)
                failed += 1
                continue
            entries.extend(sorted(parsed.entries, key=lambda e: e.published or _EPOCH))
    finally:
        await fetcher.aclose()
    return entries, failed


async def test_sources(config: Config, sources: list[str], *, as_json: bool = False,
                       out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Match sources against the topics with no state and no alerts; print each match."""
    out, err = out or sys.stdout, err or sys.stderr
    entries, failed = await _load_entries(sources, config, err)
    rules = Rules(config)
    stories = StoryIndex(config.watcher.story_window)
    first_titles: dict[str, str] = {}
    count = 0
    for entry in entries:
        at = story_time(entry, datetime.now(UTC))
        for match in rules.matcher.match(entry):
            story = stories.find(match.topic, entry.title, entry.summary, at)
            duplicate = story is not None
            if story is None:
                story = short_hash("story", match.topic, entry.feed_url, entry.key, entry.title)
                stories.add(story, match.topic, entry.title, entry.summary, at)
                first_titles[story] = entry.title
            count += 1
            if as_json:
                out.write(json.dumps(_match_json(match, story, duplicate), ensure_ascii=False))
                out.write("\n")
            else:
                _print_match(match, duplicate, first_titles[story], out)
    if not as_json:
        print(f"{count} match(es) in {len(entries)} entries from {len(sources)} source(s)",
              file=out)
    return 1 if failed else 0


def _match_json(match: Match, story: str, duplicate: bool) -> dict[str, object]:
    e = match.entry
    return {
        "topic": match.topic, "title": e.title, "link": e.link,
        "published": e.published.strftime("%Y-%m-%dT%H:%M:%SZ") if e.published else None,
        "feed": e.feed_name, "score": round(match.score, 1), "matched": match.matched,
        "story": story, "duplicate": duplicate,
        "explanation": [{"phrase": h.phrase, "field": h.field, "text": h.text,
                         "score": round(h.score, 1)} for h in match.hits],
    }


def highlight(text: str, hits: list[Hit], tty: bool) -> str:
    """The text with each hit's words marked (bold on a terminal, [[...]] otherwise)."""
    spans = sorted({(h.start, h.end) for h in hits})
    on, off = ("\033[1;33m", "\033[0m") if tty else ("[[", "]]")
    out, pos = [], 0
    for start, end in spans:
        if start < pos:
            continue
        out += [text[pos:start], on, text[start:end], off]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _print_match(match: Match, duplicate: bool, first_title: str, out: TextIO) -> None:
    e = match.entry
    tty = out.isatty()
    title_hits = [h for h in match.hits if h.field == "title"]
    print(f"[{match.topic}] {match.score:5.1f}  {highlight(e.title, title_hits, tty)}", file=out)
    published = f"{e.published:%Y-%m-%d %H:%M} UTC" if e.published else "no date"
    print(f"    {e.feed_name} | {published} | {e.link or '(no link)'}", file=out)
    for hit in match.hits:
        print(f"    matched {hit.phrase!r} ~ {hit.field}: {hit.text!r} ({hit.score:.0f})",
              file=out)
    summary_hits = [h for h in match.hits if h.field == "summary"]
    if summary_hits:
        start = max(0, min(h.start for h in summary_hits) - 60)
        snippet = e.summary[start:start + 240]
        shifted = [Hit(h.phrase, h.field, h.text, h.start - start, h.end - start, h.score)
                   for h in summary_hits if h.end - start <= len(snippet)]
        print(f"    summary: …{highlight(snippet, shifted, tty)}…", file=out)
    if duplicate:
        print(f"    duplicate: same story as {first_title!r} (would not alert)", file=out)


# --- status ---

def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    if seconds < 0:
        return "in " + _span(-seconds)
    return _span(seconds) + " ago"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _next_poll(state: FeedState, config: Config, url: str) -> datetime | None:
    if state.disabled_reason:
        return None
    if state.next_poll_at:
        return state.next_poll_at
    feed = next((f for f in config.feeds if f.url == url), None)
    if feed is None or state.last_poll_at is None:
        return None
    return state.last_poll_at + schedule.base_interval(feed, config.watcher, state)


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(),
              file=out)


async def status(config: Config, out: TextIO | None = None) -> int:
    """Feeds, topics and channels as the state store sees them (works while the daemon runs)."""
    out = out or sys.stdout
    store = await open_config_store(config)
    try:
        now = datetime.now(UTC)
        states = await store.feed_states([f.url for f in config.feeds])
        feed_rows = [["FEED", "LAST POLL", "HTTP", "ENTRIES", "ERRORS", "NEXT POLL", "PROBLEM"]]
        for feed in config.feeds:
            st = states[feed.url]
            problem = st.disabled_reason or st.last_error or ""
            feed_rows.append([
                config.feed_label(feed)[:48], _ago(st.last_poll_at, now),
                str(st.last_status or "-"), str(st.entries_total), str(st.error_count),
                _ago(_next_poll(st, config, feed.url), now) if not st.disabled_reason
                else "disabled", problem[:70]])
        _table(feed_rows, out)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        today = await store.alerts_since(midnight)
        print(file=out)
        _table([["TOPIC", "ALERTS TODAY", "CHANNELS"]] + [
            [t.name, str(today.get(t.name, 0)), ", ".join(t.channels)] for t in config.topics],
            out)
        await _stories(store, now, out)
        counts = await store.channel_counts()
        print(file=out)
        names = [c.name for c in config.channels] + sorted(
            set(counts) - {c.name for c in config.channels})
        _table([["CHANNEL", "OWED", "FAILED", "DELIVERED"]] + [
            [name, str(counts[name].owed if name in counts else 0),
             str(counts[name].failed if name in counts else 0),
             str(counts[name].delivered if name in counts else 0)] for name in names], out)
        await _nodes_and_hosts(store, config, now, out)
        failed = await store.failed_alerts(10)
        if failed:
            print("\nfailed alerts (re-queue with `watcher retry`):", file=out)
            for f in failed:
                print(f"  {f.created_at:%Y-%m-%d %H:%M} {f.channel} [{f.topic}] "
                      f"{f.title[:60]!r}: {f.error}", file=out)
    finally:
        await store.close()
    return 0


async def _stories(store: Store, now: datetime, out: TextIO) -> None:
    """The newest stories, each with every outlet that carried it (one alert per topic)."""
    stories = await store.recent_stories(_EPOCH_1970, 10)
    if not stories:
        return
    print(file=out)
    _table([["LATEST STORIES", "TOPIC", "WHEN", "OUTLETS"]] + [
        [s.title[:60], s.topic, f"{s.opened_at:%Y-%m-%d %H:%M}",
         f"{len(s.outlets)}: {', '.join(s.outlets)}"[:80]] for s in stories], out)


async def _nodes_and_hosts(store: Store, config: Config, now: datetime, out: TextIO) -> None:
    """Nodes sharing the state (several only on PostgreSQL) and hosts under a Retry-After."""
    nodes = await store.nodes()
    if nodes:
        odd = {n.node for n in digest_conflicts(nodes, config.digest, now)}
        print(file=out)
        _table([["NODE", "HEARTBEAT", "FEEDS LEASED", "IN FLIGHT", "CONFIG"]] + [
            [n.node, _ago(n.heartbeat_at, now) + ("" if n.alive(now) else " (dead)"),
             str(n.leased), str(n.inflight if n.inflight is not None else "-"),
             n.config_digest[:12] + (" DIFFERS FROM THIS CONFIG" if n.node in odd else "")]
            for n in nodes], out)
    blocked = await store.blocked_hosts(now)
    if blocked:
        print("\nhosts asked us to wait (Retry-After):", file=out)
        for host, until in blocked.items():
            print(f"  {host} until {until:%Y-%m-%d %H:%M:%S} UTC", file=out)


async def retry(config: Config, channel: str | None, out: TextIO | None = None) -> int:
    """Put failed alerts back in the outbox; the daemon (or `watcher once`) delivers them."""
    out = out or sys.stdout
    store = await open_config_store(config)
    try:
        n = await store.requeue_failed(channel, datetime.now(UTC) - timedelta(seconds=1))
    finally:
        await store.close()
    print(f"re-queued {n} failed alert(s){f' for {channel}' if channel else ''}", file=out)
    return 0
