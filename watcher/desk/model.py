"""What the desk shows, as plain records, and what it reads them from (DeskSource).

The pages, story feeds and API are built from these records only; `queries.DeskQueries`
reads them from the store (both backends), and nothing else in the desk touches SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from watcher.model import AlertState, Entry, Hit


@dataclass(frozen=True, slots=True)
class OutletView:
    """One outlet that carried a story: the entry it published and when we saw it."""

    feed: str  # the feed's name
    feed_url: str
    title: str
    link: str | None
    seen_at: datetime
    language: str | None = None  # when the story engine recorded it


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert of a story on one channel, with its delivery state."""

    id: str
    channel: str
    state: AlertState
    attempts: int
    last_error: str | None  # credentials in URLs masked
    created_at: datetime
    delivered_at: datetime | None
    due_at: datetime | None = None  # the next attempt (group_wait, digest period, retry)
    kind: str = "story"  # "story" (the first alert), "update" or "surge" (follow-ups)
    note: str = ""  # what a follow-up says ("Surge: 5 outlets in 1h"; story page only)


@dataclass(frozen=True, slots=True)
class StoryView:
    """A story of one topic: its first report, every outlet, its alerts per channel."""

    id: str
    topic: str
    title: str
    summary: str
    opened_at: datetime
    outlets: tuple[OutletView, ...]  # first reporter first
    alerts: tuple[AlertView, ...] = ()
    score: float | None = None  # the first match's score and explanation (story page only)
    hits: tuple[Hit, ...] = ()

    @property
    def first(self) -> OutletView | None:
        return self.outlets[0] if self.outlets else None

    @property
    def link(self) -> str | None:
        return self.first.link if self.first else None

    @property
    def first_seen(self) -> datetime:
        return self.first.seen_at if self.first else self.opened_at

    @property
    def last_seen(self) -> datetime:
        return max((o.seen_at for o in self.outlets), default=self.opened_at)


@dataclass(frozen=True, slots=True)
class RecentEntry:
    """An entry kept for the rule playground (`[watcher] keep_entries`)."""

    entry: Entry
    seen_at: datetime
    language: str | None = None
    vector: Any = None  # the entry's embedding when the daemon made one (concept topics)
    model: str = ""  # the name of the model that made `vector` ("": the bundled one)


Cursor = tuple[datetime, str]  # (opened_at, id) of the last story on a page: the next starts after


class DeskSource(Protocol):
    """What the desk reads from the store (and the one write it makes: re-queue an alert)."""

    async def latest_stories(self, topics: Sequence[str], per_topic: int) -> list[StoryView]:
        """The newest `per_topic` stories of each topic, newest first, in one round trip."""
        ...

    async def stories(self, *, topic: str | None = None, since: datetime | None = None,
                      before: Cursor | None = None, limit: int = 50) -> list[StoryView]:
        """Stories newest first (of one topic, or all), opened at or after `since`."""
        ...

    async def story(self, story_id: str) -> StoryView | None:
        """One story with its explanation (score and hits), or None."""
        ...

    async def retry_alert(self, alert_id: str, now: datetime) -> bool:
        """Re-queue one failed alert; False when it is not (or no longer) failed."""
        ...

    async def recent_entries(self, since: datetime, limit: int) -> list[RecentEntry]:
        """Entries seen since `since`, newest first (empty until the store keeps them)."""
        ...
