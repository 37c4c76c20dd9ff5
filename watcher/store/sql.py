"""The SQL both backends run, written once, and the store methods built on it.

Statements use named parameters (`:name`); `Dialect.render` turns them into the driver's
style (sqlite3 takes them as they are, psycopg wants `%(name)s`). Times are bound and read
through the dialect too (SQLite stores epoch seconds, PostgreSQL timestamptz). A backend
provides four primitives — `fetch`, `execute`, `execute_many` and `transaction` (several
statements, all or nothing) — and the statements that need its own features (claiming work
with SKIP LOCKED, arrays, the story cursor).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

from watcher.http import feed_host
from watcher.model import (
    AlertRecord,
    ChannelCounts,
    Entry,
    FailedAlert,
    FeedState,
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
    node_identity,
)
from watcher.store.base import (
    STATUS_FILTER,
    alert_payload,
    check_alert_status,
    classify_seen,
    from_epoch,
    message_from_row,
    record_from_row,
    title_hash,
    to_epoch,
)

T = TypeVar("T")
Row = Any  # a sqlite3.Row or a psycopg dict row: read by column name
Params = Mapping[str, Any]

FEED_COLUMNS = ("url", "current_url", "title", "etag", "last_modified", "body_hash", "primed",
                "last_poll_at", "last_status", "last_error", "error_count", "last_success_at",
                "next_poll_at", "disabled_reason", "entries_total", "interval_s")
TIME_COLUMNS = frozenset({"last_poll_at", "last_success_at", "next_poll_at"})
OUTLETS_PER_STORY = 50
CLAIM_SCAN = 4  # a claim with a per-host cap looks at most this many due rows per feed wanted

# A lease no longer holds when it has run out, or when its owner's heartbeat has expired.
LEASE_VOID = ("({t}.lease_until IS NULL OR {t}.lease_until < :now OR EXISTS "
              "(SELECT 1 FROM nodes d WHERE d.node = {t}.lease_owner AND d.expires_at < :now))")
# Writing a feed's state ends our lease on it (and any lease that ran out before the poll),
# never a newer owner's.
RELEASE = ("CASE WHEN CAST(:node AS TEXT) IS NULL OR feeds.lease_owner = :node "
           "OR feeds.lease_until < COALESCE(excluded.last_poll_at, :now) "
           "THEN NULL ELSE feeds.{col} END")
RELEASE_LEASE = (", lease_owner = " + RELEASE.format(col="lease_owner")
                 + ", lease_until = " + RELEASE.format(col="lease_until"))
SAVE_FEED = (
    f"INSERT INTO feeds ({', '.join(FEED_COLUMNS)}, host) "
    f"VALUES ({', '.join(':' + c for c in FEED_COLUMNS)}, :host) "
    "ON CONFLICT (url) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*FEED_COLUMNS[1:], "host")) + RELEASE_LEASE
)
HEARTBEAT = (
    "INSERT INTO nodes (node, config_digest, started_at, heartbeat_at, expires_at, inflight, "
    "hostname, pid) VALUES (:node, COALESCE(:fingerprint, ''), :now, :now, :expires, "
    ":inflight, :hostname, :pid) ON CONFLICT (node) DO UPDATE SET "
    "config_digest = COALESCE(:fingerprint, nodes.config_digest), "
    "heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at, "
    "inflight = COALESCE(:inflight, nodes.inflight)"
)
NODES = ("SELECT n.*, (SELECT count(*) FROM feeds f WHERE f.lease_owner = n.node "
         "AND f.lease_until >= :now) AS leased FROM nodes n ORDER BY n.node")
LEAVE = [
    "UPDATE feeds SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = :node",
    "UPDATE alerts SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = :node",
    "DELETE FROM nodes WHERE node = :node",
]
RELEASE_FEED = ("UPDATE feeds SET lease_owner = NULL, lease_until = NULL "
                "WHERE lease_owner = :node AND url = :url")
BLOCK_HOST = (
    "INSERT INTO hosts (host, blocked_until, reason) VALUES (:host, :until, :reason) "
    "ON CONFLICT (host) DO UPDATE SET blocked_until = CASE WHEN hosts.blocked_until > "
    "excluded.blocked_until THEN hosts.blocked_until ELSE excluded.blocked_until END, "
    "reason = excluded.reason"
)
# (count it as, statement); the story_members statement is for SQLite, which has no
# ON DELETE CASCADE on that table (in PostgreSQL it finds nothing the cascade would not).
PRUNE: list[tuple[str | None, str]] = [
    ("alerts", "DELETE FROM alerts WHERE status <> 'owed' AND created_at < :horizon"),
    (None, "DELETE FROM story_members WHERE story_id IN (SELECT s.id FROM stories s "
           "WHERE s.opened_at < :horizon AND NOT EXISTS "
           "(SELECT 1 FROM alerts a WHERE a.story_id = s.id) AND NOT EXISTS "
           "(SELECT 1 FROM stories m WHERE m.merged_into = s.id))"),
    # a story others were merged into stays while they do (they are listed as it)
    ("stories", "DELETE FROM stories WHERE opened_at < :horizon AND NOT EXISTS "
                "(SELECT 1 FROM alerts a WHERE a.story_id = stories.id) AND NOT EXISTS "
                "(SELECT 1 FROM stories m WHERE m.merged_into = stories.id)"),
    ("feeds", "DELETE FROM feeds WHERE active = FALSE AND lease_owner IS NULL "
              "AND (last_poll_at IS NULL OR last_poll_at < :horizon)"),
    ("seen", "DELETE FROM seen WHERE NOT EXISTS (SELECT 1 FROM feeds f "
             "WHERE f.url = seen.feed_url)"),
    ("seen", "DELETE FROM seen WHERE (feed_url, entry_key) IN (SELECT feed_url, entry_key FROM "
             "(SELECT feed_url, entry_key, row_number() OVER (PARTITION BY feed_url "
             "ORDER BY first_seen DESC, entry_key) AS rn FROM seen) ranked WHERE rn > :keep)"),
    ("nodes", "DELETE FROM nodes WHERE expires_at < :node_horizon"),
    ("entries", "DELETE FROM entries WHERE seen_at < :entries_horizon"),
    (None, "DELETE FROM story_log WHERE story_id IN (SELECT story_id FROM story_log "
           "GROUP BY story_id HAVING max(seen_at) < :horizon)"),
    ("hosts", "DELETE FROM hosts WHERE blocked_until < :now"),
]
# What one poll writes besides the feed's state (after the decision, in its transaction).
INSERT_SEEN = (
    "INSERT INTO seen (feed_url, entry_key, canonical_link, title_hash, first_seen) "
    "VALUES (:feed_url, :entry_key, :canonical_link, :title_hash, :now) "
    "ON CONFLICT (feed_url, entry_key) DO UPDATE SET title_hash = excluded.title_hash")
INSERT_STORY = ("INSERT INTO stories (id, topic, title, summary, opened_at) "
                "VALUES (:id, :topic, :title, :summary, :opened_at) ON CONFLICT DO NOTHING")
INSERT_MEMBER = (
    "INSERT INTO story_members (story_id, feed_url, entry_key, feed_name, title, link, "
    "seen_at, language) VALUES (:story_id, :feed_url, :entry_key, :feed_name, :title, :link, "
    ":seen_at, :language) ON CONFLICT DO NOTHING")
INSERT_ALERT = (
    "INSERT INTO alerts (id, topic, channel, story_id, title, payload, status, "
    "next_attempt_at, created_at, kind) VALUES (:id, :topic, :channel, :story_id, :title, "
    ":payload, 'owed', :due_at, :now, :kind) ON CONFLICT DO NOTHING")
INSERT_EVENT = (
    "INSERT INTO story_log (story_id, topic, entry_id, feed_url, evidence, seen_at) "
    "VALUES (:story_id, :topic, :entry_id, :feed_url, :evidence, :seen_at) "
    "ON CONFLICT DO NOTHING")
# A story merged into another (an entry reported both) gives up its alerts not yet tried:
# the story it joined has its own, so one story does not alert twice.
DROP_FOLDED_ALERTS = ("DELETE FROM alerts WHERE topic = :topic AND story_id = :story_id "
                      "AND status = 'owed' "
                      "AND attempts = 0 AND " + LEASE_VOID.format(t="alerts"))
# ... and its outlets are listed under the story it joined (copied: an entry keeps its row
# under the story it was placed in), which the merged story points at from now on, as do
# stories merged into it before (so a chain of merges ends at the one story listed).
FOLD_MEMBERS = (
    "INSERT INTO story_members (story_id, feed_url, entry_key, feed_name, title, link, "
    "seen_at, language) SELECT :into, feed_url, entry_key, feed_name, title, link, seen_at, "
    "language FROM story_members WHERE story_id = :story_id ON CONFLICT DO NOTHING")
FOLD_STORY = ("UPDATE stories SET merged_into = :into WHERE id = :story_id "
              "OR merged_into = :story_id")
# A new entry's text (and evidence, with its vector) for `keep_entries`: the desk reads it,
# the story engine's word statistics are rebuilt from it at a start.
INSERT_ENTRY = (
    "INSERT INTO entries (feed_url, entry_key, feed_name, title, summary, link, language, "
    "published, seen_at, evidence) VALUES (:feed_url, :entry_key, :feed_name, :title, "
    ":summary, :link, :language, :published, :now, :evidence) "
    "ON CONFLICT (feed_url, entry_key) DO UPDATE SET title = excluded.title, "
    "summary = excluded.summary, link = excluded.link, "
    "evidence = COALESCE(excluded.evidence, entries.evidence)")
EVENT_COLUMNS = "seq, story_id, topic, entry_id, feed_url, evidence, seen_at"
# Every placement of the stories touched since :since (a story about entries dated long ago
# stays as long as outlets keep joining it), in commit order.
OPEN_EVENTS = (f"SELECT {EVENT_COLUMNS} FROM story_log WHERE story_id IN "
               "(SELECT story_id FROM story_log GROUP BY story_id HAVING max(seen_at) >= :since) "
               "ORDER BY seq")
FRESH_EVENTS = f"SELECT {EVENT_COLUMNS} FROM story_log WHERE seq > :cursor ORDER BY seq"
RECENT_ENTRIES = ("SELECT feed_url, entry_key, feed_name, title, summary, link, language, "
                  "published, seen_at, evidence FROM entries WHERE seen_at >= :since "
                  "ORDER BY seen_at DESC, feed_url, entry_key LIMIT :limit")
# The outbox: only owed alerts change (one another process delivered stays delivered).
_MARK = "UPDATE alerts SET {} WHERE id = :id AND status = 'owed'"
MARK_DELIVERED = _MARK.format("status = 'delivered', delivered_at = :at, "
                              "attempts = attempts + 1, last_error = NULL, "
                              "lease_owner = NULL, lease_until = NULL")
MARK_RETRY = _MARK.format("attempts = attempts + 1, last_error = :error, "
                          "next_attempt_at = :next_at, lease_owner = NULL, lease_until = NULL")
# Alerts not tried because their channel had just failed (or is gone): they wait with it,
# their count of attempts unchanged.
MARK_DEFERRED = _MARK.format("last_error = :error, next_attempt_at = :next_at, "
                             "lease_owner = NULL, lease_until = NULL")
MARK_FAILED = _MARK.format("status = 'failed', attempts = attempts + 1, last_error = :error, "
                           "lease_owner = NULL, lease_until = NULL")
# When the next owed alert can be claimed: a live delivery lease defers it to the lease's end.
NEXT_DUE = ("SELECT min(CASE WHEN NOT " + LEASE_VOID.format(t="alerts")
            + " AND alerts.lease_until > alerts.next_attempt_at THEN alerts.lease_until "
            "ELSE alerts.next_attempt_at END) AS t FROM alerts WHERE status = 'owed'")
REQUEUE = ("UPDATE alerts SET status = 'owed', attempts = 0, next_attempt_at = :now "
           "WHERE status = 'failed'")
OUTLETS = ("SELECT story_id, feed_name, title, link, language, seen_at FROM story_members "
           "WHERE story_id IN {} "
           "ORDER BY story_id, seen_at, feed_url, entry_key")
HISTORY = ("SELECT id, topic, channel, story_id, title, payload, status, attempts, last_error, "
           "created_at, delivered_at FROM alerts WHERE 1 = 1")
RECENT_STORIES = (
    "SELECT s.id, s.topic, s.title, s.opened_at, m.feed_name FROM "
    "(SELECT id, topic, title, opened_at FROM stories WHERE opened_at >= :since "
    "AND merged_into IS NULL "
    "ORDER BY opened_at DESC, id LIMIT :limit) s "
    "LEFT JOIN story_members m ON m.story_id = s.id "
    "ORDER BY s.opened_at DESC, s.id, m.seen_at")
CHUNK = 500  # values in one IN (...) list
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Dialect:
    """How a driver spells parameters and stores times, flags and lists."""

    name = "sqlite"

    def render(self, sql: str) -> str:
        return sql

    def time(self, value: datetime | None) -> Any:
        return to_epoch(value)

    def datetime(self, value: Any) -> Any:
        return from_epoch(value)

    def texts(self, value: Any) -> list[str]:
        return list(json.loads(value or "[]"))


class PostgresDialect(Dialect):
    name = "postgresql"

    def render(self, sql: str) -> str:
        return _pyformat(sql)

    def time(self, value: datetime | None) -> Any:
        return value

    def datetime(self, value: Any) -> Any:
        return value

    def texts(self, value: Any) -> list[str]:
        return list(value or [])


@lru_cache(maxsize=4096)
def _pyformat(sql: str) -> str:
    """`:name` -> `%(name)s` (psycopg), leaving `::type` casts alone."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


def in_list(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """`(:p0, :p1, ...)` and its parameters: an IN list both drivers take."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    return "(" + ", ".join(":" + n for n in names) + ")", dict(zip(names, values, strict=True))


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def events_from_rows(rows: list[Row], dialect: Dialect) -> list[StoryEvent]:
    return [StoryEvent(r["story_id"], r["topic"], r["entry_id"], r["feed_url"], r["evidence"],
                       dialect.datetime(r["seen_at"])) for r in rows]


def stored_entry(row: Row, dialect: Dialect) -> StoredEntry:
    """A row of `entries` as a StoredEntry (its vector decoded from the evidence)."""
    vector, model = None, ""
    if row["evidence"]:
        from watcher.story.evidence import Evidence

        evidence = Evidence.from_dict(json.loads(row["evidence"]))
        vector, model = evidence.vector, evidence.model
    entry = Entry(key=row["entry_key"], guid=None, title=row["title"], link=row["link"],
                  canonical_link=None, summary=row["summary"],
                  published=dialect.datetime(row["published"]), feed_url=row["feed_url"],
                  feed_name=row["feed_name"], language=row["language"])
    return StoredEntry(entry, dialect.datetime(row["seen_at"]), vector, model)


def seen_by_link(links: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Seen entries holding these canonical links (for a poll's check inside its
    transaction: another feed or process may have recorded the article since)."""
    marks, params = in_list("l", links)
    return ("SELECT canonical_link, feed_url, entry_key FROM seen WHERE canonical_link "
            f"IN {marks}", params)


def feed_params(state: FeedState, node: str | None, now: datetime,
                dialect: Dialect) -> dict[str, Any]:
    """SAVE_FEED's parameters: a result written at `now` ends the leases older than it."""
    values: dict[str, Any] = {c: getattr(state, c) for c in FEED_COLUMNS}
    for col in TIME_COLUMNS:
        values[col] = dialect.time(values[col])
    values.update(host=feed_host(state.fetch_url), node=node,
                  now=dialect.time(state.last_poll_at or now))
    return values


def feed_from_row(row: Row, dialect: Dialect) -> FeedState:
    data = {c: row[c] for c in FEED_COLUMNS}
    for col in TIME_COLUMNS:
        data[col] = dialect.datetime(data[col])
    data["primed"] = bool(data["primed"])
    return FeedState(**data)


def poll_writes(record: PollRecord, now: datetime,
                dialect: Dialect) -> list[tuple[str, list[dict[str, Any]]]]:
    """The rows one poll inserts (seen entries, stories, members, alerts), per statement."""
    at = dialect.time(now)
    writes = [
        (INSERT_SEEN, [{"feed_url": record.feed.url, "entry_key": e.key,
                        "canonical_link": e.canonical_link, "title_hash": title_hash(e),
                        "now": at} for e in record.seen]),
        (INSERT_ENTRY, [_entry_row(e, record.evidence.get(e.id), at, dialect)
                        for e in record.seen]),
        (INSERT_STORY, [{"id": s.id, "topic": s.topic, "title": s.title, "summary": s.summary,
                         "opened_at": dialect.time(s.opened_at)} for s in record.stories]),
        (INSERT_MEMBER, [{"story_id": m.story_id, "feed_url": m.entry.feed_url,
                          "entry_key": m.entry.key, "feed_name": m.entry.feed_name,
                          "title": m.entry.title, "link": m.entry.link,
                          "seen_at": dialect.time(m.seen_at), "language": m.entry.language}
                         for m in record.members]),
        (INSERT_EVENT, [{"story_id": ev.story_id, "topic": ev.topic, "entry_id": ev.entry_id,
                         "feed_url": ev.feed_url, "evidence": ev.evidence,
                         "seen_at": dialect.time(ev.seen_at)} for ev in record.events]),
        (INSERT_ALERT, [_alert_row(a, at, dialect) for a in record.alerts]),
        (DROP_FOLDED_ALERTS, [{"topic": t, "story_id": s, "now": at}
                              for t, s, _ in record.folded]),
        (FOLD_MEMBERS, [{"story_id": s, "into": into} for _, s, into in record.folded]),
        (FOLD_STORY, [{"story_id": s, "into": into} for _, s, into in record.folded]),
    ]
    return [(sql, rows) for sql, rows in writes if rows]


def _alert_row(alert: NewAlert, now: Any, dialect: Dialect) -> dict[str, Any]:
    return {"id": alert.id, "topic": alert.topic, "channel": alert.channel,
            "story_id": alert.story_id, "title": alert.entry.title,
            "payload": alert_payload(alert), "due_at": dialect.time(alert.due_at), "now": now,
            "kind": alert.kind}


def _entry_row(entry: Entry, evidence: str | None, now: Any,
               dialect: Dialect) -> dict[str, Any]:
    return {"feed_url": entry.feed_url, "entry_key": entry.key, "feed_name": entry.feed_name,
            "title": entry.title, "summary": entry.summary, "link": entry.link,
            "language": entry.language, "published": dialect.time(entry.published),
            "now": now, "evidence": evidence}


def heartbeat_params(node: str, fingerprint: str | None, now: datetime, ttl: float,
                     inflight: int | None, dialect: Dialect) -> dict[str, Any]:
    hostname, pid = node_identity(node)
    return {"node": node, "fingerprint": fingerprint, "now": dialect.time(now),
            "expires": dialect.time(now + timedelta(seconds=ttl)), "inflight": inflight,
            "hostname": hostname, "pid": pid}


class SqlStore(ABC):
    """The store methods whose SQL is the same for every backend, over four primitives."""

    dialect: Dialect
    node: str | None
    node_ttl: float
    story_cursor: int = 0  # the newest story (rowid or seq) this store has seen

    @abstractmethod
    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """Rows of one query (mapping access by column name)."""

    @abstractmethod
    async def execute(self, sql: str, params: Params | None = None, *,
                      durable: bool = False) -> int:
        """Run one statement; the number of rows it changed. `durable`: on disk when this
        returns (PostgreSQL runs routine writes without waiting for the flush)."""

    @abstractmethod
    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        """One statement for each row, all in one durable transaction."""

    @abstractmethod
    async def transaction(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        """Several statements in one durable transaction; rows changed by each."""

    # --- feeds, seen entries, stories ---

    async def feed_states(self, urls: list[str]) -> dict[str, FeedState]:
        found: dict[str, FeedState] = {}
        for chunk in chunks(urls):
            marks, params = in_list("u", chunk)
            for row in await self.fetch(f"SELECT * FROM feeds WHERE url IN {marks}", params):
                found[row["url"]] = feed_from_row(row, self.dialect)
        return {url: found.get(url) or FeedState(url=url) for url in urls}

    async def check_seen(self, feed_url: str, entries: list[Entry]) -> SeenCheck:
        """New entries (never seen by key in this feed, nor by canonical link anywhere) and
        updated ones (a known key with another title)."""
        known: dict[str, str] = {}
        links: set[str] = set()
        for chunk in chunks(entries):
            keys, params = in_list("k", [e.key for e in chunk])
            sql = ("SELECT entry_key, title_hash, NULL AS link FROM seen "
                   f"WHERE feed_url = :feed AND entry_key IN {keys}")
            if wanted := [e.canonical_link for e in chunk if e.canonical_link]:
                marks, more = in_list("l", wanted)
                sql += (" UNION ALL SELECT NULL, NULL, canonical_link FROM seen "
                        f"WHERE canonical_link IN {marks}")
                params.update(more)
            for row in await self.fetch(sql, {**params, "feed": feed_url}):
                if row["entry_key"] is not None:
                    known[row["entry_key"]] = row["title_hash"]
                else:
                    links.add(row["link"])
        return classify_seen(entries, known, links)

    async def story_events(self, since: datetime) -> list[StoryEvent]:
        """Every placement of the stories touched since `since`, in commit order (to
        rebuild the story index at a start); later ones come through `fresh_events_query`."""
        rows = await self.fetch(OPEN_EVENTS, {"since": self.dialect.time(since)})
        top = await self.fetch("SELECT COALESCE(max(seq), 0) AS top FROM story_log")
        self.story_cursor = max(top[0]["top"], rows[-1]["seq"] if rows else 0)
        return events_from_rows(rows, self.dialect)

    def fresh_events_query(self) -> tuple[str, dict[str, Any]]:
        """Placements committed (by any process) since this store last looked; run inside
        the poll's transaction under the story lock; pass the rows to `took_fresh`."""
        return FRESH_EVENTS, {"cursor": self.story_cursor}

    def took_fresh(self, rows: list[Row]) -> list[StoryEvent]:
        """The fresh placements; advances the cursor."""
        if rows:
            self.story_cursor = rows[-1]["seq"]
        return events_from_rows(rows, self.dialect)

    async def recent_entries(self, since: datetime, limit: int = 1000) -> list[StoredEntry]:
        """New entries seen since `since` (newest first), with their vectors when embedded;
        kept for `[watcher] keep_entries`."""
        rows = await self.fetch(RECENT_ENTRIES, {"since": self.dialect.time(since),
                                                 "limit": limit})
        return [stored_entry(r, self.dialect) for r in rows]

    async def recent_evidence(self, since: datetime, limit: int) -> list[str]:
        """The stored evidence (JSON) of the newest entries since `since`: the story
        engine's word statistics are rebuilt from it at a start."""
        rows = await self.fetch("SELECT evidence FROM entries WHERE seen_at >= :since AND "
                                "evidence IS NOT NULL ORDER BY seen_at DESC LIMIT :limit",
                                {"since": self.dialect.time(since), "limit": limit})
        return [r["evidence"] for r in rows]

    # --- outbox ---

    async def mark_delivered(self, alert_ids: list[str], at: datetime) -> None:
        at_ = self.dialect.time(at)
        await self.execute_many(MARK_DELIVERED, [{"id": i, "at": at_} for i in alert_ids])

    async def mark_retry(self, alert_ids: list[str], error: str, next_at: datetime, *,
                         tried: bool = True) -> None:
        when = self.dialect.time(next_at)
        await self.execute_many(MARK_RETRY if tried else MARK_DEFERRED,
                                [{"id": i, "error": error, "next_at": when} for i in alert_ids])

    async def mark_failed(self, alert_ids: list[str], error: str) -> None:
        await self.execute_many(MARK_FAILED, [{"id": i, "error": error} for i in alert_ids])

    async def requeue_failed(self, channel: str | None, now: datetime) -> int:
        sql = REQUEUE + (" AND channel = :channel" if channel else "")
        return await self.execute(sql, {"now": self.dialect.time(now), "channel": channel},
                                  durable=True)

    async def next_due_at(self, now: datetime) -> datetime | None:
        rows = await self.fetch(NEXT_DUE, {"now": self.dialect.time(now)})
        return self.dialect.datetime(rows[0]["t"]) if rows else None

    async def outlets(self, story_ids: list[str]) -> dict[str, list[Outlet]]:
        """Each story's outlets, as known now (an alert held for `group_wait` lists those
        that joined meanwhile): the first OUTLETS_PER_STORY + 1 members; each alert leaves
        out its own entry (`message_from_row`)."""
        members: dict[str, list[Outlet]] = {}
        for chunk in chunks(list(dict.fromkeys(story_ids))):
            marks, params = in_list("s", chunk)
            for r in await self.fetch(OUTLETS.format(marks), params):
                found = members.setdefault(r["story_id"], [])
                if len(found) <= OUTLETS_PER_STORY:
                    found.append(Outlet(r["feed_name"], r["title"], r["link"],
                                        r["language"] or "",
                                        self.dialect.datetime(r["seen_at"])))
        return members

    def owed(self, rows: list[Row], outlets: dict[str, list[Outlet]]) -> list[OwedAlert]:
        """OwedAlerts from claimed alert rows (id, topic, channel, story_id, payload,
        attempts, created_at, sent_to)."""
        return [OwedAlert(r["id"], r["channel"], r["attempts"], message_from_row(
            r["id"], r["topic"], r["channel"], r["payload"], self.dialect.datetime(
                r["created_at"]), outlets.get(r["story_id"], [])),
            tuple(self.dialect.texts(r["sent_to"]))) for r in rows]

    # --- status ---

    async def channel_counts(self) -> dict[str, ChannelCounts]:
        counts: dict[str, dict[str, int]] = {}
        for r in await self.fetch("SELECT channel, status, count(*) AS n FROM alerts "
                                  "GROUP BY channel, status"):
            counts.setdefault(r["channel"], {})[r["status"]] = r["n"]
        return {ch: ChannelCounts(c.get("owed", 0), c.get("failed", 0), c.get("delivered", 0))
                for ch, c in counts.items()}

    async def failed_alerts(self, limit: int = 20) -> list[FailedAlert]:
        rows = await self.fetch(
            "SELECT id, topic, channel, title, last_error, created_at FROM alerts "
            "WHERE status = 'failed' ORDER BY created_at DESC LIMIT :limit", {"limit": limit})
        return [FailedAlert(r["id"], r["topic"], r["channel"], r["title"], r["last_error"] or "",
                            self.dialect.datetime(r["created_at"])) for r in rows]

    async def alerts_since(self, since: datetime) -> dict[str, int]:
        rows = await self.fetch(
            "SELECT topic, count(DISTINCT story_id) AS n FROM alerts "
            "WHERE created_at >= :since GROUP BY topic", {"since": self.dialect.time(since)})
        return {r["topic"]: r["n"] for r in rows}

    async def alert_history(self, *, topic: str | None = None, since: datetime | None = None,
                            status: str | None = None, limit: int = 500) -> list[AlertRecord]:
        check_alert_status(status)
        sql = HISTORY
        if topic is not None:
            sql += " AND topic = :topic"
        if since is not None:
            sql += " AND created_at >= :since"
        sql += STATUS_FILTER.get(status or "", "")
        sql += " ORDER BY created_at DESC, id DESC LIMIT :limit"
        rows = await self.fetch(sql, {"topic": topic, "since": self.dialect.time(since),
                                      "limit": limit})
        return [record_from_row(r, r["payload"], self.dialect.datetime(r["created_at"]),
                                self.dialect.datetime(r["delivered_at"])) for r in rows]

    async def recent_stories(self, since: datetime, limit: int = 20) -> list[StorySummary]:
        stories: dict[str, tuple[Row, list[str]]] = {}
        for r in await self.fetch(RECENT_STORIES, {"since": self.dialect.time(since),
                                                   "limit": limit}):
            _, outlets = stories.setdefault(r["id"], (r, []))
            if r["feed_name"] and r["feed_name"] not in outlets:
                outlets.append(r["feed_name"])
        return [StorySummary(r["topic"], r["title"], self.dialect.datetime(r["opened_at"]),
                             outlets) for r, outlets in stories.values()]

    # --- nodes, hosts, housekeeping ---

    async def heartbeat(self, node: str, config_fingerprint: str, now: datetime,
                        inflight: int | None = None) -> None:
        """Record that `node` is alive, with its config's fingerprint and its polls in flight."""
        self.node = node
        await self.execute(HEARTBEAT, heartbeat_params(node, config_fingerprint, now,
                                                       self.node_ttl, inflight, self.dialect))

    async def nodes(self) -> list[NodeInfo]:
        d = self.dialect
        rows = await self.fetch(NODES, {"now": d.time(datetime.now(UTC))})
        return [NodeInfo(r["node"], d.datetime(r["heartbeat_at"]), d.datetime(r["expires_at"]),
                         r["config_digest"], r["leased"], d.datetime(r["started_at"]),
                         r["inflight"], r["hostname"], r["pid"]) for r in rows]

    async def leave(self, node: str) -> None:
        """A clean stop: release the node's leases at once and forget it."""
        await self.transaction([(sql, {"node": node}) for sql in LEAVE])

    async def release(self, node: str, urls: list[str]) -> None:
        """Give up `node`'s leases on these feeds (polls whose result could not be written)."""
        if urls:
            await self.execute_many(RELEASE_FEED, [{"node": node, "url": u} for u in urls])

    async def block_host(self, host: str, until: datetime, reason: str = "") -> None:
        """No process polls `host` before `until` (a 429/503 Retry-After applies to all)."""
        if host:
            await self.execute(BLOCK_HOST, {"host": host, "until": self.dialect.time(until),
                                            "reason": reason})

    async def blocked_hosts(self, now: datetime) -> dict[str, datetime]:
        rows = await self.fetch("SELECT host, blocked_until FROM hosts WHERE blocked_until > "
                                ":now ORDER BY host", {"now": self.dialect.time(now)})
        return {r["host"]: self.dialect.datetime(r["blocked_until"]) for r in rows}

    async def prune(self, now: datetime, *, stories_older_than: timedelta = timedelta(days=30),
                    keep_seen_per_feed: int = 2000,
                    nodes_older_than: timedelta = timedelta(days=1),
                    keep_entries: timedelta = timedelta(days=14)) -> PruneCounts:
        """Delete what can never matter again (see docs/scaling-out.md, "Housekeeping")."""
        d = self.dialect
        params = {"now": d.time(now), "horizon": d.time(now - stories_older_than),
                  "keep": keep_seen_per_feed, "node_horizon": d.time(now - nodes_older_than),
                  "entries_horizon": d.time(now - keep_entries)}
        done = await self.transaction([(sql, params) for _, sql in PRUNE])
        counts = dict.fromkeys(PruneCounts.__struct_fields__, 0)
        for (name, _), n in zip(PRUNE, done, strict=True):
            if name is not None:
                counts[name] += max(n, 0)
        return PruneCounts(**counts)
