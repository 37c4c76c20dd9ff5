"""The story decision (pure, no I/O): which topics watch a feed, and whether a match opens
a story (and owes its alerts) or joins an open one — and then owes an update or a surge.

The same-story verdict is the story engine's (`watcher.story.StoryIndex`, through
`same_story`). The pipeline calls `StoryDecider.decide` inside the poll's transaction,
under the store's story lock, with every placement other processes committed since it last
looked (`StoryEvent`s, replayed into the index first), so two nodes seeing one story cannot
both alert on it. `watcher test` calls `StoryDecider.place` for the same verdict without a
store, so what it shows is what the daemon would do. When the poll's transaction fails,
`StoryDecider.rollback` (also named `forget`) undoes its placements and merges in memory.

Alerts per story and channel:
- "story": when the story opens, due after the topic's `group_wait` (outlets that join
  meanwhile are listed in its `also_reported_by`: the outbox reads them when it sends);
- "update": once, when `story_updates` more outlets joined after the first alert was due;
- "surge": once, when `surge.outlets` distinct outlets carried it within `surge.within`.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from msgspec import Struct, field

from watcher import schedule
from watcher.config import Config, FeedSettings, TopicSettings
from watcher.embed import BUNDLED_MODEL, Embedder
from watcher.matching.dedupe import loads, loads_placement, placement
from watcher.matching.match import ConceptUnavailable, Matcher
from watcher.model import (
    AlertKind,
    Entry,
    Match,
    NewAlert,
    NewStory,
    PollRecord,
    StoryEvent,
    StoryMember,
)
from watcher.story import Evidence, StoryIndex, topic_terms
from watcher.story.index import Merge

if TYPE_CHECKING:
    import numpy as np
else:
    from watcher.lazy import numpy as np

log = logging.getLogger("watcher.poll")


def story_time(entry: Entry, now: datetime) -> datetime:
    """When an entry's story happened: its publication time, unless absent or in the future."""
    if entry.published is not None and entry.published <= now:
        return entry.published
    return now


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def human(delta: timedelta) -> str:
    """A duration as config writes it: 90s, 10m, 1h, 2d."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def build_matcher(config: Config, embedder: Embedder | None) -> Matcher:
    """The topics' matcher. Topics by meaning need the model: without it (not configured,
    or it failed to load) they run on their keywords alone, logged once per (re)load."""
    rules = [t.rule() for t in config.topics]
    if not any(r.concept for r in rules):
        return Matcher(rules)
    try:
        return Matcher(rules, embedder)
    except ConceptUnavailable as exc:
        log.warning("topics by meaning matched on their keywords alone",
                    extra={"topic": ", ".join(exc.topics), "reason": str(exc)})
        return Matcher.keywords_only(rules)


class Rules:
    """The topic side of a config, compiled once per (re)load."""

    def __init__(self, config: Config, embedder: Embedder | None = None) -> None:
        self.config = config
        self.embedder = embedder
        self.topics: dict[str, TopicSettings] = {t.name: t for t in config.topics}
        self.matcher = build_matcher(config, embedder)
        self._by_feed: dict[str, frozenset[str]] = {}

    def topics_for(self, feed: FeedSettings) -> frozenset[str]:
        """Topics that watch this feed (a topic's `feeds` lists feed names or tags)."""
        if feed.url not in self._by_feed:
            labels = {feed.name, *feed.tags} - {""}
            self._by_feed[feed.url] = frozenset(
                t.name for t in self.config.topics if not t.feeds or labels & set(t.feeds))
        return self._by_feed[feed.url]

    def feed(self, url: str) -> FeedSettings:
        """The configured feed with this URL, or an unnamed, untagged one."""
        return next((f for f in self.config.feeds if f.url == url), None) or FeedSettings(url=url)

    def needs_vectors(self, topics: frozenset[str]) -> bool:
        """Whether matching these topics reads entries' vectors (topics by meaning)."""
        return bool(topics) and self.embedder is not None and self.matcher.needs_vectors(topics)

    def match(self, entry: Entry, feed: FeedSettings,
              vector: np.ndarray | None = None) -> list[Match]:
        """The matches of an entry against the topics that watch its feed."""
        topics = self.topics_for(feed)
        if not topics:
            return []
        return self.matcher.match(entry, topics, vector=vector)


class Book(Struct):
    """What the decider counts of a story besides the engine: its entries and outlets."""

    topic: str
    first_seen: datetime  # wall clock of its first placement
    entries: dict[str, str] = field(default_factory=dict)  # entry id -> feed URL
    outlets: dict[str, datetime] = field(default_factory=dict)  # feed URL -> first seen
    updated: bool = False
    surged: bool = False
    # outlets that came with a story merged into this one: that story had its own alert,
    # so they are no news for an update (a surge counts them: they carried the story)
    folded: set[str] = field(default_factory=set)

    def join(self, entry_id: str, feed_url: str, seen_at: datetime) -> None:
        self.entries[entry_id] = feed_url
        self.outlets.setdefault(feed_url, seen_at)

    def fold(self, other: Book) -> None:
        """Take in a story merged into this one (its entries and outlets; follow-ups sent)."""
        self.entries.update(other.entries)
        for feed_url, at in other.outlets.items():
            if feed_url not in self.outlets:
                self.folded.add(feed_url)
            self.outlets[feed_url] = min(at, self.outlets.get(feed_url, at))
        self.folded |= other.folded
        self.updated |= other.updated
        self.surged |= other.surged

    def leave(self, entry_id: str) -> None:
        """Undo `join` (the outlet goes when no other entry of its feed is left)."""
        feed_url = self.entries.pop(entry_id, None)
        if feed_url is not None and feed_url not in self.entries.values():
            self.outlets.pop(feed_url, None)
            self.folded.discard(feed_url)

    def joined_after(self, due: datetime) -> int:
        """Outlets that first carried the story after its alert was due (not with a story
        merged into it)."""
        return sum(1 for url, at in self.outlets.items() if at > due and url not in self.folded)

    def recent(self, now: datetime, within: timedelta) -> int:
        return sum(1 for at in self.outlets.values() if now - within <= at <= now)


class Placement(Struct, frozen=True):
    """Where a match goes: the story it opened (`opened`), or the open story it joins."""

    story_id: str
    opened: NewStory | None
    probability: float = 0.0
    merged: Merge | None = None  # open stories the entry bridged into this one
    books_before: dict[str, Book] = field(default_factory=dict)  # (to undo the merge)

    @property
    def duplicate(self) -> bool:
        return self.opened is None


class StoryDecider:
    """Open stories per topic (the story engine's index) and the decision for each match."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.window = rules.config.watcher.story_window
        self.index = StoryIndex(self.window)
        self.books: dict[str, Book] = {}
        # merges of the latest polls: (record, position in its events, index undo, books
        # before), so `rollback` can undo them. A failed poll is rolled back right after its
        # transaction, and polls decide one at a time (the story lock), so the last 32 suffice
        self._merges: deque[tuple[PollRecord, int, Merge, dict[str, Book]]] = deque(maxlen=32)
        # the model's vector size and name, when known (see _comparable)
        self.vector_model: tuple[int, str] | None = None
        self._vector_size: int | None = None
        self.configure(rules)

    @property
    def config(self) -> Config:
        return self.rules.config

    def configure(self, rules: Rules) -> None:
        """Use new rules; each topic's own words are no evidence of one story."""
        self.rules = rules
        for topic in rules.config.topics:
            phrases = [p.phrase for p in (*topic.any, *topic.all) if p.phrase != "*"]
            self.index.configure(topic.name, topic_terms(phrases))

    def observe(self, ev: Evidence) -> None:
        """Count a new entry (matched or not) in the word statistics."""
        self.index.observe(self._comparable(ev))

    def _comparable(self, ev: Evidence) -> Evidence:
        """Stored evidence as the current model can compare it: a vector another model made
        (before the `embedding` key changed) counts as none, instead of mixing two models'
        cosines or breaking every comparison. The model is the one set in `vector_model`
        by whoever loads it (a vector stored without a name is the bundled model's); else
        vectors of the size of the first one met are kept."""
        if ev.vector is None:
            return ev
        if self.vector_model is not None:
            size, name = self.vector_model
            same = len(ev.vector) == size and (ev.model or BUNDLED_MODEL) == name
        else:
            embedder = self.rules.embedder
            if self._vector_size is None:
                self._vector_size = embedder.dim if embedder is not None else len(ev.vector)
            same = len(ev.vector) == self._vector_size
        return ev if same else replace(ev, vector=None, model="")

    def expire(self, now: datetime) -> int:
        """Forget stories not touched within the window; returns how many."""
        dropped = self.index.expire(now)
        for story_id in [s for s, b in self.books.items()
                         if self.index.story(b.topic, s) is None]:
            del self.books[story_id]
        return dropped

    def replay(self, event: StoryEvent) -> None:
        """Apply a committed placement (ours or another process's), once."""
        book = self.books.get(event.story_id)
        if book is not None and event.entry_id in book.entries:
            return
        stored, bridged = loads_placement(event.evidence)
        ev = self._comparable(stored)
        opens = book is None or self.index.story(event.topic, event.story_id) is None
        if opens:
            self.index.open(event.topic, event.story_id, event.entry_id, ev, event.seen_at)
            book = self.books[event.story_id] = Book(event.topic, event.seen_at)
        # the placing process merged the stories its entry bridged, then attached it: so do we
        merged = self.index.merge(event.topic, event.story_id, bridged, event.seen_at)
        if merged is not None:
            self._fold_books(merged, event.seen_at, quiet=True)
        if not opens:
            self.index.attach(event.topic, event.story_id, event.entry_id, ev, event.seen_at)
        book = self._book(event.story_id, event.topic, event.seen_at)
        book.join(event.entry_id, event.feed_url, event.seen_at)
        self._owed(event.story_id, book, event.seen_at)  # already owed by whoever placed it

    def rollback(self, record: PollRecord) -> None:
        """Undo the placements `decide` made for a poll whose transaction failed (its entries
        are polled again): stories it opened are removed, entries it attached to open
        stories are detached from the index and their books, follow-ups it owed are owed
        again. Placements replayed from other processes (committed) stay."""
        opened = {story.id for story in record.stories}
        merges = [(at, undo, books) for r, at, undo, books in self._merges if r is record]
        for position in range(len(record.events) - 1, -1, -1):
            event = record.events[position]
            if event.story_id not in opened:
                self.index.detach(event.topic, event.story_id, event.entry_id,
                                  self._comparable(loads(event.evidence)))
                book = self.books.get(event.story_id)
                if book is not None:
                    book.leave(event.entry_id)
            for at, undo, books in reversed(merges):
                if at == position:  # the merge this placement made, just before it
                    self.index.unmerge(undo)
                    self.books.update(books)
        self._merges = deque((m for m in self._merges if m[0] is not record),
                             maxlen=self._merges.maxlen)
        for alert in record.alerts:
            book = self.books.get(alert.story_id)
            if book is not None and alert.kind == "update":
                book.updated = False
            elif book is not None and alert.kind == "surge":
                book.surged = False
        for story in record.stories:
            self.index.remove(story.topic, story.id)
            self.books.pop(story.id, None)

    forget = rollback  # the pipeline's name for it

    def place(self, match: Match, ev: Evidence, now: datetime, *,
              update: bool = False) -> Placement:
        """The open story this match joins, or a new story it opens (added to the index)."""
        entry = match.entry
        verdict = self.index.find(match.topic, ev)
        if verdict.story_id is not None and not update:
            merged = self.index.merge(match.topic, verdict.story_id, verdict.bridges, now)
            books = {} if merged is None else self._fold_books(merged, now)
            self.index.attach(match.topic, verdict.story_id, entry.id, ev, now)
            self._book(verdict.story_id, match.topic, now).join(entry.id, entry.feed_url, now)
            return Placement(verdict.story_id, None, verdict.probability, merged, books)
        story_id = short_hash("story", match.topic, entry.feed_url, entry.key, entry.title)
        self.index.open(match.topic, story_id, entry.id, ev, now)
        book = self.books[story_id] = Book(match.topic, now)
        book.join(entry.id, entry.feed_url, now)
        return Placement(story_id, NewStory(story_id, match.topic, entry.title, entry.summary,
                                            ev.at), verdict.probability)

    def _book(self, story_id: str, topic: str, now: datetime) -> Book:
        return self.books.setdefault(story_id, Book(topic, now))

    def _fold_books(self, merged: Merge, now: datetime, *, quiet: bool = False
                    ) -> dict[str, Book]:
        """Fold the merged stories' books into the target's; returns the books as before."""
        target = self._book(merged.into, merged.topic, now)
        before = {merged.into: Book(target.topic, target.first_seen, dict(target.entries),
                                    dict(target.outlets), target.updated, target.surged,
                                    set(target.folded))}
        for story in merged.folded:
            book = self.books.pop(story.story_id, None)
            if book is not None:
                before[story.story_id] = book
                target.fold(book)
        (log.debug if quiet else log.info)("open stories merged: an entry reports both", extra={
            "topic": merged.topic, "story": merged.into,
            "merged": ", ".join(s.story_id for s in merged.folded)})
        return before

    def decide(self, record: PollRecord, fresh: list[StoryEvent], now: datetime) -> None:
        """Place a poll's matches into stories; fill in members, placements and alerts."""
        for event in fresh:
            self.replay(event)
        for match, update in record.matches:
            self._record(record, match, now, update)

    def _record(self, record: PollRecord, match: Match, now: datetime, update: bool) -> None:
        entry = match.entry
        raw = record.evidence[entry.id]
        placed = self.place(match, loads(raw), now, update=update)
        if placed.merged is not None:
            self._merges.append((record, len(record.events), placed.merged, placed.books_before))
        record.members.append(StoryMember(placed.story_id, entry, now))
        bridged = [] if placed.merged is None else [s.story_id for s in placed.merged.folded]
        # their alerts not yet tried are dropped: the story they joined has its own
        record.folded += [(match.topic, story_id, placed.story_id) for story_id in bridged]
        record.events.append(StoryEvent(placed.story_id, match.topic, entry.id,
                                        entry.feed_url, placement(raw, bridged), now))
        topic = self.rules.topics[match.topic]
        if placed.opened is None:
            log.info("same story as an earlier alert", extra={
                "feed": entry.feed_url, "topic": match.topic, "story": placed.story_id,
                "title": entry.title, "p": round(placed.probability, 2)})
            book = self.books[placed.story_id]
            story_due = book.first_seen + topic.group_wait  # never before the story's alert
            for kind, note in self._owed(placed.story_id, book, now):
                self._alerts(record, match, placed.story_id, max(now, story_due), kind, note)
            return
        record.stories.append(placed.opened)
        self._alerts(record, match, placed.story_id, now + topic.group_wait, "story", "")
        log.info("alert owed", extra={"feed": entry.feed_url, "topic": match.topic,
                                      "score": round(match.score, 1), "title": entry.title,
                                      "due_in": human(topic.group_wait)})

    def _owed(self, story_id: str, book: Book, now: datetime) -> list[tuple[AlertKind, str]]:
        """The follow-up alerts this story owes now (each once: the book remembers)."""
        topic = self.rules.topics.get(book.topic)
        if topic is None:
            return []
        owed: list[tuple[AlertKind, str]] = []
        n = topic.story_updates
        if n and not book.updated and book.joined_after(book.first_seen + topic.group_wait) >= n:
            book.updated = True
            owed.append(("update", f"Update: {n} more outlet{'s' if n > 1 else ''}"))
        surge = topic.surge
        if surge and not book.surged and book.recent(now, surge.within) >= surge.outlets:
            book.surged = True
            owed.append(("surge", f"Surge: {book.recent(now, surge.within)} outlets in "
                                  f"{human(surge.within)}"))
        return owed

    def _alerts(self, record: PollRecord, match: Match, story_id: str, due: datetime,
                kind: AlertKind, note: str) -> None:
        for channel in self.rules.topics[match.topic].channels:
            digest = schedule.digest_due(self.config.channel(channel).digest, due,
                                         self.config.watcher.timezone)
            alert_id = short_hash("alert", story_id, channel) if kind == "story" else \
                short_hash("alert", kind, story_id, channel)
            record.alerts.append(NewAlert(
                id=alert_id, topic=match.topic, channel=channel, story_id=story_id,
                entry=match.entry, score=match.score, hits=match.hits, due_at=max(due, digest),
                kind=kind, note=note))
        if kind != "story":
            log.info("follow-up alert owed", extra={"topic": match.topic, "story": story_id,
                                                    "kind": kind, "note": note})
