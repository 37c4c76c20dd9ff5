"""What the read-only commands print: `watcher test`, `status`, `alerts`, and `retry`."""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from watcher import schedule
from watcher.config import Config, FeedSettings
from watcher.model import AlertRecord, Entry, FeedState, Hit, Match, fingerprint_conflicts
from watcher.redact import mask_text, mask_url
from watcher.store import open_config_store
from watcher.store.base import ReportStore

if TYPE_CHECKING:
    from watcher.matching.decide import Rules
    from watcher.matching.match import NearMiss
    from watcher.pipeline import Embedding

_EPOCH = datetime.min.replace(tzinfo=UTC)
_EPOCH_1970 = datetime(1970, 1, 1, tzinfo=UTC)


def _as_url(source: str) -> str:
    if "://" in source:
        return source
    return Path(source).resolve().as_uri()


async def _load_entries(sources: list[str], config: Config,
                        err: TextIO) -> tuple[list[Entry], int]:
    """Entries of every source in the order a poll would see them; and how many sources failed."""
    from watcher.reader.fetch import Fetcher  # `test` only: status and alerts need no HTTP
    from watcher.reader.parse import FeedParseError, parse_feed

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
                       near: float | None = None,
                       out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Match sources against the topics with no state and no alerts; print each match.

    The verdicts are the daemon's (the same StoryDecider): a source that is a configured
    feed is matched against the topics that watch it; any other source only against the
    topics not restricted to some feeds. `near`: also list the entries each topic missed by
    at most this many points, or dropped by a `none` phrase."""
    out, err = out or sys.stdout, err or sys.stderr
    misses: list[NearMiss] = []
    # the story engine and the model's wrapper load here, not for `status` or `alerts`
    from watcher.matching.decide import StoryDecider
    from watcher.pipeline import Embedding, build_rules, place_entries

    entries, failed = await _load_entries(sources, config, err)
    embedding = Embedding(config.watcher.embedding)
    try:
        decider = StoryDecider(await build_rules(config, embedding))
        rules = decider.rules
        _note_restricted(rules, entries, err)
        placements = await place_entries(decider, embedding, entries, datetime.now(UTC))
        if near is not None:
            misses = await _near_misses(rules, embedding, entries, near)
    finally:
        embedding.close()
    first_titles: dict[str, str] = {}
    count = 0
    for match, placed in placements:
        if placed.opened is not None:
            first_titles[placed.story_id] = match.entry.title
        count += 1
        if as_json:
            out.write(json.dumps(_match_json(match, placed.story_id, placed.duplicate),
                                 ensure_ascii=False))
            out.write("\n")
        else:
            _print_match(match, placed.duplicate, first_titles[placed.story_id], out)
    for miss in misses:
        if as_json:
            out.write(json.dumps(_near_json(miss), ensure_ascii=False))
            out.write("\n")
        else:
            _print_near(miss, out)
    if not as_json:
        print(f"{count} match(es) in {len(entries)} entries from {len(sources)} source(s)"
              + (f"; {len(misses)} near miss(es)" if near is not None else ""), file=out)
    return 1 if failed else 0


def _note_restricted(rules: Rules, entries: list[Entry], err: TextIO) -> None:
    """Say which topics a source was not matched against (they watch other feeds only)."""
    for url in dict.fromkeys(e.feed_url for e in entries):
        skipped = sorted(set(rules.topics) - rules.topics_for(rules.feed(url)))
        if skipped:
            print(f"watcher test: {mask_url(url)}: not tried against {', '.join(skipped)} "
                  f"(these topics watch other feeds only)", file=err)


def hit_kind(hit: Hit) -> str:
    """"phrase", "concept" or "catch-all" (the matcher is imported by `test` only)."""
    from watcher.matching.match import hit_kind as kind

    return kind(hit)


def similarity_of(score: float) -> float:
    """A concept hit's cosine similarity from its 0..100 score."""
    from watcher.matching.match import similarity_of as similarity

    return similarity(score)


def _hit_json(hit: Hit) -> dict[str, object]:
    """One explanation line: the alternative that matched, or the concept's nearest example
    and similarity, or the catch-all."""
    kind = hit_kind(hit)
    data: dict[str, object] = {"kind": kind, "phrase": hit.phrase, "field": hit.field,
                               "text": hit.text, "score": round(hit.score, 1)}
    if kind == "concept":
        data["similarity"] = round(similarity_of(hit.score), 3)
    return data


def _match_json(match: Match, story: str, duplicate: bool) -> dict[str, object]:
    e = match.entry
    return {
        "topic": match.topic, "title": e.title, "link": e.link,
        "published": e.published.strftime("%Y-%m-%dT%H:%M:%SZ") if e.published else None,
        "feed": e.feed_name, "score": round(match.score, 1), "matched": match.matched,
        "story": story, "duplicate": duplicate,
        "explanation": [_hit_json(h) for h in match.hits],
    }


def _near_json(miss: NearMiss) -> dict[str, object]:
    e = miss.entry
    return {
        "near_miss": True, "topic": miss.topic, "title": e.title, "link": e.link,
        "feed": e.feed_name, "reason": miss.reason, "score": round(miss.score, 1),
        "threshold": miss.threshold, "explanation": [_hit_json(h) for h in miss.hits],
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


def _explain(hit: Hit) -> str:
    """One line of why: the alternative and the words it matched, the concept's nearest
    example and similarity, or the catch-all."""
    kind = hit_kind(hit)
    if kind == "catch-all":
        return "matched every entry: catch-all (100)"
    if kind == "concept":
        return (f"close in meaning ({hit.score:.0f}, cosine {similarity_of(hit.score):.3f}),"
                f" nearest {one_line(hit.phrase)}")
    words = one_line(hit.text)
    return f"matched {one_line(hit.phrase)!r} ~ {hit.field}: {words!r} ({hit.score:.0f})"


def one_line(text: str) -> str:
    """Whitespace (newlines of multi-line phrases too) collapsed; at most 120 characters."""
    text = " ".join(text.split())
    return text if len(text) <= 120 else text[:119] + "…"


def _print_match(match: Match, duplicate: bool, first_title: str, out: TextIO) -> None:
    e = match.entry
    tty = out.isatty()
    phrase_hits = [h for h in match.hits if hit_kind(h) == "phrase"]
    title_hits = [h for h in phrase_hits if h.field == "title"]
    print(f"[{match.topic}] {match.score:5.1f}  {highlight(e.title, title_hits, tty)}", file=out)
    published = f"{e.published:%Y-%m-%d %H:%M} UTC" if e.published else "no date"
    print(f"    {e.feed_name} | {published} | {e.link or '(no link)'}", file=out)
    order = {"phrase": 0, "concept": 1, "catch-all": 2}
    ranked = sorted(match.hits, key=lambda hit: order[hit_kind(hit)])
    for line in dict.fromkeys(_explain(hit) for hit in ranked):
        print(f"    {line}", file=out)
    _print_summary(e, [h for h in phrase_hits if h.field == "summary"], tty, out)
    if duplicate:
        print(f"    duplicate: same story as {first_title!r} (would not alert)", file=out)


def _print_summary(e: Entry, summary_hits: list[Hit], tty: bool, out: TextIO) -> None:
    if summary_hits:
        start = max(0, min(h.start for h in summary_hits) - 60)
        snippet = e.summary[start:start + 240]
        shifted = [Hit(h.phrase, h.field, h.text, h.start - start, h.end - start, h.score)
                   for h in summary_hits if h.end - start <= len(snippet)]
        print(f"    summary: …{highlight(snippet, shifted, tty)}…", file=out)


def _print_near(miss: NearMiss, out: TextIO) -> None:
    e = miss.entry
    if miss.reason == "dropped by none":
        head = "dropped by none"
    else:
        # rounded down: 79.96 printed "80.0 < 80" would read as a bug
        head = f"{math.floor(miss.score * 10) / 10:.1f} < {miss.threshold:g}"
    print(f"[{miss.topic}] near miss, {head}:  {e.title or one_line(e.summary[:90])}", file=out)
    published = f"{e.published:%Y-%m-%d %H:%M} UTC" if e.published else "no date"
    print(f"    {e.feed_name} | {published} | {e.link or '(no link)'}", file=out)
    for hit in miss.hits:
        line = _explain(hit)
        if miss.reason == "dropped by none":
            line = line.replace("matched", "none phrase", 1)
        else:
            line = line.replace("matched", "closest", 1)
        print(f"    {line}", file=out)


async def _near_misses(rules: Rules, embedding: Embedding, entries: list[Entry],
                       margin: float) -> list[NearMiss]:
    """Entries each topic just missed (within `margin` points, or dropped by `none`)."""
    near = getattr(rules.matcher, "near", None)
    if near is None:  # pragma: no cover - a matcher without near misses
        return []
    misses: list[NearMiss] = []
    by_feed: dict[str, list[Entry]] = {}
    for entry in entries:
        by_feed.setdefault(entry.feed_url, []).append(entry)
    for url, group in by_feed.items():
        topics = rules.topics_for(rules.feed(url))
        if not topics:
            continue
        vectors = await embedding.embed(group) if rules.needs_vectors(topics) else {}
        for entry in group:
            misses += near(entry, topics, vectors.get(entry.id), margin)
    return misses


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


async def status(config: Config, out: TextIO | None = None, *, as_json: bool = False) -> int:
    """Daemon, feeds, topics and channels as the state store sees them (works while the
    daemon runs; never creates a state file). URLs and errors are masked."""
    out = out or sys.stdout
    store = await open_config_store(config, create=False)
    try:
        data = await status_data(store, config, datetime.now(UTC))
    finally:
        await store.close()
    if as_json:
        out.write(json.dumps(data, ensure_ascii=False, default=_json_default, indent=2) + "\n")
    else:
        _print_status(data, datetime.now(UTC), out)
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return _iso(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


async def status_data(store: ReportStore, config: Config, now: datetime) -> dict[str, Any]:
    """What `watcher status` shows, as plain data (datetimes stay datetimes)."""
    nodes = await store.nodes()
    running = [n for n in nodes if n.alive(now)]
    states = await store.feed_states([f.url for f in config.feeds])
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = await store.alerts_since(midnight)
    counts = await store.channel_counts()
    names = [c.name for c in config.channels] + sorted(
        set(counts) - {c.name for c in config.channels})
    odd = {n.node for n in fingerprint_conflicts(nodes, config.fingerprint, now)}
    return {
        "daemon": {"running": bool(running), "nodes": [
            {"node": n.node, "host": n.hostname, "pid": n.pid} for n in running]},
        "feeds": [_feed_data(feed, states[feed.url], config, now, bool(running))
                  for feed in config.feeds],
        "topics": [{"name": t.name, "alerts_today": today.get(t.name, 0),
                    "channels": list(t.channels)} for t in config.topics],
        "stories": [{"title": s.title, "topic": s.topic, "opened_at": s.opened_at,
                     "outlets": s.outlets}
                    for s in await store.recent_stories(_EPOCH_1970, 10)],
        "channels": [{"name": name, "owed": counts[name].owed if name in counts else 0,
                      "failed": counts[name].failed if name in counts else 0,
                      "delivered": counts[name].delivered if name in counts else 0}
                     for name in names],
        "nodes": [{"node": n.node, "heartbeat_at": n.heartbeat_at, "alive": n.alive(now),
                   "leased": n.leased, "inflight": n.inflight,
                   "config_digest": n.config_fingerprint, "config_differs": n.node in odd}
                  for n in nodes],
        "blocked_hosts": [{"host": host, "until": until}
                          for host, until in (await store.blocked_hosts(now)).items()],
        "failed_alerts": [{"created_at": f.created_at, "channel": f.channel, "topic": f.topic,
                           "title": f.title, "error": mask_text(f.error)}
                          for f in await store.failed_alerts(10)],
    }


def _feed_data(feed: FeedSettings, st: FeedState, config: Config, now: datetime,
               running: bool) -> dict[str, Any]:
    next_at = _next_poll(st, config, feed.url)
    if st.disabled_reason:
        when = "disabled"
    elif next_at is None:
        when = "-"
    elif next_at <= now:
        when = "due now" if running else "overdue"
    else:
        when = _ago(next_at, now)
    return {"name": feed.name or mask_url(feed.url), "url": mask_url(feed.url),
            "last_poll_at": st.last_poll_at, "http_status": st.last_status,
            "entries": st.entries_total, "errors": st.error_count, "next_poll_at": next_at,
            "next_poll": when, "disabled": st.disabled_reason or None,
            "problem": mask_text(st.disabled_reason or st.last_error or "") or None}


def _print_status(data: dict[str, Any], now: datetime, out: TextIO) -> None:
    running = data["daemon"]["nodes"]
    if running:
        print("daemon: running on " + ", ".join(
            f"host {n['host']} (pid {n['pid']})" if n["host"] and n["pid"] else n["node"]
            for n in running), file=out)
    else:
        print("no daemon running", file=out)
    print(file=out)
    _table([["FEED", "LAST POLL", "HTTP", "ENTRIES", "ERRORS", "NEXT POLL", "PROBLEM"]] + [
        [f["name"][:48], _ago(f["last_poll_at"], now), str(f["http_status"] or "-"),
         str(f["entries"]), str(f["errors"]), f["next_poll"], (f["problem"] or "")[:70]]
        for f in data["feeds"]], out)
    print(file=out)
    _table([["TOPIC", "ALERTS TODAY", "CHANNELS"]] + [
        [t["name"], str(t["alerts_today"]), ", ".join(t["channels"])] for t in data["topics"]],
        out)
    if data["stories"]:
        print(file=out)
        _table([["LATEST STORIES", "TOPIC", "WHEN", "OUTLETS"]] + [
            [s["title"][:60], s["topic"], f"{s['opened_at']:%Y-%m-%d %H:%M}",
             f"{len(s['outlets'])}: {', '.join(s['outlets'])}"[:80]] for s in data["stories"]],
            out)
    print(file=out)
    _table([["CHANNEL", "OWED", "FAILED", "DELIVERED"]] + [
        [c["name"], str(c["owed"]), str(c["failed"]), str(c["delivered"])]
        for c in data["channels"]], out)
    if data["nodes"]:
        print(file=out)
        _table([["NODE", "HEARTBEAT", "FEEDS LEASED", "IN FLIGHT", "CONFIG"]] + [
            [n["node"], _ago(n["heartbeat_at"], now) + ("" if n["alive"] else " (dead)"),
             str(n["leased"]), str(n["inflight"] if n["inflight"] is not None else "-"),
             n["config_digest"][:12] + (" DIFFERS FROM THIS CONFIG" if n["config_differs"]
                                        else "")] for n in data["nodes"]], out)
    if data["blocked_hosts"]:
        print("\nhosts asked us to wait (Retry-After):", file=out)
        for b in data["blocked_hosts"]:
            print(f"  {b['host']} until {b['until']:%Y-%m-%d %H:%M:%S} UTC", file=out)
    if data["failed_alerts"]:
        print("\nfailed alerts (re-queue with `watcher retry`):", file=out)
        for f in data["failed_alerts"]:
            print(f"  {f['created_at']:%Y-%m-%d %H:%M} {f['channel']} [{f['topic']}] "
                  f"{f['title'][:60]!r}: {f['error']}", file=out)


async def retry(config: Config, channel: str | None, out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    """Put failed alerts back in the outbox; the daemon (or `watcher once`) delivers them.
    An unknown channel (neither configured nor in the outbox) is a usage error (exit 2)."""
    out, err = out or sys.stdout, err or sys.stderr
    store = await open_config_store(config, create=False)
    try:
        if channel is not None:
            known = {c.name for c in config.channels} | set(await store.channel_counts())
            if channel not in known:
                print(f"watcher retry: no channel named {channel!r} (channels: "
                      f"{', '.join(sorted(known)) or 'none'})", file=err)
                return 2
        n = await store.requeue_failed(channel, datetime.now(UTC) - timedelta(seconds=1))
    finally:
        await store.close()
    print(f"re-queued {n} failed alert(s){f' for {channel}' if channel else ''}", file=out)
    return 0


# --- alerts ---

def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


def alert_json(a: AlertRecord) -> dict[str, object]:
    """One alert as `watcher alerts --json` prints it (error text masked)."""
    return {"id": a.id, "topic": a.topic, "channel": a.channel, "story": a.story,
            "title": a.title, "link": a.link, "feed": a.feed, "state": a.state,
            "attempts": a.attempts, "last_error": mask_text(a.last_error or "") or None,
            "created_at": _iso(a.created_at), "delivered_at": _iso(a.delivered_at)}


async def alerts(config: Config, *, topic: str | None = None, since: datetime | None = None,
                 state: str | None = None, limit: int = 500, as_json: bool = False,
                 out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Past alerts, newest first, with their delivery state; an unknown topic is exit 2."""
    out, err = out or sys.stdout, err or sys.stderr
    store = await open_config_store(config, create=False)
    try:
        records = await store.alert_history(topic=topic, since=since, status=state,
                                            limit=limit)
        if topic is not None and not records and topic not in {t.name for t in config.topics} \
                and not await store.alert_history(topic=topic, limit=1):
            print(f"watcher alerts: no topic named {topic!r} (topics: "
                  f"{', '.join(t.name for t in config.topics) or 'none'})", file=err)
            return 2
    finally:
        await store.close()
    if as_json:
        for record in records:
            out.write(json.dumps(alert_json(record), ensure_ascii=False) + "\n")
        return 0
    if not records:
        print("no alerts" + _filters(topic, since, state), file=out)
        return 0
    _table([["CREATED", "TOPIC", "CHANNEL", "STATE", "TRIES", "TITLE", "ERROR"]] + [
        [f"{a.created_at:%Y-%m-%d %H:%M}", a.topic, a.channel, a.state, str(a.attempts),
         a.title[:60], mask_text(a.last_error or "")[:70]] for a in records], out)
    if len(records) == limit:
        print(f"(the newest {limit}; --limit shows more)", file=out)
    return 0


def _filters(topic: str | None, since: datetime | None, state: str | None) -> str:
    parts = [f"topic {topic}" if topic else "", f"since {since:%Y-%m-%d %H:%M} UTC"
             if since else "", f"state {state}" if state else ""]
    return f" ({', '.join(p for p in parts if p)})" if any(parts) else ""
