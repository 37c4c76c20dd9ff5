"""The rule playground (pure, blocking CPU work: run it off the event loop).

A pasted topic is validated by watcher.config's own checks and evaluated with the daemon's
Matcher (`match` for what it would catch, `near` for what it just missed) against the
entries the store kept (`[watcher] keep_entries`). Nothing is written: the user copies the
TOML into their config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli
import tomli_w

from watcher.config import Config, ConfigError, FeedSettings, TopicSettings
from watcher.config.checks import _cross_check
from watcher.config.tables import _collect, _Collected, _read_toml
from watcher.desk.model import RecentEntry
from watcher.matching.match import ConceptUnavailable, Matcher, NearMiss
from watcher.model import Entry, Hit

SOURCE = Path("playground")  # how problems name the pasted text
MAX_CHARS = 64 * 1024
MAX_ENTRIES = 20_000  # entries one try looks at (the newest)
NEAR_MARGIN = 15.0  # points under a threshold that still count as a near miss
SHOWN = 100  # matches and near misses listed
MAX_PHRASES = 100  # phrases and examples of one tried topic (each costs every entry a pass)
TIME_BUDGET = 10.0  # seconds one try may take; then it stops and says how far it got
SNIPPET = 240
Segments = list[tuple[str, bool]]  # text pieces, marked or not


@dataclass(frozen=True, slots=True)
class Shown:
    """A match or near miss as the page lists it."""

    title: Segments
    summary: Segments
    link: str | None
    feed: str
    language: str | None
    seen_at: datetime
    score: float
    hits: tuple[Hit, ...]
    reason: str = ""  # near misses: "below threshold" / "dropped by none"
    threshold: float = 0.0


@dataclass
class Result:
    toml: str  # the topic as it validated, to copy into the config
    entries: int = 0  # entries tried (of the topic's feeds)
    matches: list[Shown] = field(default_factory=list)  # the first SHOWN
    match_count: int = 0
    near: list[Shown] = field(default_factory=list)
    notice: str = ""


def parse_topic(text: str, config: Config) -> tuple[TopicSettings | None, dict[str, Any],
                                                     list[str]]:
    """The topic in `text` ([[topics]] table, or its keys alone), checked as watcher.config
    checks a topic (names of channels and feeds against `config`); problems name the key."""
    if len(text) > MAX_CHARS:
        return None, {}, [f"{SOURCE}: the topic is over {MAX_CHARS // 1024} KB"]
    try:
        data = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        return None, {}, [f"{SOURCE}: not valid TOML: {exc}"]
    except RecursionError:
        return None, {}, [f"{SOURCE}: the TOML is nested too deeply"]
    if "topics" in data:
        tables = data.pop("topics")
        if data or not isinstance(tables, list) or len(tables) != 1:
            return None, {}, [f"{SOURCE}: expected one [[topics]] table and nothing else"]
        raw = tables[0]
    else:
        raw = data
    if not isinstance(raw, dict):
        return None, {}, [f"{SOURCE}: expected a [[topics]] table"]
    raw = {"name": "playground", **raw}
    problems: list[str] = []
    collected = _Collected()
    try:
        _collect(SOURCE, {"topics": [raw]}, collected, problems, {"topics"})
        collected.raw["channels"] = [(config.path, i, {"name": c.name})
                                     for i, c in enumerate(config.channels)]
        collected.raw["feeds"] = [(config.path, i, {"name": f.name, "tags": list(f.tags)})
                                  for i, f in enumerate(config.feeds)]
        _cross_check(collected, problems)
    except RecursionError:  # a query nested thousands of parentheses deep
        return None, raw, [f"{SOURCE}: the topic is nested too deeply"]
    if problems or not collected.topics:
        return None, raw, problems
    topic = collected.topics[0][2]
    count = sum(len(phrases) for phrases in (topic.any, topic.all, topic.none, topic.like,
                                             topic.unlike))
    if count > MAX_PHRASES:
        return None, raw, [f"{SOURCE}: the playground tries topics of up to {MAX_PHRASES} "
                           f"phrases and examples (this one has {count})"]
    return topic, raw, []


def topic_toml(raw: dict[str, Any]) -> str:
    return tomli_w.dumps({"topics": [raw]})


def configured_toml(config: Config, name: str) -> str | None:
    """A configured topic's table as TOML (read from the config's files), or None."""
    for path in config.files:
        try:
            data, _ = _read_toml(path)
        except ConfigError:
            continue
        for raw in data.get("topics", []):
            if isinstance(raw, dict) and raw.get("name") == name:
                return topic_toml(raw)
    return None


def default_days(config: Config) -> int:
    return max(1, math.ceil(config.watcher.keep_entries.total_seconds() / 86400))


def watches(topic: TopicSettings, feed: FeedSettings) -> bool:
    """Whether the topic looks at this feed (as Rules.topics_for: by name or tag)."""
    return not topic.feeds or bool(({feed.name, *feed.tags} - {""}) & set(topic.feeds))


def build_matcher(topic: TopicSettings, embedder: Any = None) -> tuple[Matcher, str]:
    """The daemon's Matcher for this one topic; keywords only (and why) without a model."""
    try:
        return Matcher([topic.rule()], embedder), ""
    except ConceptUnavailable as exc:
        return Matcher.keywords_only([topic.rule()]), str(exc)


def evaluate(topic: TopicSettings, raw: dict[str, Any], config: Config,
             entries: Sequence[RecentEntry], embedder: Any = None) -> Result:
    """What the topic matches among `entries` (newest first), and what it just missed.

    A topic by meaning compares the entries' stored embeddings; an entry stored without
    one (seen while no model was loaded) is matched on the topic's keywords alone rather
    than embedded here, so a try stays quick."""
    matcher, notice = build_matcher(topic, embedder)
    conceptual = bool(topic.about or topic.like) and not notice
    keywords = Matcher.keywords_only([topic.rule()]) if conceptual else matcher
    feeds = {f.url: f for f in config.feeds}
    result = Result(toml=topic_toml(raw))
    near: list[Shown] = []
    unembedded = 0
    deadline = time.monotonic() + TIME_BUDGET
    stopped: int | None = None
    for n, recent in enumerate(entries[:MAX_ENTRIES]):
        if n % 64 == 0 and time.monotonic() > deadline:
            stopped = n
            break
        entry = recent.entry
        if not watches(topic, feeds.get(entry.feed_url) or FeedSettings(url=entry.feed_url)):
            continue
        result.entries += 1
        vector = recent.vector if _same_model(recent, embedder) else None
        use = matcher if vector is not None else keywords
        unembedded += use is not matcher
        found = use.match(entry, vector=vector)
        if found:
            result.match_count += 1
            if len(result.matches) < SHOWN:
                result.matches.append(_shown(recent, found[0].score, found[0].hits))
        else:
            near.extend(_near(recent, miss)
                        for miss in use.near(entry, vector=vector, margin=NEAR_MARGIN))
            if len(near) > 4 * SHOWN:  # memory stays bounded whatever the topic catches
                near = _closest(near)
    result.near = _closest(near)
    notes = [notice]
    if stopped is not None:
        notes.append(f"Stopped after {stopped} entries ({TIME_BUDGET:g} s): narrow the "
                     "topic's feeds or days to try the rest.")
    if unembedded:
        notes.append(f"{unembedded} entries were stored without an embedding of this model: "
                     "matched on the topic's keywords alone.")
    if len(entries) > MAX_ENTRIES:
        notes.append(f"Only the newest {MAX_ENTRIES} entries were tried.")
    result.notice = " ".join(filter(None, notes))
    return result


def _closest(near: list[Shown]) -> list[Shown]:
    """The SHOWN near misses closest to matching (below threshold first)."""
    return sorted(near, key=lambda n: (n.reason != "below threshold",
                                       n.threshold - n.score))[:SHOWN]


def _same_model(recent: RecentEntry, embedder: Any) -> bool:
    """The entry's stored vector was made by `embedder` (not by the model of an earlier
    `embedding` setting, whose vectors may even have the same size but another meaning)."""
    if recent.vector is None or embedder is None:
        return False
    from watcher.embed import BUNDLED_MODEL

    made_by = recent.model or BUNDLED_MODEL
    same_name = made_by == getattr(embedder, "name", BUNDLED_MODEL)
    return same_name and len(recent.vector) == embedder.dim


def _near(recent: RecentEntry, miss: NearMiss) -> Shown:
    return _shown(recent, miss.score, miss.hits, miss.reason, miss.threshold)


def _shown(recent: RecentEntry, score: float, hits: tuple[Hit, ...], reason: str = "",
           threshold: float = 0.0) -> Shown:
    e = recent.entry
    return Shown(title=segments(e.title, hits, "title"), summary=snippet(e, hits),
                 link=e.link, feed=e.feed_name, language=recent.language,
                 seen_at=recent.seen_at, score=score, hits=hits, reason=reason,
                 threshold=threshold)


def segments(text: str, hits: Sequence[Hit], field_name: str, offset: int = 0) -> Segments:
    """`text` cut into pieces, the words each hit of this field matched marked."""
    spans = sorted({(h.start - offset, h.end - offset) for h in hits
                    if h.field == field_name and h.end > h.start})
    out: Segments = []
    pos = 0
    for start, end in spans:
        if start < pos or start < 0 or end > len(text):
            continue
        if start > pos:
            out.append((text[pos:start], False))
        out.append((text[start:end], True))
        pos = end
    if pos < len(text):
        out.append((text[pos:], False))
    return out


def snippet(entry: Entry, hits: Sequence[Hit]) -> Segments:
    """Up to SNIPPET characters of the summary around its first hit, hits marked."""
    marks = [h for h in hits if h.field == "summary" and h.end > h.start]
    start = max(0, min(h.start for h in marks) - 60) if marks else 0
    text = entry.summary[start:start + SNIPPET]
    if not text:
        return []
    pieces = segments(text, marks, "summary", offset=start)
    if start > 0:
        pieces.insert(0, ("…", False))
    if start + SNIPPET < len(entry.summary):
        pieces.append(("…", False))
    return pieces
