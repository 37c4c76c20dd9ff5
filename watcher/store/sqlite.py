"""SQLite backend: one file in WAL mode, every statement on one dedicated thread."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from watcher.model import Entry, Outlet
from watcher.store.base import (
    ChannelCounts,
    Decider,
    FailedAlert,
    FeedState,
    NewStory,
    OwedAlert,
    PollRecord,
    SeenCheck,
    StoreError,
    alert_payload,
    dt,
    message_from_row,
    ts,
)

T = TypeVar("T")
DELIVERY_LEASE = 120.0  # seconds a claimed alert is ours before another process may send it

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE feeds (
        url TEXT PRIMARY KEY, current_url TEXT, title TEXT,
        etag TEXT, last_modified TEXT, body_hash TEXT, primed INTEGER NOT NULL DEFAULT 0,
        last_poll_at REAL, last_status INTEGER, last_error TEXT,
        error_count INTEGER NOT NULL DEFAULT 0, last_success_at REAL, next_poll_at REAL,
        disabled_reason TEXT, entries_total INTEGER NOT NULL DEFAULT 0, interval_s REAL,
        active INTEGER NOT NULL DEFAULT 1, lease_owner TEXT, lease_until REAL
    );
    CREATE INDEX feeds_due ON feeds (active, next_poll_at);
    CREATE TABLE seen (
        feed_url TEXT NOT NULL, entry_key TEXT NOT NULL, canonical_link TEXT,
        title_hash TEXT NOT NULL, first_seen REAL NOT NULL,
        PRIMARY KEY (feed_url, entry_key)
    ) WITHOUT ROWID;
    CREATE INDEX seen_by_link ON seen (canonical_link) WHERE canonical_link IS NOT NULL;
    CREATE TABLE stories (
        id TEXT PRIMARY KEY, topic TEXT NOT NULL, title TEXT NOT NULL, summary TEXT NOT NULL,
        opened_at REAL NOT NULL
    );
    CREATE INDEX stories_by_time ON stories (opened_at);
    CREATE TABLE story_members (
        story_id TEXT NOT NULL REFERENCES stories (id), feed_url TEXT NOT NULL,
        entry_key TEXT NOT NULL, feed_name TEXT NOT NULL, title TEXT NOT NULL, link TEXT,
        seen_at REAL NOT NULL,
        PRIMARY KEY (story_id, feed_url, entry_key)
    ) WITHOUT ROWID;
    CREATE TABLE alerts (
        id TEXT PRIMARY KEY, topic TEXT NOT NULL, channel TEXT NOT NULL,
        story_id TEXT NOT NULL, title TEXT NOT NULL, payload TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('owed', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, last_error TEXT,
        created_at REAL NOT NULL, delivered_at REAL, lease_until REAL,
        UNIQUE (topic, story_id, channel)
    );
    CREATE INDEX alerts_due ON alerts (status, next_attempt_at);
    CREATE INDEX alerts_by_time ON alerts (created_at);
    """,
]

_FEED_COLUMNS = ("url", "current_url", "title", "etag", "last_modified", "body_hash", "primed",
                 "last_poll_at", "last_status", "last_error", "error_count", "last_success_at",
                 "next_poll_at", "disabled_reason", "entries_total", "interval_s")
_TIME_COLUMNS = {"last_poll_at", "last_success_at", "next_poll_at"}


_SAVE_FEED = (
    f"INSERT INTO feeds ({','.join(_FEED_COLUMNS)}) VALUES ({','.join('?' * len(_FEED_COLUMNS))}) "
    "ON CONFLICT (url) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _FEED_COLUMNS[1:])
    + ", lease_owner = NULL, lease_until = NULL"
)


def title_hash(entry: Entry) -> str:
    return hashlib.blake2b(entry.title.encode(), digest_size=8).hexdigest()


def _feed_row(state: FeedState) -> tuple[Any, ...]:
    values = []
    for col in _FEED_COLUMNS:
        value = getattr(state, col)
        values.append(ts(value) if col in _TIME_COLUMNS else value)
    return tuple(values)


def _feed_from_row(row: sqlite3.Row) -> FeedState:
    data = {col: row[col] for col in _FEED_COLUMNS}
    for col in _TIME_COLUMNS:
        data[col] = dt(data[col])
    data["primed"] = bool(data["primed"])
    return FeedState(**data)


def _chunks(items: list[T], size: int = 500) -> Iterable[list[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class SqliteStore:
    """The embedded default store."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._story_cursor = 0  # highest stories.rowid the pipeline's index has seen

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.path}: the store is not open")
        return self._db

    # --- lifecycle ---

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
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
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open state file {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path} was written by a newer watcher (schema {version}, "
                             f"this one knows {len(MIGRATIONS)}); upgrade watcher")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._tx():
                for statement in script.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={number}")

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

    async def all_feeds(self) -> list[FeedState]:
        return await self._run(lambda: [_feed_from_row(r) for r in self.db.execute(
            "SELECT * FROM feeds ORDER BY url")])

    async def save_feed(self, state: FeedState) -> None:
        await self._run(self._save_feed, state)

    def _save_feed(self, state: FeedState) -> None:
        """Write the feed's state and release any lease on it."""
        self.db.execute(_SAVE_FEED, _feed_row(state))

    async def sync_feeds(self, urls: list[str], now: datetime, spread: float) -> None:
        await self._run(self._sync_feeds, urls, now, spread)

    def _sync_feeds(self, urls: list[str], now: datetime, spread: float) -> None:
        """Make the configured feeds the active ones; new feeds fall due within `spread` s."""
        start = ts(now) or 0.0
        with self._tx():
            self.db.execute("UPDATE feeds SET active = 0")
            self.db.executemany(
                "INSERT INTO feeds (url, next_poll_at, active) VALUES (?, ?, 1) "
                "ON CONFLICT (url) DO UPDATE SET active = 1",
                [(url, start + random.uniform(0, spread)) for url in urls])

    async def claim_due(self, node: str, now: datetime, lease: float,
                        limit: int) -> list[FeedState]:
        return await self._run(self._claim_due, node, now, lease, limit)

    def _claim_due(self, node: str, now: datetime, lease: float, limit: int) -> list[FeedState]:
        """Lease up to `limit` active feeds that are due and not leased by a live poll."""
        t = ts(now) or 0.0
        with self._tx():
            rows = self.db.execute(
                "SELECT * FROM feeds WHERE active = 1 AND disabled_reason IS NULL "
                "AND COALESCE(next_poll_at, 0) <= ? AND COALESCE(lease_until, 0) < ? "
                "ORDER BY next_poll_at LIMIT ?", (t, t, limit)).fetchall()
            self.db.executemany("UPDATE feeds SET lease_owner = ?, lease_until = ? WHERE url = ?",
                                [(node, t + lease, r["url"]) for r in rows])
        return [_feed_from_row(r) for r in rows]

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
        new: list[Entry] = []
        updated: list[Entry] = []
        for entry in entries:
            if entry.key in known:
                if known[entry.key] != title_hash(entry):
                    updated.append(entry)
            elif entry.canonical_link not in links:
                new.append(entry)
        return SeenCheck(new=new, updated=updated)

    # --- one poll, one transaction ---

    async def record_poll(self, record: PollRecord, decide: Decider | None = None) -> None:
        await self._run(self._record_poll, record, decide)

    def _record_poll(self, record: PollRecord, decide: Decider | None) -> None:
        now = ts(record.feed.last_poll_at) or 0.0
        with self._tx():  # BEGIN IMMEDIATE: the write lock is also the story lock
            if record.matches and decide is not None:
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
                [(s.id, s.topic, s.title, s.summary, ts(s.opened_at)) for s in record.stories])
            self.db.executemany(
                "INSERT OR IGNORE INTO story_members (story_id, feed_url, entry_key, feed_name, "
                "title, link, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(m.story_id, m.entry.feed_url, m.entry.key, m.entry.feed_name, m.entry.title,
                  m.entry.link, ts(m.seen_at)) for m in record.members])
            self.db.executemany(
                "INSERT OR IGNORE INTO alerts (id, topic, channel, story_id, title, payload, "
                "status, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 'owed', ?, ?)",
                [(a.id, a.topic, a.channel, a.story_id, a.entry.title, alert_payload(a),
                  ts(a.due_at), now) for a in record.alerts])

    async def open_stories(self, since: datetime) -> list[NewStory]:
        return await self._run(self._open_stories, since)

    def _open_stories(self, since: datetime) -> list[NewStory]:
        self._story_cursor = self.db.execute(
            "SELECT COALESCE(MAX(rowid), 0) FROM stories").fetchone()[0]
        rows = self.db.execute("SELECT id, topic, title, summary, opened_at FROM stories "
                               "WHERE opened_at >= ? ORDER BY opened_at", (ts(since),))
        return [NewStory(r[0], r[1], r[2], r[3], dt(r[4])) for r in rows]  # type: ignore[arg-type]

    def _fresh_stories(self) -> list[NewStory]:
        """Stories opened (by any process) since this store last looked; advances the cursor."""
        rows = self.db.execute("SELECT rowid, id, topic, title, summary, opened_at FROM stories "
                               "WHERE rowid > ? ORDER BY rowid", (self._story_cursor,)).fetchall()
        if rows:
            self._story_cursor = rows[-1][0]
        return [NewStory(r[1], r[2], r[3], r[4], dt(r[5])) for r in rows]  # type: ignore[arg-type]

    # --- outbox ---

    async def due_alerts(self, now: datetime, limit: int = 100) -> list[OwedAlert]:
        return await self._run(self._due_alerts, now, limit)

    def _due_alerts(self, now: datetime, limit: int) -> list[OwedAlert]:
        """Claim due alerts for DELIVERY_LEASE seconds, so no other process sends them too."""
        t = ts(now) or 0.0
        with self._tx():
            rows = self.db.execute(
                "SELECT id, topic, channel, story_id, payload, attempts, created_at FROM alerts "
                "WHERE status = 'owed' AND next_attempt_at <= ? AND COALESCE(lease_until, 0) < ? "
                "ORDER BY next_attempt_at LIMIT ?", (t, t, limit)).fetchall()
            self.db.executemany("UPDATE alerts SET lease_until = ? WHERE id = ?",
                                [(t + DELIVERY_LEASE, r["id"]) for r in rows])
        owed = []
        for r in rows:
            outlets = self._outlets(r["story_id"], r["payload"])
            message = message_from_row(r["id"], r["topic"], r["channel"], r["payload"],
                                       dt(r["created_at"]), outlets)
            owed.append(OwedAlert(r["id"], r["channel"], r["attempts"], message))
        return owed

    def _outlets(self, story_id: str, payload: str) -> list[Outlet]:
        """The story's other outlets, as known now (later reports show in later deliveries)."""
        rows = self.db.execute(
            "SELECT feed_name, title, link, entry_key, feed_url FROM story_members "
            "WHERE story_id = ? ORDER BY seen_at LIMIT 50", (story_id,)).fetchall()
        return [Outlet(r[0], r[1], r[2]) for r in rows[1:]]

    async def mark_delivered(self, alert_ids: list[str], at: datetime) -> None:
        await self._run(self._update_alerts, "status = 'delivered', delivered_at = ?, "
                        "attempts = attempts + 1, last_error = NULL, lease_until = NULL",
                        (ts(at),), alert_ids)

    async def mark_retry(self, alert_ids: list[str], error: str, next_at: datetime) -> None:
        await self._run(self._update_alerts, "attempts = attempts + 1, last_error = ?, "
                        "next_attempt_at = ?, lease_until = NULL", (error, ts(next_at)), alert_ids)

    async def mark_failed(self, alert_ids: list[str], error: str) -> None:
        await self._run(self._update_alerts, "status = 'failed', attempts = attempts + 1, "
                        "last_error = ?, lease_until = NULL", (error,), alert_ids)

    def _update_alerts(self, assignments: str, params: tuple[Any, ...], ids: list[str]) -> None:
        with self._tx():
            self.db.executemany(f"UPDATE alerts SET {assignments} WHERE id = ?",
                                [(*params, alert_id) for alert_id in ids])

    async def requeue_failed(self, channel: str | None, now: datetime) -> int:
        return await self._run(self._requeue_failed, channel, now)

    def _requeue_failed(self, channel: str | None, now: datetime) -> int:
        sql = "UPDATE alerts SET status = 'owed', attempts = 0, next_attempt_at = ? " \
              "WHERE status = 'failed'"
        params: list[Any] = [ts(now)]
        if channel:
            sql += " AND channel = ?"
            params.append(channel)
        with self._tx():
            return self.db.execute(sql, params).rowcount

    async def next_due_at(self) -> datetime | None:
        row = await self._run(lambda: self.db.execute(
            "SELECT MIN(next_attempt_at) FROM alerts WHERE status = 'owed'").fetchone())
        return dt(row[0])

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
        return [FailedAlert(r[0], r[1], r[2], r[3], r[4] or "", dt(r[5])) for r in rows]  # type: ignore[arg-type]

    async def alerts_since(self, since: datetime) -> dict[str, int]:
        rows = await self._run(lambda: self.db.execute(
            "SELECT topic, COUNT(DISTINCT story_id) FROM alerts WHERE created_at >= ? "
            "GROUP BY topic", (ts(since),)).fetchall())
        return {topic: n for topic, n in rows}

    async def story_outlets(self, story_id: str) -> list[Outlet]:
        return await self._run(self._outlets, story_id, "")


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
