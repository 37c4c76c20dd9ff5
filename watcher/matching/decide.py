"""The story decision (pure, no I/O): which topics watch a feed, and whether a match opens
a story (and owes its alerts) or joins an open one.

The pipeline calls `StoryDecider.decide` inside the poll's transaction; `watcher test` calls
`StoryDecider.place` for the same verdict without a store, so what it shows is what the
daemon would do.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from watcher import schedule
from watcher.config import Config, FeedSettings, TopicSettings
from watcher.matching.dedupe import StoryIndex
from watcher.matching.match import Matcher
from watcher.model import Entry, Match, NewAlert, NewStory, PollRecord, StoryMember

log = logging.getLogger("watcher.poll")


def story_time(entry: Entry, now: datetime) -> datetime:
    """When an entry's story happened: its publication time, unless absent or in the future."""
    if entry.published is not None and entry.published <= now:
        return entry.published
    return now


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


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

    def feed(self, url: str) -> FeedSettings:
        """The configured feed with this URL, or an unnamed, untagged one."""
        return next((f for f in self.config.feeds if f.url == url), None) or FeedSettings(url=url)

    def match(self, entry: Entry, feed: FeedSettings) -> list[Match]:
        """The matches of an entry against the topics that watch its feed."""
        topics = self.topics_for(feed)
        return self.matcher.match(entry, topics) if topics else []


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a match goes: the story it opened (`opened`), or the open story it joins."""

    story_id: str
    opened: NewStory | None

    @property
    def duplicate(self) -> bool:
        return self.opened is None


class StoryDecider:
    """Open stories per topic and the decision for each match (same story or a new one)."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.window = rules.config.watcher.story_window
        self.stories = StoryIndex(self.window)

    @property
    def config(self) -> Config:
        return self.rules.config

    def add(self, story: NewStory) -> None:
        """Remember a stored (or just opened) story, once."""
        if not self.stories.has(story.topic, story.id):
            self.stories.add(story.id, story.topic, story.title, story.summary, story.opened_at)

    def expire(self, now: datetime) -> int:
        """Drop stories opened before the window; returns how many."""
        return self.stories.expire(now)

    def forget(self, record: PollRecord) -> None:
        """Undo what a poll whose transaction failed added to the index."""
        for story in record.stories:
            self.stories.remove(story.topic, story.id)

    def place(self, match: Match, now: datetime, *, update: bool = False) -> Placement:
        """The open story this match joins, or a new story it opens (added to the index)."""
        entry = match.entry
        at = story_time(entry, now)
        story_id = self.stories.find(match.topic, entry.title, entry.summary, at)
        if story_id is not None and not update:
            return Placement(story_id, None)
        story_id = short_hash("story", match.topic, entry.feed_url, entry.key, entry.title)
        story = NewStory(story_id, match.topic, entry.title, entry.summary, at)
        self.add(story)
        return Placement(story_id, story)

    def decide(self, record: PollRecord, fresh: list[NewStory], now: datetime) -> None:
        """Dedupe a poll's matches into stories, members and alerts.

        The store calls this inside the poll's transaction, under its story lock, with the
        stories other processes opened since we last looked, so two nodes seeing one story
        cannot both alert on it.
        """
        for story in fresh:
            self.add(story)
        for match, update in record.matches:
            self._record(record, match, now, update)

    def _record(self, record: PollRecord, match: Match, now: datetime, update: bool) -> None:
        entry = match.entry
        placed = self.place(match, now, update=update)
        record.members.append(StoryMember(placed.story_id, entry, now))
        if placed.opened is None:
            log.info("same story as an earlier alert", extra={
                "feed": entry.feed_url, "topic": match.topic, "story": placed.story_id,
                "title": entry.title})
            return
        record.stories.append(placed.opened)
        for channel in self.rules.topics[match.topic].channels:
            due = schedule.digest_due(self.config.channel(channel).digest, now,
                                      self.config.watcher.timezone)
            record.alerts.append(NewAlert(
                id=short_hash("alert", placed.story_id, channel), topic=match.topic,
                channel=channel, story_id=placed.story_id, entry=entry, score=match.score,
                hits=match.hits, due_at=due))
        log.info("alert owed", extra={"feed": entry.feed_url, "topic": match.topic,
                                      "score": round(match.score, 1), "title": entry.title})
