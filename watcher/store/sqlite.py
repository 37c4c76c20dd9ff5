"""SQLite backend: one file in WAL mode, every statement on one dedicated thread."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from watcher.http import feed_host
from watcher.model import Decider, FeedState, OwedAlert, PollRecord, StoryEvent
from watcher.store.base import (
    DEFAULT_NODE_TTL,
    DELIVERY_LEASE,
    StoreDamaged,
    StoreError,
    StoreFull,
    StoreLost,
    drop_seen_elsewhere,
    from_epoch,
    log_dropped,
    match_links,
    title_hash,
    to_epoch,
)
from watcher.store.pg_batch import FeedWriter
from watcher.store.sql import (
    CLAIM_SCAN,
    HEARTBEAT,
    LEASE_VOID,
    SAVE_FEED,
    Dialect,
    Params,
    Row,
    SqlStore,
    chunks,
    feed_from_row,
    feed_params,
    heartbeat_params,
    poll_writes,
    seen_by_link,
)
from watcher.store.sqlite_schema import MIGRATIONS, migrate

T = TypeVar("T")
__all__ = ["DELIVERY_LEASE", "MIGRATIONS", "SqliteStore", "title_hash"]  # title_hash: re-export
DIALECT = Dialect()
# The hosts' live leases (every process's), from the partial index feeds_leased.
BUSY_HOSTS = ("SELECT host, COUNT(*) FROM feeds WHERE lease_owner IS NOT NULL AND host <> '' "
              "AND NOT " + LEASE_VOID.format(t="feeds") + " GROUP BY host")
# Due feeds in order (url, host), by a range of the index feeds_due; hosts under a
# Retry-After and hosts at their cap (:capped, a JSON list) skipped. Only these two columns
# are read for the scan: the rows a claim leases are read whole afterwards (LEASED_ROWS).
DUE_FEEDS = ("SELECT url, host FROM feeds WHERE active = 1 AND next_poll_at <= :now "
             "AND disabled_reason IS NULL AND " + LEASE_VOID.format(t="feeds")
             + " AND host NOT IN (SELECT host FROM hosts WHERE blocked_until > :now)"
             " AND host NOT IN (SELECT value FROM json_each(:capped)) ORDER BY next_poll_at")
LEASED_ROWS = "SELECT * FROM feeds WHERE url IN (SELECT value FROM json_each(:urls))"


class SqliteStore(SqlStore):
    """The embedded default store."""

    dialect = DIALECT

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
        self._identity: tuple[int, int] | None = None  # (device, inode) of the opened file
        # save_feed calls arriving together (a round's 304s) are one transaction
        self._writer = FeedWriter(lambda states: self._run(self._save_feeds, states))

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

    # --- the primitives of SqlStore (each call one hop to the SQLite thread) ---

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        return await self._run(lambda: self.db.execute(sql, params or {}).fetchall())

    async def execute(self, sql: str, params: Params | None = None, *,
                      durable: bool = False) -> int:
        return await self._run(lambda: self.db.execute(sql, params or {}).rowcount)

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        if rows:
            await self._run(self._many, sql, rows)

    def _many(self, sql: str, rows: Sequence[Params]) -> None:
        with self._tx():
            self.db.executemany(sql, rows)

    async def transaction(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        return await self._run(self._script, statements)

    def _script(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        with self._tx():
            return [self.db.execute(sql, params).rowcount for sql, params in statements]

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

    async def save_feed(self, state: FeedState) -> None:
        """Write the feed's state and release any lease on it; returns once committed
        (writes arriving meanwhile are committed with it, in one transaction)."""
        await self._writer.save(state)

    def _save_feeds(self, states: list[FeedState]) -> None:
        now = datetime.now(UTC)
        with self._tx():
            self.db.executemany(SAVE_FEED, [feed_params(s, self.node, now, DIALECT)
                                            for s in states])

    def _save_feed(self, state: FeedState) -> None:
        """Write the feed's state and release any lease on it."""
        self.db.execute(SAVE_FEED, feed_params(state, self.node, datetime.now(UTC), DIALECT))

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
            # a claim finds due feeds by a range of feeds_due, which NULL would escape
            self.db.execute("UPDATE feeds SET next_poll_at = 0 WHERE active = 1 "
                            "AND next_poll_at IS NULL")

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
                self.db.execute(HEARTBEAT, heartbeat_params(node, None, now, self.node_ttl,
                                                            None, DIALECT))
            busy: dict[str, int] = dict(self.db.execute(BUSY_HOSTS, {"now": t})) \
                if per_host else {}
            capped = [host for host, n in busy.items() if per_host and n >= per_host]
            cursor = self.db.cursor()
            cursor.row_factory = None  # plain (url, host) tuples: the scan's rows are many
            cursor.execute(DUE_FEEDS + " LIMIT :limit", {
                "now": t, "capped": json.dumps(capped),
                "limit": limit * CLAIM_SCAN if per_host else limit})
            urls = _within_host_cap(cursor, busy, limit, per_host)
            self.db.executemany("UPDATE feeds SET lease_owner = ?, lease_until = ? WHERE url = ?",
                                [(node, t + lease, url) for url in urls])
            rows = {r["url"]: r for r in self.db.execute(LEASED_ROWS,
                                                         {"urls": json.dumps(urls)})}
        return [feed_from_row(rows[url], DIALECT) for url in urls]

    # --- one poll, one transaction ---

    async def record_poll(self, record: PollRecord, decide: Decider | None = None,
                          undo: Callable[[PollRecord], None] | None = None) -> None:
        await self._run(self._record_poll, record, decide, undo)

    def _record_poll(self, record: PollRecord, decide: Decider | None,
                     undo: Callable[[PollRecord], None] | None) -> None:
        now = to_epoch(record.feed.last_poll_at) or 0.0
        decided = False
        try:
            with self._tx():  # BEGIN IMMEDIATE: the write lock is also the story lock
                if record.matches and decide is not None:
                    self._drop_seen_elsewhere(record)
                    decided = True
                    decide(record, self._fresh_stories())
                self._save_feed(record.feed)
                for sql, rows in poll_writes(record, record.feed.last_poll_at
                                             or from_epoch(now), DIALECT):
                    self.db.executemany(sql, rows)
        except BaseException:
            if decided and undo is not None:  # on this thread: no other poll decides first
                undo(record)
            raise

    def _drop_seen_elsewhere(self, record: PollRecord) -> None:
        """Seen by canonical link, checked again under the write lock (another process may
        have recorded the same article from another feed since check_seen)."""
        rows: list[tuple[str, str, str]] = []
        for chunk in chunks(match_links(record)):
            sql, params = seen_by_link(chunk)
            rows += [tuple(r) for r in self.db.execute(sql, params)]
        log_dropped(drop_seen_elsewhere(record, rows))

    def _fresh_stories(self) -> list[StoryEvent]:
        """Story placements (by any process) since this store last looked."""
        sql, params = self.fresh_events_query()
        return self.took_fresh(self.db.execute(sql, params).fetchall())

    # --- outbox ---

    async def due_alerts(self, now: datetime, limit: int = 100) -> list[OwedAlert]:
        rows = await self._run(self._claim_alerts, now, limit)
        return self.owed(rows, await self.outlets([r["story_id"] for r in rows]))

    def _claim_alerts(self, now: datetime, limit: int) -> list[Row]:
        """Claim due alerts for DELIVERY_LEASE seconds, so no other process sends them too."""
        t = to_epoch(now)
        with self._tx():
            rows = self.db.execute(
                "SELECT id, topic, channel, story_id, payload, attempts, created_at, sent_to "
                "FROM alerts WHERE status = 'owed' AND next_attempt_at <= :now AND "
                + LEASE_VOID.format(t="alerts") + " ORDER BY next_attempt_at, id LIMIT :limit",
                {"now": t, "limit": limit}).fetchall()
            self.db.executemany("UPDATE alerts SET lease_owner = ?, lease_until = ? WHERE id = ?",
                                [(self.node, t + DELIVERY_LEASE, r["id"]) for r in rows])
        return rows

    async def note_sent(self, alert_id: str, targets: list[str]) -> None:
        """Add `targets` to the alert's done targets (a set, kept sorted)."""
        if targets:
            await self.execute(
                "UPDATE alerts SET sent_to = (SELECT json_group_array(value) FROM "
                "(SELECT value FROM json_each(alerts.sent_to) UNION "
                "SELECT value FROM json_each(:targets) ORDER BY 1)) WHERE id = :id",
                {"targets": json.dumps(list(targets)), "id": alert_id})


def _within_host_cap(cursor: sqlite3.Cursor, busy: dict[str, int], limit: int,
                     per_host: int | None) -> list[str]:
    """The URLs of up to `limit` of the due (url, host) rows, at most `per_host` leased per
    host (with `busy`, the leases the hosts have). The scan is bounded (CLAIM_SCAN rows per
    feed wanted): rows a host at its cap keeps from being claimed now are left for the next
    claim, which skips that host in SQL."""
    if not per_host:
        return [url for url, _ in cursor]
    picked = []
    for url, host in cursor:
        if host and busy.get(host, 0) >= per_host:
            continue
        busy[host] = busy.get(host, 0) + 1
        picked.append(url)
        if len(picked) >= limit:
            break
    return picked


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


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
