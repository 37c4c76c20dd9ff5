"""What `watcher test` prints: matches, their explanations and near misses (no state, no alerts).

What `status`, `alerts` and `retry` print is in watcher.report_status; this module
re-exports the names the CLI, the desk and the tests import from here.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from watcher.config import Config
from watcher.model import Entry, Hit, Match
from watcher.redact import mask_url
from watcher.report_status import _feed_data as _feed_data  # the desk's view of a feed
from watcher.report_status import alert_json, alerts, retry, status, status_data

if TYPE_CHECKING:
    from watcher.matching.decide import Rules
    from watcher.matching.match import NearMiss
    from watcher.pipeline import Embedding
    from watcher.reader.fetch import Fetcher
    from watcher.reader.parsepool import ParsePool

# What callers (the CLI, the desk) and tests import from here, wherever it is defined.
__all__ = ["alert_json", "alerts", "highlight", "hit_kind", "one_line", "retry",
           "similarity_of", "status", "status_data", "test_sources"]

_EPOCH = datetime.min.replace(tzinfo=UTC)


def _as_url(source: str) -> str:
    if "://" in source:
        return source
    return Path(source).resolve().as_uri()


async def _load_entries(sources: list[str], config: Config,
                        err: TextIO) -> tuple[list[Entry], int]:
    """Entries of every source in the order a poll would see them; and how many sources failed."""
    from watcher.reader.parse import FeedParseError, parse_feed
    from watcher.reader.result import FetchResult, read_local

    fetcher: Fetcher | None = None  # only for URLs: feed files need no HTTP client (aiohttp)
    # a fetched document is someone else's: parsed as the daemon parses it, in a worker
    # under its deadline and memory limit (a feed file on this machine is parsed here)
    pool: ParsePool | None = None
    names = {f.url: f.name for f in config.feeds}
    entries: list[Entry] = []
    failed = 0
    try:
        for source in sources:
            url = _as_url(source)
            result: FetchResult
            if url.startswith("file://"):
                result = await asyncio.to_thread(read_local, url, config.watcher.max_bytes)
            else:
                if fetcher is None:
                    from watcher.reader.fetch import Fetcher

                    fetcher = Fetcher(timeout=config.watcher.timeout.total_seconds(),
                                      max_bytes=config.watcher.max_bytes)
                result = await fetcher.fetch(url)
            if not result.ok or result.body is None:
                print(f"watcher test: {source}: {result.error}", file=err)
                failed += 1
                continue
            try:
                if url.startswith("file://"):
                    parsed = parse_feed(result.body, url, names.get(url, ""),
                                        result.content_type)
                else:
                    if pool is None:
                        from watcher.reader import parsepool

                        pool = parsepool.ParsePool(workers=1, deadline=parsepool.DEADLINE)
                    parsed = await asyncio.get_running_loop().run_in_executor(
                        pool, parse_feed, result.body, url, names.get(url, ""),
                        result.content_type)
            except FeedParseError as exc:
                print(f"watcher test: {source}: {exc}", file=err)
                failed += 1
                continue
            entries.extend(sorted(parsed.entries, key=lambda e: e.published or _EPOCH))
    finally:
        if fetcher is not None:
            await fetcher.aclose()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
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
