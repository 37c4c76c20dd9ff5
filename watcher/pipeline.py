"""One feed poll through every stage: fetch -> parse -> store -> match -> story -> outbox.

New entries (not a first poll's backlog, which is only recorded) get the story engine's
evidence in the parse workers, one batch per poll; matched entries (every new entry, when
a topic of the feed matches by meaning) are embedded in one batch off the event loop
(`Embedding`, in watcher.embedding_runtime); the evidence, with the vector, is stored with
the entry and the story.

The story engine, the matcher's rules and numpy are imported, and the story index rebuilt
from the store, by the first poll that has new entries (`Pipeline.story_engine`): a round
of unchanged feeds (and `watcher once` on one) never loads them; the daemon warms them at
its start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from msgspec import Struct
from msgspec.structs import replace

from watcher import metrics, schedule
from watcher.config import Config, FeedSettings
from watcher.embedding_runtime import Embedding
from watcher.http import feed_host
from watcher.model import Entry, FeedState, Match, PollRecord
from watcher.reader.parse import FeedParseError, ParsedFeed, link_identities, parse_feed
from watcher.reader.result import FetchResult, Validators, body_hash
from watcher.redact import mask_text
from watcher.store.base import FeedStore

if TYPE_CHECKING:
    from watcher.embed import Embedder
    from watcher.matching.decide import Placement, Rules, StoryDecider
    from watcher.reader.result import FeedFetcher

log = logging.getLogger("watcher.poll")
Clock = Callable[[], datetime]


STREAM_REBUILD = 20_000  # newest stored entries whose words seed the statistics at a start


def utcnow() -> datetime:
    return datetime.now(UTC)


class PollSummary(Struct, frozen=True):
    feed: str
    status: int
    entries: int = 0
    new: int = 0
    alerts: int = 0
    error: str | None = None
    disabled: bool = False  # the feed is (now) disabled: it is not polled again


async def build_rules(config: Config, embedding: Embedding) -> Rules:
    """The config's rules; topics by meaning get the model (loaded now, in its thread),
    the others never make the model load."""
    from watcher.matching.decide import Rules

    if not any(t.about or t.like for t in config.topics) or not embedding.enabled:
        return Rules(config)
    loop = asyncio.get_running_loop()
    model = await loop.run_in_executor(embedding.executor, embedding.load)
    if model is None:
        return await loop.run_in_executor(embedding.executor, Rules, config, None)
    return await loop.run_in_executor(embedding.executor, _rules_with_cached_phrases,
                                      config, model)


def _rules_with_cached_phrases(config: Config, model: Embedder) -> Rules:
    """Rules whose concept phrases come from the phrase cache where they were embedded before."""
    from watcher.matching.decide import Rules
    from watcher.phrase_vectors import PhraseCache

    phrases = PhraseCache(model)
    try:
        return Rules(config, phrases)
    finally:
        phrases.close()


async def place_entries(decider: StoryDecider, embedding: Embedding, entries: list[Entry],
                        now: datetime) -> list[tuple[Match, Placement]]:
    """`watcher test`'s verdicts, as a poll of these entries would place them: the same
    evidence, embeddings, matching and `StoryDecider.place`, without a store."""
    from watcher.matching.decide import story_time
    from watcher.matching.dedupe import evidence_batch, evidence_input, loads, with_vector

    rules = decider.rules
    record = PollRecord(feed=FeedState(url=""))
    raws = evidence_batch([evidence_input(e, story_time(e, now)) for e in entries])
    placed: list[tuple[Match, Placement]] = []
    by_feed: dict[str, list[Entry]] = {}
    for entry, raw in zip(entries, raws, strict=True):
        ev = loads(raw)
        decider.observe(ev)
        entry = entry if entry.language else replace(entry, language=ev.lang)
        record.evidence[entry.id] = raw
        by_feed.setdefault(entry.feed_url, []).append(entry)
    matches: list[Match] = []
    for url, group in by_feed.items():
        feed = rules.feed(url)
        before = rules.needs_vectors(rules.topics_for(feed))
        vectors = await embedding.embed(group) if before else {}
        found = [m for e in group for m in rules.match(e, feed, vectors.get(e.id))]
        if not before:
            vectors = await embedding.embed(list({m.entry.id: m.entry for m in found}.values()))
        for entry_id, vector in vectors.items():
            record.evidence[entry_id] = with_vector(record.evidence[entry_id], vector,
                                                     embedding.model_name)
        matches += found
    order = {e.id: i for i, e in enumerate(entries)}
    for match in sorted(matches, key=lambda m: order.get(m.entry.id, 0)):
        ev = loads(record.evidence[match.entry.id])
        placed.append((match, decider.place(match, ev, now)))
    return placed


class Pipeline:
    """Polls feeds and turns new matching entries into owed alerts."""

    def __init__(self, config: Config, store: FeedStore, fetcher: FeedFetcher,
                 parse_executor: Executor | None = None, clock: Clock = utcnow,
                 on_alerts: Callable[[], None] | None = None,
                 embedding: Embedding | None = None, rules: Rules | None = None) -> None:
        self.store = store
        self.fetcher = fetcher
        self.parse_executor = parse_executor
        self.clock = clock
        self.on_alerts = on_alerts or (lambda: None)
        self.embedding = embedding or Embedding("none")
        self._config = config
        self._rules = rules  # None: built (build_rules) with the story engine
        self._decider: StoryDecider | None = None
        self._rebuild = False  # start() was called: the index is rebuilt when first needed
        self._engine_lock = asyncio.Lock()

    @property
    def config(self) -> Config:
        return self._config

    @property
    def decider(self) -> StoryDecider:
        """The story decider (made now if need be; `story_engine` also rebuilds its index)."""
        if self._decider is None:
            from watcher.matching.decide import Rules, StoryDecider

            self._decider = StoryDecider(self._rules or Rules(self._config))
        return self._decider

    @property
    def rules(self) -> Rules:
        return self.decider.rules

    async def start(self) -> None:
        """Ready to poll; the story index is rebuilt from the store by the first poll with
        new entries (`story_engine`), or now with `warm` (the daemon's start)."""
        self._rebuild = True

    async def story_engine(self) -> StoryDecider:
        """The rules and the story decider, loaded the first time a poll has new entries;
        after `start`, the index rebuilt from the store then: word statistics from the
        newest stored entries' evidence, then every placement of the stories touched within
        the window (whatever their entries' dates); nothing is computed again."""
        if self._decider is not None and not self._rebuild:
            return self._decider
        async with self._engine_lock:
            if self._decider is None and self._rules is None:
                self._rules = await build_rules(self._config, self.embedding)
            decider = self.decider
            if self._rebuild:
                await self._rebuild_index(decider)
                self._rebuild = False
        return decider

    async def _rebuild_index(self, decider: StoryDecider) -> None:
        from watcher.matching.dedupe import loads

        now = self.clock()
        if self.embedding.enabled:  # stored vectors of another model count as none
            decider.vector_model = await self.embedding.identity()
        for raw in reversed(await self.store.recent_evidence(now - timedelta(days=14),
                                                             STREAM_REBUILD)):
            decider.observe(loads(raw))
        # also sets the store's cursor for placements other processes commit later
        for event in await self.store.story_events(now - self.config.watcher.story_window):
            decider.replay(event)

    def expire_stories(self, now: datetime) -> int:
        """Drop stories opened before the window; returns how many."""
        return self._decider.expire(now) if self._decider is not None else 0

    def apply(self, config: Config, rules: Rules | None = None) -> None:
        """Switch to a new config: new topics and rules apply to the next entries."""
        if config.watcher.story_window != self.config.watcher.story_window:
            log.warning("story_window changes take effect after a restart")
        self._config = config
        if self._decider is None:  # not loaded yet: the next poll with new entries does
            self._rules = rules
            return
        from watcher.matching.decide import Rules

        self._rules = rules or Rules(config, self.rules.embedder)
        self._decider.configure(self._rules)

    async def poll(self, feed: FeedSettings, state: FeedState) -> PollSummary:
        """Poll one feed; never raises for a feed's own problems (they are recorded on it)."""
        if state.disabled_reason:
            return PollSummary(feed.url, state.last_status or 0, error=state.disabled_reason,
                               disabled=True)
        result = await self.fetcher.fetch(state.fetch_url, Validators(state.etag,
                                                                      state.last_modified))
        now = self.clock()
        if not result.ok and not result.not_modified:
            return await self._failed(feed, state, result, result.error or "no body", now)
        digest = body_hash(result.body) if result.body is not None else None
        if result.not_modified or (digest is not None and digest == state.body_hash):
            state = self._succeeded(feed, state, result, now, new_entries=0)
            await self.store.save_feed(state)
            return PollSummary(feed.url, result.status)
        assert result.body is not None
        try:
            parsed = await self._parse(result, feed)
        except FeedParseError as exc:
            return await self._failed(feed, state, result, str(exc), now)
        if parsed.warning:
            log.info("feed has markup problems but was read", extra={
                "feed": feed.url, "reason": parsed.warning})
        state = replace(state, body_hash=digest)
        return await self._store_and_match(feed, state, result, parsed, now)

    async def _parse(self, result: FetchResult, feed: FeedSettings) -> ParsedFeed:
        assert result.body is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.parse_executor, parse_feed, result.body,
                                          feed.url, feed.name, result.content_type)

    async def _store_and_match(self, feed: FeedSettings, state: FeedState, result: FetchResult,
                               parsed: ParsedFeed, now: datetime) -> PollSummary:
        check = await self.store.check_seen(feed.url, link_identities(parsed.entries))
        backlog = not state.primed and self.config.watcher.first_poll == "mark-seen"
        record = PollRecord(feed=state, seen=[*check.new, *check.updated])
        if backlog:
            log.info("first poll: backlog recorded without alerts", extra={
                "feed": feed.url, "entries": len(check.new)})
        elif check.new or check.updated:  # only then the story engine is needed (loaded)
            decider = await self.story_engine()
            new = await self._with_fulltext(feed, check.new)
            new = await self._evidence(record, decider, new, now)
            record.seen = [*new, *check.updated]
            await self._match_into(record, feed, new, check.updated, now)
        state = self._succeeded(feed, state, result, now, new_entries=len(check.new))
        state.title = parsed.title or state.title
        state.primed = True
        state.entries_total += len(check.new)
        record.feed = state
        # a failed transaction's placements are undone by the store, under its story lock
        await self.store.record_poll(
            record, lambda r, fresh: self.decider.decide(r, fresh, now),
            lambda r: self.decider.forget(r))
        if record.alerts:
            self.on_alerts()
        return PollSummary(feed.url, result.status, len(parsed.entries), len(check.new),
                           len(record.alerts))

    async def _with_fulltext(self, feed: FeedSettings, entries: list[Entry]) -> list[Entry]:
        """New entries with their article text, for `fulltext` feeds whose topics read it."""
        if not (feed.fulltext and entries) or not any(
                "content" in self.rules.topics[t].fields for t in self.rules.topics_for(feed)):
            return entries
        from watcher.reader.fulltext import fetch_fulltext  # trafilatura is slow to import

        return await fetch_fulltext(self.fetcher, entries, self.parse_executor)

    async def _evidence(self, record: PollRecord, decider: StoryDecider, entries: list[Entry],
                        now: datetime) -> list[Entry]:
        """The entries with their language; their evidence in `record.evidence` (computed
        in the parse workers, one batch) and counted in the word statistics."""
        if not entries:
            return entries
        from watcher.matching.decide import story_time
        from watcher.matching.dedupe import evidence_batch, evidence_input, loads

        loop = asyncio.get_running_loop()
        raws = await loop.run_in_executor(
            self.parse_executor, evidence_batch,
            [evidence_input(e, story_time(e, now)) for e in entries])
        out: list[Entry] = []
        for entry, raw in zip(entries, raws, strict=True):
            ev = loads(raw)
            decider.observe(ev)
            entry = entry if entry.language else replace(entry, language=ev.lang)
            record.evidence[entry.id] = raw
            out.append(entry)
        return out

    async def _match_into(self, record: PollRecord, feed: FeedSettings, new: list[Entry],
                          updated: list[Entry], now: datetime) -> None:
        from watcher.matching.decide import story_time
        from watcher.matching.dedupe import evidence_batch, evidence_input, with_vector

        topics = self.rules.topics_for(feed)
        if not topics:
            return
        alerting = frozenset(n for n in topics if self.rules.topics[n].updates == "alert")
        before = self.rules.needs_vectors(topics)
        vectors = await self.embedding.embed(new) if before else {}
        for entry in new:
            for match in self.rules.match(entry, feed, vectors.get(entry.id)):
                metrics.count_match(match.topic)
                record.matches.append((match, False))
        changed = [(m, True) for entry in (updated if alerting else ())
                   for m in self.rules.matcher.match(entry, alerting)]
        if changed:
            raws = evidence_batch([evidence_input(m.entry, story_time(m.entry, now))
                                   for m, _ in changed])
            record.evidence.update({m.entry.id: raw for (m, _), raw in zip(changed, raws,
                                                                            strict=True)})
            record.matches.extend(changed)
        if not before:  # only what the story engine compares is embedded
            matched = {m.entry.id: m.entry for m, _ in record.matches}
            vectors = await self.embedding.embed(list(matched.values()))
        for entry_id, vector in vectors.items():
            record.evidence[entry_id] = with_vector(record.evidence[entry_id], vector,
                                                     self.embedding.model_name)

    def _succeeded(self, feed: FeedSettings, state: FeedState, result: FetchResult,
                   now: datetime, new_entries: int) -> FeedState:
        return schedule.after_success(
            feed, state, self.config.watcher, now=now, status=result.status,
            etag=result.validators.etag, last_modified=result.validators.last_modified,
            moved_to=result.moved_to, new_entries=new_entries)

    async def _failed(self, feed: FeedSettings, state: FeedState, result: FetchResult,
                      reason: str, now: datetime) -> PollSummary:
        reason = mask_text(reason)  # a feed URL's credentials are never stored
        state, delay = schedule.after_failure(
            feed, state, self.config.watcher, now=now, status=result.status, reason=reason,
            retry_after=result.retry_after, moved_to=result.moved_to)
        await self.store.save_feed(state)
        if result.status in (429, 503) and result.retry_after:
            host = feed_host(state.fetch_url)
            await self.store.block_host(host, now + timedelta(seconds=result.retry_after),
                                        f"HTTP {result.status} Retry-After")
        disabled = state.disabled_reason is not None
        level = logging.ERROR if disabled else logging.WARNING
        log.log(level, "poll failed", extra={
            "feed": feed.url, "status": result.status or "-", "reason": reason,
            "errors": state.error_count,
            "retry_in": _human(delay) if not disabled else "never (disabled)"})
        return PollSummary(feed.url, result.status, error=reason, disabled=disabled)


def _human(delay: timedelta) -> str:
    seconds = int(delay.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
