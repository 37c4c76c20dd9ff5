"""SQLite backend: one file in WAL mode, every statement on one dedicated thread."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from watcher.http import feed_host
from watcher.model import (
    AlertRecord,
    ChannelCounts,
    Decider,
    Entry,
    FailedAlert,
    FeedState,
    NewStory,
    Outlet,
    OwedAlert,
    PollRecord,
    SeenCheck,
    StorySummary,
)
from watcher.store.base import (
    DEFAULT_NODE_TTL,
    DELIVERY_LEASE,
    STATUS_FILTER,
    StoreDamaged,
    StoreError,
    StoreFull,
    StoreLost,
    alert_payload,
    check_alert_status,
    classify_seen,
    drop_seen_elsewhere,
    from_epoch,
    log_dropped,
    match_links,
    message_from_row,
    record_from_row,
    title_hash,
    to_epoch,
)
from watcher.store.sqlite_nodes import LEASE_VOID, SqliteNodes
from watcher.store.sqlite_schema import MIGRATIONS, migrate

T = TypeVar("T")
__all__ = ["DELIVERY_LEASE", "MIGRATIONS", "SqliteStore", "title_hash"]  # title_hash: re-export

_FEED_COLUMNS = ("url", "current_url", "title", "etag", "last_modified", "body_hash", "primed",
                 "last_poll_at", "last_status", "last_error", "error_count", "last_success_at",
                 "next_poll_at", "disabled_reason", "entries_total", "interval_s")
_TIME_COLUMNS = {"last_poll_at", "last_success_at", "next_poll_at"}


_RELEASE = ("CASE WHEN :node IS NULL OR feeds.lease_owner = :node OR feeds.lease_until < :now "
            "THEN NULL ELSE feeds.{col} END")
_SAVE_FEED = (
    f"INSERT INTO feeds ({','.join(_FEED_COLUMNS)}, host) "
    f"VALUES ({','.join(':' + c for c in _FEED_COLUMNS)}, :host) "
    "ON CONFLICT (url) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*_FEED_COLUMNS[1:], "host"))
    + ", lease_owner = " + _RELEASE.format(col="lease_owner")
    + ", lease_until = " + _RELEASE.format(col="lease_until")
)




def _feed_row(state: FeedState, node: str | None) -> dict[str, Any]:
    values = {col: getattr(state, col) for col in _FEED_COLUMNS}
    for col in _TIME_COLUMNS:
        values[col] = to_epoch(values[col])
    values.update(host=feed_host(state.fetch_url), node=node,  # a result written at `now`
                  now=values["last_poll_at"] or datetime.now().timestamp())  # ends older leases
    return values


def _feed_from_row(row: sqlite3.Row) -> FeedState:
    data = {col: row[col] for col in _FEED_COLUMNS}
    for col in _TIME_COLUMNS:
        data[col] = from_epoch(data[col])
    data["primed"] = bool(data["primed"])
    return FeedState(**data)


def _chunks(items: list[T], size: int = 500) -> Iterable[list[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class SqliteStore(SqliteNodes):
    """The embedded default store."""

    def __init__(self, path: str | Path, *, node_ttl: float | None = None,
                 create: bool = True) -> None:
        self.path = Path(path)
        self.create = create  # False: a missing file is an error (read-only commands)
        self.node: str | None = None  # set by heartbeat/claim_due: owner of our leases
        self.node_ttl = node_ttl if node_ttl is not None else float(
            os.environ.get("WATCHER_NODE_TTL") or DEFAULT_NODE_TTL)
        self._last_beat = 0.0
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._story_cursor = 0  # highest stories.rowid the pipeline's index has seen
        self._identity: tuple[int, int] | None = None  # (device, inode) of the opened file

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except sqlite3.Error as exc:
            raise sqlite_error(self.path, exc) from None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.path}: the store is not open")
        return self._db

    # --- lifecycle ---

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        if not self.create and not self.path.exists():
            raise StoreError(f"no state file at {self.path}: watcher has not run with this "
                             f"config yet")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")
            self._db = db
            migrate(db, self.path)
        except sqlite3.Error as exc:
            raise sqlite_error(self.path, exc) from None
        except OSError as exc:
            raise StoreError(f"cannot open state file {self.path}: {exc.strerror or exc}"
                             ) from None
        self._identity = _file_identity(self.path)

    async def check_location(self) -> None:
        """Raise StoreLost when the state file was deleted or replaced since it was opened
        (the process would go on writing to a file nobody will ever read again)."""
        now = _file_identity(self.path)
        if now != self._identity:
            what = "deleted" if now is None else "replaced by another file"
            raise StoreLost(f"state file {self.path} was {what} while watcher was running: "
                            f"stopping so that a restart opens the file that is there now")

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)

    # --- feeds ---

    async def feed_states(self, urls: list[str]) -> dict[str, FeedState]:
        return await self._run(self._feed_states, urls)

    def _feed_states(self, urls: list[str]) -> dict[str, FeedState]:
        found: dict[str, FeedState] = {}
        for chunk in _chunks(urls):
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT * FROM feeds WHERE url IN ({marks})", chunk):
                found[row["url"]] = _feed_from_row(row)
        return {url: found.get(url) or FeedState(url=url) for url in urls}

    async def save_feed(self, state: FeedState) -> None:
        await self._run(self._save_feed, state)

    def _save_feed(self, state: FeedState) -> None:
        """Write the feed's state and release any lease on it."""
        self.db.execute(_SAVE_FEED, _feed_row(state, self.node))

    async def sync_feeds(self, urls: list[str], now: datetime, spread: float) -> None:
        await self._run(self._sync_feeds, urls, now, spread)

    def _sync_feeds(self, urls: list[str], now: datetime, spread: float) -> None:
        """Make the configured feeds the active ones; new feeds fall due within `spread` s."""
        start = to_epoch(now) or 0.0
        with self._tx():
            self.db.execute("UPDATE feeds SET active = 0")
            self.db.executemany(
                "INSERT INTO feeds (url, host, next_poll_at, active) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (url) DO UPDATE SET active = 1, "
                "host = CASE WHEN host = '' THEN excluded.host ELSE host END",
                [(url, feed_host(url), start + random.uniform(0, spread)) for url in urls])

    async def claim_due(self, node: str, now: datetime, lease: float, limit: int,
                        per_host: int | None = None) -> list[FeedState]:
        self.node = node
        return await self._run(self._claim_due, node, now, lease, limit, per_host)

    def _claim_due(self, node: str, now: datetime, lease: float, limit: int,
                   per_host: int | None) -> list[FeedState]:
        """Lease up to `limit` due feeds that no live lease holds, at most `per_host` leased
        per host (counting every process's leases), skipping hosts under a Retry-After."""
        t = to_epoch(now) or 0.0
        with self._tx():
            if t - self._last_beat >= self.node_ttl / 3:  # a claim is a sign of life
                self._last_beat = t
                self._beat(node, None, now, None)
            cursor = self.db.execute(
                "SELECT * FROM feeds WHERE active = 1 AND disabled_reason IS NULL "
                "AND COALESCE(next_poll_at, 0) <= :now AND " + LEASE_VOID.format(t="feeds")
                + " AND host NOT IN (SELECT host FROM hosts WHERE blocked_until > :now) "
                "ORDER BY next_poll_at, url" + ("" if per_host else " LIMIT :limit"),
                {"now": t, "limit": limit})
            rows = self._within_host_cap(cursor, t, limit, per_host)
            self.db.executemany("UPDATE feeds SET lease_owner = ?, lease_until = ? WHERE url = ?",
                                [(node, t + lease, r["url"]) for r in rows])
        return [_feed_from_row(r) for r in rows]

    def _within_host_cap(self, cursor: sqlite3.Cursor, now: float, limit: int,
                         per_host: int | None) -> list[sqlite3.Row]:
        if not per_host:
            return cursor.fetchall()
        busy: dict[str, int] = dict(self.db.execute(
            "SELECT host, COUNT(*) FROM feeds WHERE lease_owner IS NOT NULL AND host <> '' "
            "AND NOT " + LEASE_VOID.format(t="feeds") + " GROUP BY host", {"now": now}))
        picked = []
        for row in cursor:
            host = row["host"]
            if host and busy.get(host, 0) >= per_host:
                continue
            busy[host] = busy.get(host, 0) + 1
            picked.append(row)
            if len(picked) >= limit:
                break
        return picked

    # --- seen entries ---

    async def check_seen(self, feed_url: str, entries: list[Entry]) -> SeenCheck:
        return await self._run(self._check_seen, feed_url, entries)

    def _check_seen(self, feed_url: str, entries: list[Entry]) -> SeenCheck:
        known: dict[str, str] = {}
        links: set[str] = set()
        for chunk in _chunks(entries):
            marks = ",".join("?" * len(chunk))
            known.update(self.db.execute(
                f"SELECT entry_key, title_hash FROM seen WHERE feed_url = ? "
                f"AND entry_key IN ({marks})", [feed_url, *(e.key for e in chunk)]).fetchall())
            wanted = [e.canonical_link for e in chunk if e.canonical_link]
            if wanted:
                links.update(r[0] for r in self.db.execute(
                    f"SELECT canonical_link FROM seen WHERE canonical_link IN "
                    f"({','.join('?' * len(wanted))})", wanted))
        return classify_seen(entries, known, links)

    # --- one poll, one transaction ---

    async def record_poll(self, record: PollRecord, decide: Decider | None = None) -> None:
        await self._run(self._record_poll, record, decide)

    def _record_poll(self, record: PollRecord, decide: Decider | None) -> None:
        now = to_epoch(record.feed.last_poll_at) or 0.0
        with self._tx():  # BEGIN IMMEDIATE: the write lock is also the story lock
            if record.matches and decide is not None:
                self._drop_seen_elsewhere(record)
                decide(record, self._fresh_stories())
            self._save_feed(record.feed)
            self.db.executemany(
                "INSERT INTO seen (feed_url, entry_key, canonical_link, title_hash, first_seen) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (feed_url, entry_key) "
                "DO UPDATE SET title_hash = excluded.title_hash",
                [(record.feed.url, e.key, e.canonical_link, title_hash(e), now)
                 for e in record.seen])
            self.db.executemany(
                "INSERT OR IGNORE INTO stories (id, topic, title, summary, opened_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(s.id, s.topic, s.title, s.summary, to_epoch(s.opened_at))
                 for s in record.stories])
            self.db.executemany(
                "INSERT OR IGNORE INTO story_members (story_id, feed_url, entry_key, feed_name, "
                "title, link, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(m.story_id, m.entry.feed_url, m.entry.key, m.entry.feed_name, m.entry.title,
                  m.entry.link, to_epoch(m.seen_at)) for m in record.members])
            self.db.executemany(
                "INSERT OR IGNORE INTO alerts (id, topic, channel, story_id, title, payload, "
                "status, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 'owed', ?, ?)",
                [(a.id, a.topic, a.channel, a.story_id, a.entry.title, alert_payload(a),
                  to_epoch(a.due_at), now) for a in record.alerts])

    def _drop_seen_elsewhere(self, record: PollRecord) -> None:
        """Seen by canonical link, checked again under the write lock (another process may
        have recorded the same article from another feed since check_seen)."""
        rows: list[tuple[str, str, str]] = []
        for chunk in _chunks(match_links(record)):
            rows += self.db.execute(
                f"SELECT canonical_link, feed_url, entry_key FROM seen WHERE canonical_link "
                f"IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        log_dropped(drop_seen_elsewhere(record, rows))

    async def open_stories(self, since: datetime) -> list[NewStory]:
        return await self._run(self._open_stories, since)

    def _open_stories(self, since: datetime) -> list[NewStory]:
        self._story_cursor = self.db.execute(
            "SELECT COALESCE(MAX(rowid), 0) FROM stories").fetchone()[0]
        rows = self.db.execute("SELECT id, topic, title, summary, opened_at FROM stories "
                               "WHERE opened_at >= ? ORDER BY opened_at", (to_epoch(since),))
        return [NewStory(r[0], r[1], r[2], r[3], from_epoch(r[4])) for r in rows]

    def _fresh_stories(self) -> list[NewStory]:
        """Stories opened (by any process) since this store last looked; advances the cursor."""
        rows = self.db.execute("SELECT rowid, id, topic, title, summary, opened_at FROM stories "
                               "WHERE rowid > ? ORDER BY rowid", (self._story_cursor,)).fetchall()
        if rows:
            self._story_cursor = rows[-1][0]
        return [NewStory(r[1], r[2], r[3], r[4], from_epoch(r[5])) for r in rows]

    # --- outbox ---

    async def due_alerts(self, now: datetime, limit: int = 100) -> list[OwedAlert]:
        return await self._run(self._due_alerts, now, limit)

    def _due_alerts(self, now: datetime, limit: int) -> list[OwedAlert]:
        """Claim due alerts for DELIVERY_LEASE seconds, so no other process sends them too."""
        t = to_epoch(now) or 0.0
        with self._tx():
            rows = self.db.execute(
                "SELECT id, topic, channel, story_id, payload, attempts, created_at, sent_to "
                "FROM alerts "
                "WHERE status = 'owed' AND next_attempt_at <= :now AND "
                + LEASE_VOID.format(t="alerts") + " ORDER BY next_attempt_at, id LIMIT :limit",
                {"now": t, "limit": limit}).fetchall()
            self.db.executemany("UPDATE alerts SET lease_owner = ?, lease_until = ? WHERE id = ?",
                                [(self.node, t + DELIVERY_LEASE, r["id"]) for r in rows])
        owed = []
        for r in rows:
            outlets = self._outlets(r["story_id"])
            message = message_from_row(r["id"], r["topic"], r["channel"], r["payload"],
                                       from_epoch(r["created_at"]), outlets)
            owed.append(OwedAlert(r["id"], r["channel"], r["attempts"], message,
                                  tuple(json.loads(r["sent_to"]))))
        return owed

    def _outlets(self, story_id: str) -> list[Outlet]:
        """The story's other outlets, as known now (later reports show in later deliveries)."""
        rows = self.db.execute(
            "SELECT feed_name, title, link FROM story_members "
            "WHERE story_id = ? ORDER BY seen_at LIMIT 50", (story_id,)).fetchall()
        return [Outlet(r[0], r[1], r[2]) for r in rows[1:]]

    async def mark_delivered(self, alert_ids: list[str], at: datetime) -> None:
        await self._run(self._update_alerts, "status = 'delivered', delivered_at = ?, "
                        "attempts = attempts + 1, last_error = NULL, lease_owner = NULL, "
                        "lease_until = NULL",
                        (to_epoch(at),), alert_ids)

    async def mark_retry(self, alert_ids: list[str], error: str, next_at: datetime) -> None:
        await self._run(self._update_alerts, "attempts = attempts + 1, last_error = ?, "
                        "next_attempt_at = ?, lease_owner = NULL, lease_until = NULL",
                        (error, to_epoch(next_at)), alert_ids)

    async def mark_failed(self, alert_ids: list[str], error: str) -> None:
        await self._run(self._update_alerts, "status = 'failed', attempts = attempts + 1, "
                        "last_error = ?, lease_owner = NULL, lease_until = NULL",
                        (error,), alert_ids)

    async def note_sent(self, alert_id: str, targets: list[str]) -> None:
        """Add `targets` to the alert's done targets (a set, kept sorted)."""
        if targets:
            await self._run(lambda: self.db.execute(
                "UPDATE alerts SET sent_to = (SELECT json_group_array(value) FROM "
                "(SELECT value FROM json_each(alerts.sent_to) UNION "
                "SELECT value FROM json_each(?) ORDER BY 1)) WHERE id = ?",
                (json.dumps(list(targets)), alert_id)))

    def _update_alerts(self, assignments: str, params: tuple[Any, ...], ids: list[str]) -> None:
        """Change owed alerts only: one another process already delivered stays delivered."""
        with self._tx():
            self.db.executemany(f"UPDATE alerts SET {assignments} WHERE id = ? "
                                f"AND status = 'owed'",
                                [(*params, alert_id) for alert_id in ids])

    async def requeue_failed(self, channel: str | None, now: datetime) -> int:
        return await self._run(self._requeue_failed, channel, now)

    def _requeue_failed(self, channel: str | None, now: datetime) -> int:
        sql = "UPDATE alerts SET status = 'owed', attempts = 0, next_attempt_at = ? " \
              "WHERE status = 'failed'"
        params: list[Any] = [to_epoch(now)]
        if channel:
            sql += " AND channel = ?"
            params.append(channel)
        with self._tx():
            return self.db.execute(sql, params).rowcount

    async def next_due_at(self) -> datetime | None:
        row = await self._run(lambda: self.db.execute(
            "SELECT MIN(next_attempt_at) FROM alerts WHERE status = 'owed'").fetchone())
        return from_epoch(row[0])

    # --- status ---

    async def channel_counts(self) -> dict[str, ChannelCounts]:
        return await self._run(self._channel_counts)

    def _channel_counts(self) -> dict[str, ChannelCounts]:
        counts: dict[str, dict[str, int]] = {}
        for channel, status, n in self.db.execute(
                "SELECT channel, status, COUNT(*) FROM alerts GROUP BY channel, status"):
            counts.setdefault(channel, {})[status] = n
        return {ch: ChannelCounts(c.get("owed", 0), c.get("failed", 0), c.get("delivered", 0))
                for ch, c in counts.items()}

    async def failed_alerts(self, limit: int = 20) -> list[FailedAlert]:
        rows = await self._run(lambda: self.db.execute(
            "SELECT id, topic, channel, title, last_error, created_at FROM alerts "
            "WHERE status = 'failed' ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall())
        return [FailedAlert(r[0], r[1], r[2], r[3], r[4] or "", from_epoch(r[5])) for r in rows]

    async def alerts_since(self, since: datetime) -> dict[str, int]:
        rows = await self._run(lambda: self.db.execute(
            "SELECT topic, COUNT(DISTINCT story_id) FROM alerts WHERE created_at >= ? "
            "GROUP BY topic", (to_epoch(since),)).fetchall())
        return {topic: n for topic, n in rows}

    async def alert_history(self, *, topic: str | None = None, since: datetime | None = None,
                            status: str | None = None, limit: int = 500) -> list[AlertRecord]:
        check_alert_status(status)
        sql = ("SELECT id, topic, channel, story_id, title, payload, status, attempts, "
               "last_error, created_at, delivered_at FROM alerts WHERE 1 = 1")
        params: dict[str, Any] = {"topic": topic, "since": to_epoch(since), "limit": limit}
        if topic is not None:
            sql += " AND topic = :topic"
        if since is not None:
            sql += " AND created_at >= :since"
        sql += STATUS_FILTER.get(status or "", "")
        sql += " ORDER BY created_at DESC, id DESC LIMIT :limit"
        rows = await self._run(lambda: self.db.execute(sql, params).fetchall())
        return [record_from_row(r, r["payload"], from_epoch(r["created_at"]),
                                from_epoch(r["delivered_at"])) for r in rows]

    async def recent_stories(self, since: datetime, limit: int = 20) -> list[StorySummary]:
        rows = await self._run(lambda: self.db.execute(
            "SELECT s.topic, s.title, s.opened_at, (SELECT GROUP_CONCAT(feed_name, '\x1f') "
            "FROM (SELECT feed_name FROM story_members WHERE story_id = s.id ORDER BY seen_at)) "
            "FROM stories s WHERE s.opened_at >= ? ORDER BY s.opened_at DESC LIMIT ?",
            (to_epoch(since), limit)).fetchall())
        return [StorySummary(r[0], r[1], from_epoch(r[2]), _distinct((r[3] or "").split("\x1f")))
                for r in rows]





def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_DAMAGE_HINT = ("stop watcher and restore the file from a backup (or move it away: watcher "
                "then starts afresh, marks the feeds' backlog seen and forgets owed alerts)")


def sqlite_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """A one-line StoreError naming the file, what is wrong and what to do."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    reason = " ".join(str(exc).split())
    if name in _DAMAGED or "decode to UTF-8" in reason or "malformed" in reason:
        return StoreDamaged(f"state file {path} is damaged ({reason}): {_DAMAGE_HINT}")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in reason:
        return StoreError(f"state file {path} is locked by another process ({reason}): "
                          f"close the program holding it (a sqlite3 shell in a transaction?) "
                          f"and try again")
    if name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR") or "disk is full" in reason:
        return StoreFull(f"state file {path}: cannot write ({reason}): the disk may be full; "
                         f"free some space (watcher retries)")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
        return StoreError(f"cannot open state file {path} ({reason}): check that the file and "
                          f"its folder are writable by this user")
    return StoreError(f"state file {path}: {reason}")


def _distinct(names: list[str]) -> list[str]:
    return list(dict.fromkeys(n for n in names if n))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
