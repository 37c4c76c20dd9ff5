"""One feed poll through every stage: fetch -> parse -> store -> match -> dedupe -> outbox."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from watcher import metrics, schedule
from watcher.config import Config, FeedSettings
from watcher.http import feed_host
from watcher.matching.decide import Rules, StoryDecider
from watcher.model import Entry, FeedState, PollRecord
from watcher.reader.fetch import Fetcher, FetchResult, Validators, body_hash
from watcher.reader.parse import FeedParseError, ParsedFeed, link_identities, parse_feed
from watcher.redact import mask_text
from watcher.store.base import FeedStore

log = logging.getLogger("watcher.poll")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PollSummary:
    feed: str
    status: int
    entries: int = 0
    new: int = 0
    alerts: int = 0
    error: str | None = None
    disabled: bool = False  # the feed is (now) disabled: it is not polled again


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
        self.decider = StoryDecider(Rules(config))

    @property
    def config(self) -> Config:
        return self.decider.config

    @property
    def rules(self) -> Rules:
        return self.decider.rules

    async def start(self) -> None:
        """Load the open stories of the window from the store."""
        since = self.clock() - self.config.watcher.story_window
        for story in await self.store.open_stories(since):  # also syncs the store's story cursor
            self.decider.add(story)

    def expire_stories(self, now: datetime) -> int:
        """Drop stories opened before the window; returns how many."""
        return self.decider.expire(now)

    def apply(self, config: Config, rules: Rules | None = None) -> None:
        """Switch to a new config: new topics and rules apply to the next entries."""
        if config.watcher.story_window != self.config.watcher.story_window:
            log.warning("story_window changes take effect after a restart")
        self.decider.rules = rules or Rules(config)

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
            await self.store.record_poll(
                record, lambda r, fresh: self.decider.decide(r, fresh, now))
        except Exception:
            self.decider.forget(record)
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
        from watcher.reader.fulltext import fetch_fulltext  # trafilatura is slow to import

        return await fetch_fulltext(self.fetcher, entries, self.parse_executor)

    def _match_into(self, record: PollRecord, feed: FeedSettings, new: list[Entry],
                    updated: list[Entry]) -> None:
        topics = self.rules.topics_for(feed)
        if not topics:
            return
        alerting = {n for n in topics if self.rules.topics[n].updates == "alert"}
        for entry in new:
            for match in self.rules.match(entry, feed):
                metrics.count_match(match.topic)
                record.matches.append((match, False))
        for entry in updated if alerting else ():
            record.matches.extend((m, True) for m in self.rules.matcher.match(entry, alerting))

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
