"""One feed poll through every stage: fetch -> parse -> store -> match -> dedupe -> outbox."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from watcher import metrics, schedule
from watcher.config import Config, FeedSettings, TopicSettings
from watcher.dedupe import StoryIndex
from watcher.fetch import Fetcher, FetchResult, Validators, body_hash
from watcher.http import feed_host
from watcher.match import Matcher
from watcher.model import Entry, FeedState, Match, NewAlert, NewStory, PollRecord, StoryMember
from watcher.parse import FeedParseError, ParsedFeed, parse_feed
from watcher.store.base import FeedStore, mask_error

log = logging.getLogger("watcher.poll")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def story_time(entry: Entry, now: datetime) -> datetime:
    """When an entry's story happened: its publication time, unless absent or in the future."""
    if entry.published is not None and entry.published <= now:
        return entry.published
    return now


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class PollSummary:
    feed: str
    status: int
    entries: int = 0
    new: int = 0
    alerts: int = 0
    error: str | None = None
    disabled: bool = False  # the feed is (now) disabled: it is not polled again


class Rules:
    """The topic side of a config, compiled once per (re)load."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.topics: dict[str, TopicSettings] = {t.name: t for t in config.topics}
        self.matcher = Matcher([t.rule() for t in config.topics])
        self._by_feed: dict[str, frozenset[str]] = {}

    def topics_for(self, feed: FeedSettings) -> frozenset[str]:
        """Topics that watch this feed (a topic's `feeds` lists feed names or tags)."""
        if feed.url not in self._by_feed:
            labels = {feed.name, *feed.tags} - {""}
            self._by_feed[feed.url] = frozenset(
                t.name for t in self.config.topics if not t.feeds or labels & set(t.feeds))
        return self._by_feed[feed.url]


class Pipeline:
    """Polls feeds and turns new matching entries into owed alerts."""

    def __init__(self, config: Config, store: FeedStore, fetcher: Fetcher,
                 parse_executor: Executor | None = None, clock: Clock = utcnow,
                 on_alerts: Callable[[], None] | None = None) -> None:
        self.store = store
        self.fetcher = fetcher
        self.parse_executor = parse_executor
        self.clock = clock
        self.on_alerts = on_alerts or (lambda: None)
        self.rules = Rules(config)
        self.stories = StoryIndex(config.watcher.story_window)

    @property
    def config(self) -> Config:
        return self.rules.config

    async def start(self) -> None:
        """Load the open stories of the window from the store."""
        since = self.clock() - self.config.watcher.story_window
        for story in await self.store.open_stories(since):  # also syncs the store's story cursor
            self._add_story(story)

    def expire_stories(self, now: datetime) -> int:
        """Drop stories opened before the window; returns how many."""
        return self.stories.expire(now)

    def _add_story(self, story: NewStory) -> None:
        if not self.stories.has(story.topic, story.id):
            self.stories.add(story.id, story.topic, story.title, story.summary, story.opened_at)

    def apply(self, config: Config, rules: Rules | None = None) -> None:
        """Switch to a new config: new topics and rules apply to the next entries."""
        if config.watcher.story_window != self.config.watcher.story_window:
            log.warning("story_window changes take effect after a restart")
        self.rules = rules or Rules(config)

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
        else:
            new = await self._with_fulltext(feed, check.new)
            record.seen = [*new, *check.updated]
            self._match_into(record, feed, new, check.updated)
        state = self._succeeded(feed, state, result, now, new_entries=len(check.new))
        state.title = parsed.title or state.title
        state.primed = True
        state.entries_total += len(check.new)
        record.feed = state
        try:
            await self.store.record_poll(record, lambda r, fresh: self.decide(r, fresh, now))
        except Exception:
            self._forget(record)
            raise
        if record.alerts:
            self.on_alerts()
        return PollSummary(feed.url, result.status, len(parsed.entries), len(check.new),
                           len(record.alerts))

    async def _with_fulltext(self, feed: FeedSettings, entries: list[Entry]) -> list[Entry]:
        """New entries with their article text, for `fulltext` feeds whose topics read it."""
        if not (feed.fulltext and entries) or not any(
                "content" in self.rules.topics[t].fields for t in self.rules.topics_for(feed)):
            return entries
        from watcher.fulltext import fetch_fulltext  # trafilatura is slow to import

        return await fetch_fulltext(self.fetcher, entries, self.parse_executor)

    def _match_into(self, record: PollRecord, feed: FeedSettings, new: list[Entry],
                    updated: list[Entry]) -> None:
        topics = self.rules.topics_for(feed)
        if not topics:
            return
        alerting = {n for n in topics if self.rules.topics[n].updates == "alert"}
        for entry in new:
            for match in self.rules.matcher.match(entry, topics):
                metrics.count_match(match.topic)
                record.matches.append((match, False))
        for entry in updated if alerting else ():
            record.matches.extend((m, True) for m in self.rules.matcher.match(entry, alerting))

    def decide(self, record: PollRecord, fresh: list[NewStory], now: datetime) -> None:
        """Dedupe a poll's matches into stories, members and alerts.

        The store calls this inside the poll's transaction, under its story lock, with the
        stories other processes opened since we last looked, so two nodes seeing one story
        cannot both alert on it.
        """
        for story in fresh:
            self._add_story(story)
        for match, update in record.matches:
            self._dedupe(record, match, now, update)

    def _dedupe(self, record: PollRecord, match: Match, now: datetime,
                update: bool = False) -> None:
        """Open a story and owe its alerts, or attach the entry to an open story."""
        entry = match.entry
        at = story_time(entry, now)
        story_id = self.stories.find(match.topic, entry.title, entry.summary, at)
        if story_id is not None and not update:
            record.members.append(StoryMember(story_id, entry, now))
            log.info("same story as an earlier alert", extra={
                "feed": entry.feed_url, "topic": match.topic, "story": story_id,
                "title": entry.title})
            return
        story_id = short_hash("story", match.topic, entry.feed_url, entry.key, entry.title)
        story = NewStory(story_id, match.topic, entry.title, entry.summary, at)
        self._add_story(story)
        record.stories.append(story)
        record.members.append(StoryMember(story_id, entry, now))
        for channel in self.rules.topics[match.topic].channels:
            due = schedule.digest_due(self.config.channel(channel).digest, now,
                                      self.config.watcher.timezone)
            record.alerts.append(NewAlert(
                id=short_hash("alert", story_id, channel), topic=match.topic, channel=channel,
                story_id=story_id, entry=entry, score=match.score, hits=match.hits, due_at=due))
        log.info("alert owed", extra={"feed": entry.feed_url, "topic": match.topic,
                                      "score": round(match.score, 1), "title": entry.title})

    def _forget(self, record: PollRecord) -> None:
        """Undo index additions of a poll whose transaction failed."""
        for story in record.stories:
            self.stories.remove(story.topic, story.id)

    def _succeeded(self, feed: FeedSettings, state: FeedState, result: FetchResult,
                   now: datetime, new_entries: int) -> FeedState:
        interval = schedule.feed_interval(feed, state, self.config.watcher, new_entries, now)
        jitter = self.config.watcher.jitter
        return replace(
            state, current_url=result.moved_to or state.current_url,
            etag=result.validators.etag, last_modified=result.validators.last_modified,
            last_poll_at=now, last_status=result.status, last_error=None, error_count=0,
            last_success_at=now, next_poll_at=now + interval * random.uniform(1 - jitter,
                                                                              1 + jitter),
            interval_s=interval.total_seconds() if feed.interval == "auto" else None,
        )

    async def _failed(self, feed: FeedSettings, state: FeedState, result: FetchResult,
                      reason: str, now: datetime) -> PollSummary:
        errors = state.error_count + 1
        interval = schedule.base_interval(feed, self.config.watcher, state)
        delay = schedule.error_backoff(errors, interval, result.retry_after)
        disabled = f"HTTP 410 Gone at {now:%Y-%m-%d %H:%M} UTC: the feed was removed" \
            if result.status == 410 else None
        reason = mask_error(reason) or reason  # a feed URL's credentials are never stored
        state = replace(state, last_poll_at=now, last_status=result.status or None,
                        last_error=reason, error_count=errors, disabled_reason=disabled,
                        next_poll_at=now + delay * random.uniform(0.9, 1.1),
                        current_url=result.moved_to or state.current_url)
        await self.store.save_feed(state)
        if result.status in (429, 503) and result.retry_after:
            host = feed_host(state.fetch_url)
            await self.store.block_host(host, now + timedelta(seconds=result.retry_after),
                                        f"HTTP {result.status} Retry-After")
        level = logging.ERROR if disabled else logging.WARNING
        log.log(level, "poll failed", extra={
            "feed": feed.url, "status": result.status or "-", "reason": reason,
            "errors": errors, "retry_in": _human(delay) if not disabled else "never (disabled)"})
        return PollSummary(feed.url, result.status, error=reason, disabled=disabled is not None)


def link_identities(entries: list[Entry]) -> list[Entry]:
    """Entries whose canonical link cannot identify them lose it (it is then neither
    looked up nor stored): a site's front page, and a link the document gives to several
    items with different titles. Otherwise every later item would be dropped as seen."""
    titles: dict[str, set[str]] = {}
    for entry in entries:
        if entry.canonical_link:
            titles.setdefault(entry.canonical_link, set()).add(entry.title)
    shared = {link for link, names in titles.items() if len(names) > 1}
    return [replace(e, canonical_link=None) if e.canonical_link and (
        e.canonical_link in shared or _front_page(e.canonical_link)) else e for e in entries]


def _front_page(link: str) -> bool:
    parts = urlsplit(link)
    return parts.path in ("", "/") and not parts.query


def _human(delay: timedelta) -> str:
    seconds = int(delay.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
