"""Plain records passed between stages and the store. No I/O, no behaviour beyond small
helpers (NodeInfo.alive asks the OS whether a process of this host still exists).

Records are `msgspec.Struct`s rather than dataclasses: building 22 dataclasses took ~20 ms
of every command's start (each compiles its generated methods), structs ~1 ms; they are
also smaller and quicker to make. `msgspec.structs.replace` copies one with changes."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from msgspec import Struct, field

Field = Literal["title", "summary", "content"]
FIELDS: tuple[Field, ...] = ("title", "summary", "content")


class Entry(Struct, frozen=True):
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
    language: str = ""  # ISO 639-1: the feed's declared language, else the story engine's guess

    @property
    def id(self) -> str:
        """Identity across feeds: the feed's URL and the entry's key."""
        return f"{self.feed_url}\x1f{self.key}"

    def field_text(self, name: Field) -> str:
        return getattr(self, name)


class Phrase(Struct, frozen=True):
    """A phrase a topic looks for; `threshold` overrides the topic's when set."""

    text: str
    threshold: float | None = None
    exact: bool = False  # True: no other word forms (stems, lemmas) of the phrase's words


class TopicRule(Struct, frozen=True):
    """A topic as the matcher sees it (built from config)."""

    name: str
    any: tuple[Phrase, ...] = ()
    all: tuple[Phrase, ...] = ()
    none: tuple[Phrase, ...] = ()
    query: str | None = None
    threshold: float = 85.0
    fields: tuple[Field, ...] = ("title", "summary")
    title_weight: float = 1.0
    about: str = ""  # a concept, one sentence: an entry close in meaning is an `any` hit
    like: tuple[str, ...] = ()  # example headlines of what to catch
    unlike: tuple[str, ...] = ()  # example headlines of near misses to push away
    about_threshold: float | None = None  # the concept's 0..100 threshold (None: threshold)

    @property
    def catch_all(self) -> bool:
        """`any = ["*"]`: every entry of the topic's feeds."""
        return len(self.any) == 1 and self.any[0].text == "*"

    @property
    def concept(self) -> bool:
        return bool(self.about or self.like)


class Hit(Struct, frozen=True):
    """Why a phrase matched: which words of which field, and how well."""

    phrase: str
    field: Field
    text: str  # the words of the field that matched, as they appear there
    start: int  # character offsets of `text` in the field's text
    end: int
    score: float  # 0..100


class Match(Struct, frozen=True):
    topic: str
    entry: Entry
    score: float  # 0..100, the topic's overall score for this entry
    hits: tuple[Hit, ...]

    @property
    def matched(self) -> list[str]:
        """The distinct phrases that matched, in order of first hit."""
        return list(dict.fromkeys(hit.phrase for hit in self.hits))


class Outlet(Struct, frozen=True):
    """Another outlet that carried a story."""

    feed: str
    title: str
    link: str | None
    language: str = ""
    seen_at: datetime | None = None


AlertKind = Literal["story", "update", "surge"]
ALERT_KINDS: tuple[AlertKind, ...] = ("story", "update", "surge")


class AlertMessage(Struct):
    """What a channel delivers: one alert, or one digest of several."""

    alert_id: str
    topic: str
    channel: str
    entry: Entry
    score: float
    hits: tuple[Hit, ...]
    also_reported_by: list[Outlet] = field(default_factory=list)
    created_at: datetime | None = None
    kind: AlertKind = "story"  # "update": more outlets joined; "surge": many outlets at once
    note: str = ""  # what an update or surge alert says: "Surge: 5 outlets in 1h"

    @property
    def matched(self) -> list[str]:
        return list(dict.fromkeys(hit.phrase for hit in self.hits))


# --- what the store keeps and hands back ---

class FeedState(Struct):
    """What the store remembers of one feed between polls."""

    url: str  # as configured (the feed's identity)
    current_url: str | None = None  # after permanent redirects
    title: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    primed: bool = False  # first poll done (its backlog recorded)
    last_poll_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    error_count: int = 0
    last_success_at: datetime | None = None
    next_poll_at: datetime | None = None  # when the feed is next due (interval or backoff)
    disabled_reason: str | None = None
    entries_total: int = 0
    interval_s: float | None = None  # adaptive interval, when the feed uses "auto"

    @property
    def fetch_url(self) -> str:
        return self.current_url or self.url


class SeenCheck(Struct, frozen=True):
    """How the store sees a batch of parsed entries."""

    new: list[Entry]  # never seen: candidates for matching
    updated: list[Entry]  # seen before under another title


class NewStory(Struct, frozen=True):
    id: str
    topic: str
    title: str
    summary: str
    opened_at: datetime


class StoryMember(Struct, frozen=True):
    story_id: str
    entry: Entry
    seen_at: datetime


class NewAlert(Struct, frozen=True):
    id: str
    topic: str
    channel: str
    story_id: str
    entry: Entry
    score: float
    hits: tuple[Hit, ...]
    due_at: datetime  # now, after the topic's group_wait, or the end of a digest period
    kind: AlertKind = "story"
    note: str = ""


class StoryEvent(Struct, frozen=True):
    """One entry placed in a story (the first one opened it): the story engine's index is
    rebuilt from these, in the order they were committed, by every node and at a start."""

    story_id: str
    topic: str
    entry_id: str  # Entry.id
    feed_url: str
    evidence: str  # the engine's Evidence as JSON (with the entry's vector, if any)
    seen_at: datetime  # wall clock when it was placed


class StoredEntry(Struct, frozen=True):
    """A recent entry as the store keeps it (`recent_entries`, for the desk)."""

    entry: Entry
    seen_at: datetime
    vector: Any = None  # numpy float32 array, when the entry was embedded
    model: str = ""  # the name of the model that made `vector` ("": the bundled one)


class PollRecord(Struct):
    """Everything one successful poll changes, written in one transaction."""

    feed: FeedState
    seen: list[Entry] = field(default_factory=list)
    matches: list[tuple[Match, bool]] = field(default_factory=list)  # (match, is an update)
    evidence: dict[str, str] = field(default_factory=dict)  # Entry.id -> Evidence JSON
    # filled in by the decider, inside the transaction:
    stories: list[NewStory] = field(default_factory=list)
    members: list[StoryMember] = field(default_factory=list)
    alerts: list[NewAlert] = field(default_factory=list)
    events: list[StoryEvent] = field(default_factory=list)
    # (topic, story merged away, story it joined)
    folded: list[tuple[str, str, str]] = field(default_factory=list)


class OwedAlert(Struct):
    """An outbox row ready for delivery."""

    id: str
    channel: str
    attempts: int
    message: AlertMessage
    sent_to: tuple[str, ...] = ()  # the channel's targets that already got it (note_sent)


AlertState = Literal["owed", "retrying", "delivered", "failed"]
ALERT_STATES: tuple[AlertState, ...] = ("owed", "retrying", "delivered", "failed")


class AlertRecord(Struct, frozen=True):
    """One alert as `watcher alerts` lists it.

    `state`: "owed" (never tried yet), "retrying" (owed, tried and failed temporarily),
    "delivered", or "failed" (a permanent failure, kept for `watcher retry`).
    """

    id: str
    topic: str
    channel: str
    story: str  # the story id (alerts of one story share it)
    title: str
    link: str | None
    feed: str  # the feed's name
    state: AlertState
    attempts: int
    last_error: str | None  # credentials in URLs masked
    created_at: datetime
    delivered_at: datetime | None


class StorySummary(Struct, frozen=True):
    """A story as `watcher status` lists it: its first title and every outlet that ran it."""

    topic: str
    title: str
    opened_at: datetime
    outlets: list[str]  # feed names, first reporter first


class ChannelCounts(Struct, frozen=True):
    owed: int
    failed: int
    delivered: int


class FailedAlert(Struct, frozen=True):
    id: str
    topic: str
    channel: str
    title: str
    error: str
    created_at: datetime


class NodeInfo(Struct, frozen=True):
    """One watcher process sharing the store, as its last heartbeat left it."""

    node: str  # "host:pid"
    heartbeat_at: datetime
    expires_at: datetime  # after this the node counts as dead and its leases are void
    config_fingerprint: str  # of the config the node loaded (Config.fingerprint)
    leased: int  # feeds it holds a live lease on now
    started_at: datetime
    inflight: int | None = None  # polls in flight, as the node last reported
    hostname: str | None = None  # where its process runs
    pid: int | None = None

    def alive(self, now: datetime) -> bool:
        """Heartbeat not expired, and (for a node of this host) its process still exists."""
        return self.expires_at >= now and not self.process_gone()

    def process_gone(self) -> bool:
        """The node ran on this host and its process no longer exists (it crashed)."""
        return process_gone(self.hostname, self.pid)


def node_identity(node: str) -> tuple[str | None, int | None]:
    """Host name and pid of a node named "host:pid" (the daemon's names); else Nones."""
    hostname, sep, pid = node.rpartition(":")
    if not sep or not hostname or not pid.isdigit():
        return None, None
    return hostname, int(pid)


def process_gone(hostname: str | None, pid: int | None) -> bool:
    """Whether `pid` on `hostname` is known to have exited: only provable on this host."""
    if not hostname or not pid or hostname != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


class PruneCounts(Struct, frozen=True):
    seen: int = 0
    stories: int = 0
    alerts: int = 0
    entries: int = 0
    nodes: int = 0
    feeds: int = 0
    hosts: int = 0


def fingerprint_conflicts(nodes: list[NodeInfo], fingerprint: str,
                          now: datetime) -> list[NodeInfo]:
    """Live nodes whose loaded config differs from `fingerprint` (all nodes must run one)."""
    return [n for n in nodes
            if n.alive(now) and n.config_fingerprint and n.config_fingerprint != fingerprint]


Decider = Callable[[PollRecord, list[StoryEvent]], None]
