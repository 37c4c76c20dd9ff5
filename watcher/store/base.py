"""The store interface, split by role (what each user needs), its errors, and the helpers
both backends share. The records it exchanges live in watcher.model."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, overload

from msgspec.structs import asdict

from watcher.model import (
    ALERT_STATES,
    AlertMessage,
    AlertRecord,
    AlertState,
    ChannelCounts,
    Decider,
    Entry,
    FailedAlert,
    FeedState,
    Hit,
    Match,
    NewAlert,
    NodeInfo,
    Outlet,
    OwedAlert,
    PollRecord,
    PruneCounts,
    SeenCheck,
    StoredEntry,
    StoryEvent,
    StorySummary,
)
from watcher.redact import mask_text

log = logging.getLogger("watcher.store")


class StoreError(Exception):
    """The state store cannot be opened or used; the message says which and why."""


class StoreFull(StoreError):
    """The disk holding the state is full: writes fail until space is freed."""


class StoreDamaged(StoreError):
    """The state is unreadable (a damaged file): retrying cannot help, a person must act."""


class StoreLost(StoreError):
    """The state file was deleted or replaced under the running process: stop at once."""


OUTLETS_PER_ALERT = 50  # other outlets an alert lists at most
DELIVERY_LEASE = 120.0  # seconds a claimed alert is ours before another node may send it
DEFAULT_NODE_TTL = 15.0  # seconds without a heartbeat after which a node's leases are void


def _h(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def title_hash(entry: Entry) -> str:
    """What the store keeps of an entry's content (column `title_hash`): hashes of its
    title, summary and date, "title/summary/date" (rows written before: the title only)."""
    published = entry.published.isoformat() if entry.published else ""
    return f"{_h(entry.title)}/{_h(entry.summary)}/{_h(published)}"


def another_item(stored: str, entry: Entry) -> bool:
    """A known key that came back as a different item: the feed reuses one guid (or link)
    for several items. Title, summary and date all differ; an edit keeps one of them."""
    old = stored.split("/")
    if len(old) != 3:
        return False  # a row from before summaries were kept: a title edit, as it was
    return all(a != b for a, b in zip(old, title_hash(entry).split("/"), strict=True))


def classify_seen(entries: list[Entry], known: dict[str, str], links: set[str]) -> SeenCheck:
    """New (never seen by key or canonical link) and updated (seen, other title) entries.

    A key seen before for another item (title, summary and date all different) is new."""
    new: list[Entry] = []
    updated: list[Entry] = []
    for entry in entries:
        if entry.key in known:
            stored = known[entry.key]
            if another_item(stored, entry):
                new.append(entry)
            elif stored.split("/")[0] != title_hash(entry).split("/")[0]:
                updated.append(entry)
        elif entry.canonical_link not in links:
            new.append(entry)
        else:  # the same article in another feed (or under another key): not alerted again
            log.debug("entry's link already seen: not new", extra={
                "feed": entry.feed_url, "link": entry.canonical_link, "title": entry.title})
    return SeenCheck(new=new, updated=updated)


def match_links(record: PollRecord) -> list[str]:
    """Canonical links of a poll's new (not updated) matched entries."""
    return sorted({m.entry.canonical_link for m, update in record.matches
                   if not update and m.entry.canonical_link})


def drop_seen_elsewhere(record: PollRecord, rows: list[tuple[str, str, str]]) -> list[Entry]:
    """Drop the matches whose canonical link another entry (another feed, or another key)
    already holds; `rows` are (canonical_link, feed_url, entry_key) of seen entries, read
    inside the poll's transaction, so two polls carrying one article alert once."""
    holders: dict[str, set[tuple[str, str]]] = {}
    for link, feed_url, key in rows:
        holders.setdefault(link, set()).add((feed_url, key))
    dropped: list[Entry] = []
    kept: list[tuple[Match, bool]] = []
    for match, update in record.matches:
        e = match.entry
        others = holders.get(e.canonical_link or "", set()) - {(e.feed_url, e.key)}
        if not update and others:
            dropped.append(e)
        else:
            kept.append((match, update))
    record.matches = kept
    return dropped


def log_dropped(entries: list[Entry]) -> None:
    for e in entries:
        log.info("same article already seen in another feed: no second alert", extra={
            "feed": e.feed_url, "link": e.canonical_link, "title": e.title})


class FeedStore(Protocol):
    """What the pipeline needs: feed state, seen entries, one transaction per poll."""

    async def feed_states(self, urls: list[str]) -> dict[str, FeedState]: ...
    async def save_feed(self, state: FeedState) -> None: ...
    async def check_seen(self, feed_url: str, entries: list[Entry]) -> SeenCheck: ...
    async def record_poll(self, record: PollRecord, decide: Decider | None = None,
                          undo: Callable[[PollRecord], None] | None = None) -> None:
        """Write one poll in one transaction; `decide` fills in its stories and alerts there.
        If the transaction fails after `decide` ran, `undo(record)` runs before another
        poll of this process can decide (still under the story lock)."""
        ...
    async def story_events(self, since: datetime) -> list[StoryEvent]:
        """Placements of the stories touched since `since`, in commit order."""
        ...
    async def recent_evidence(self, since: datetime, limit: int) -> list[str]: ...
    async def block_host(self, host: str, until: datetime, reason: str = "") -> None: ...


class OutboxStore(Protocol):
    """What the outbox worker needs: owed alerts, claimed and marked."""

    async def due_alerts(self, now: datetime, limit: int) -> list[OwedAlert]: ...
    async def mark_delivered(self, alert_ids: list[str], at: datetime) -> None: ...
    async def mark_retry(self, alert_ids: list[str], error: str, next_at: datetime, *,
                         tried: bool = True) -> None:
        """Owed again at `next_at`; `tried=False`: not sent this time (its channel had just
        failed), so its count of attempts stays."""
        ...
    async def mark_failed(self, alert_ids: list[str], error: str) -> None: ...
    async def note_sent(self, alert_id: str, targets: list[str]) -> None:
        """Add `targets` to the alert's done targets (durably): a retry skips them."""
        ...
    async def next_due_at(self, now: datetime) -> datetime | None:
        """When the next owed alert may be claimed: its next attempt, or the end of a live
        delivery lease on it (another node is sending it); None when nothing is owed."""
        ...


class ClusterStore(Protocol):
    """What the daemon needs to share the work with other nodes (PostgreSQL; SQLite answers
    for the processes of one machine)."""

    async def sync_feeds(self, urls: list[str], now: datetime, spread: float) -> None: ...
    async def claim_due(self, node: str, now: datetime, lease: float, limit: int,
                        per_host: int | None = None) -> list[FeedState]:
        """Lease up to `limit` due feeds; at most `per_host` leased per host across nodes."""
        ...
    async def heartbeat(self, node: str, config_fingerprint: str, now: datetime,
                        inflight: int | None = None) -> None: ...
    async def nodes(self) -> list[NodeInfo]: ...
    async def leave(self, node: str) -> None:
        """A clean stop: release the node's leases at once and forget it."""
        ...
    async def release(self, node: str, urls: list[str]) -> None:
        """Give up `node`'s leases on these feeds (polls whose result could not be written)."""
        ...
    async def prune(self, now: datetime, *, stories_older_than: timedelta = ...,
                    keep_seen_per_feed: int = ...,
                    nodes_older_than: timedelta = ...,
                    keep_entries: timedelta = ...) -> PruneCounts: ...


class ReportStore(Protocol):
    """What `watcher status`, `alerts` and `retry` read (and `retry` re-queues)."""

    async def feed_states(self, urls: list[str]) -> dict[str, FeedState]: ...
    async def nodes(self) -> list[NodeInfo]: ...
    async def blocked_hosts(self, now: datetime) -> dict[str, datetime]: ...
    async def channel_counts(self) -> dict[str, ChannelCounts]: ...
    async def failed_alerts(self, limit: int) -> list[FailedAlert]: ...
    async def alerts_since(self, since: datetime) -> dict[str, int]: ...
    async def recent_stories(self, since: datetime, limit: int) -> list[StorySummary]: ...
    async def alert_history(self, *, topic: str | None = None, since: datetime | None = None,
                            status: str | None = None, limit: int = 500) -> list[AlertRecord]:
        """Past alerts, newest first; `status` is an AlertState ("owed" also lists
        "retrying": both are still owed)."""
        ...
    async def requeue_failed(self, channel: str | None, now: datetime) -> int: ...
    async def recent_entries(self, since: datetime, limit: int) -> list[StoredEntry]:
        """New entries seen since `since`, newest first (kept for `keep_entries`)."""
        ...


class Store(FeedStore, OutboxStore, ClusterStore, ReportStore, Protocol):
    """The whole state store (each backend): the roles above, opened and closed."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def check_location(self) -> None:
        """Raise StoreLost if the state opened is no longer where it was (SQLite file
        deleted or replaced); checked every daemon cycle."""
        ...


# --- serialisation of what an alert carries (shared by backends) ---

@overload
def to_epoch(value: datetime) -> float: ...
@overload
def to_epoch(value: None) -> None: ...
@overload
def to_epoch(value: datetime | None) -> float | None: ...
def to_epoch(value: datetime | None) -> float | None:
    """A time as SQLite stores it: seconds since the epoch (None stays None)."""
    return value.timestamp() if value is not None else None


@overload
def from_epoch(value: float) -> datetime: ...
@overload
def from_epoch(value: None) -> None: ...
@overload
def from_epoch(value: float | None) -> datetime | None: ...
def from_epoch(value: float | None) -> datetime | None:
    """A stored epoch time as an aware UTC datetime (None stays None)."""
    return datetime.fromtimestamp(value, tz=UTC) if value is not None else None


def entry_to_dict(entry: Entry) -> dict[str, Any]:
    data = asdict(entry)
    data["published"] = entry.published.isoformat() if entry.published else None
    return data


def entry_from_dict(data: dict[str, Any]) -> Entry:
    published = data.get("published")
    return Entry(**{**data, "published": datetime.fromisoformat(published) if published else None})


def alert_payload(alert: NewAlert) -> str:
    return json.dumps({
        "entry": entry_to_dict(alert.entry), "score": alert.score,
        "hits": [asdict(h) for h in alert.hits], "kind": alert.kind, "note": alert.note,
    }, ensure_ascii=False)


def alert_state(status: str, attempts: int) -> AlertState:
    """The outbox status as `watcher alerts` shows it: owed alerts tried before are retrying."""
    if status == "owed" and attempts > 0:
        return "retrying"
    if status not in ALERT_STATES:
        raise ValueError(f"unknown alert status {status!r} in the store")
    return status


# `alert_history(status=...)` as SQL (both backends): "owed" lists every alert still owed
STATUS_FILTER = {"owed": " AND status = 'owed'",
                 "retrying": " AND status = 'owed' AND attempts > 0",
                 "delivered": " AND status = 'delivered'", "failed": " AND status = 'failed'"}


def check_alert_status(status: str | None) -> None:
    if status is not None and status not in ALERT_STATES:
        raise ValueError(f"unknown alert status {status!r}: expected one of "
                         f"{', '.join(ALERT_STATES)}")


def mask_error(text: str | None) -> str | None:
    """An error message with any credentials in the URLs it quotes masked."""
    return mask_text(text) if text else text


def record_from_row(row: Any, payload: str, created_at: datetime,
                    delivered_at: datetime | None) -> AlertRecord:
    """An AlertRecord from an alerts row (mapping access by column name)."""
    data = json.loads(payload)["entry"]
    return AlertRecord(
        id=row["id"], topic=row["topic"], channel=row["channel"], story=row["story_id"],
        title=row["title"], link=data.get("link"), feed=data.get("feed_name", ""),
        state=alert_state(row["status"], row["attempts"]), attempts=row["attempts"],
        last_error=mask_error(row["last_error"]), created_at=created_at,
        delivered_at=delivered_at)


def message_from_row(alert_id: str, topic: str, channel: str, payload: str,
                     created_at: datetime | None, outlets: list[Outlet]) -> AlertMessage:
    data = json.loads(payload)
    entry = entry_from_dict(data["entry"])
    own = (entry.feed_name, entry.title, entry.link)
    outlets = [o for o in outlets if (o.feed, o.title, o.link) != own][:OUTLETS_PER_ALERT]
    return AlertMessage(
        alert_id=alert_id, topic=topic, channel=channel, entry=entry,
        score=data["score"], hits=tuple(Hit(**h) for h in data["hits"]),
        also_reported_by=outlets, created_at=created_at, kind=data.get("kind", "story"),
        note=data.get("note", ""),
    )
