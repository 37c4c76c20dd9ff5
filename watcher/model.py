"""Plain data passed between pipeline stages. No I/O, no behaviour beyond small helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Field = Literal["title", "summary", "content"]
FIELDS: tuple[Field, ...] = ("title", "summary", "content")


@dataclass(frozen=True, slots=True)
class Entry:
    """One feed entry, normalised by the parse stage."""

    key: str  # identity within its feed: guid, else canonical link, else a content hash
    guid: str | None
    title: str
    link: str | None  # as published
    canonical_link: str | None  # lower-cased host, no fragment, no tracking parameters
    summary: str  # plain text, whitespace collapsed
    published: datetime | None  # aware UTC; None when the feed gives no usable date
    feed_url: str
    feed_name: str
    content: str = ""  # full article text, when the feed is configured for it

    def field_text(self, name: Field) -> str:
        return getattr(self, name)


@dataclass(frozen=True, slots=True)
class Phrase:
    """A phrase a topic looks for; `threshold` overrides the topic's when set."""

    text: str
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class TopicRule:
    """A topic as the matcher sees it (built from config)."""

    name: str
    any: tuple[Phrase, ...] = ()
    all: tuple[Phrase, ...] = ()
    none: tuple[Phrase, ...] = ()
    query: str | None = None
    threshold: float = 85.0
    fields: tuple[Field, ...] = ("title", "summary")
    title_weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Hit:
    """Why a phrase matched: which words of which field, and how well."""

    phrase: str
    field: Field
    text: str  # the words of the field that matched, as they appear there
    start: int  # character offsets of `text` in the field's text
    end: int
    score: float  # 0..100


@dataclass(frozen=True, slots=True)
class Match:
    topic: str
    entry: Entry
    score: float  # 0..100, the topic's overall score for this entry
    hits: tuple[Hit, ...]

    @property
    def matched(self) -> list[str]:
        """The distinct phrases that matched, in order of first hit."""
        return list(dict.fromkeys(hit.phrase for hit in self.hits))


@dataclass(frozen=True, slots=True)
class Outlet:
    """Another outlet that carried a story."""

    feed: str
    title: str
    link: str | None


@dataclass(slots=True)
class AlertMessage:
    """What a channel delivers: one alert, or one digest of several."""

    alert_id: str
    topic: str
    channel: str
    entry: Entry
    score: float
    hits: tuple[Hit, ...]
    also_reported_by: list[Outlet] = field(default_factory=list)
    created_at: datetime | None = None

    @property
    def matched(self) -> list[str]:
        return list(dict.fromkeys(hit.phrase for hit in self.hits))
