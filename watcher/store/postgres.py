"""PostgreSQL backend: several watcher nodes share one database.

Work is shared through the database: `claim_due` leases a batch of due feeds with
SELECT ... FOR UPDATE SKIP LOCKED and an expiry, `due_alerts` does the same for the outbox.
A lease also ends when its owner's heartbeat expires (a node killed with -9), so the other
nodes pick its feeds and alerts up within the node TTL. Story decisions are serialised by
a transaction-scoped advisory lock, and alerts carry UNIQUE (topic, story_id, channel).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from watcher.http import feed_host
from watcher.model import (
    Decider,
    FeedState,
    OwedAlert,
    PollRecord,
    StoryEvent,
)
from watcher.store import pg_schema
from watcher.store.base import (
    DEFAULT_NODE_TTL,
    DELIVERY_LEASE,
    StoreError,
    StoreFull,
    drop_seen_elsewhere,
    log_dropped,
    match_links,
)
from watcher.store.pg_batch import SAVE_FEEDS, FeedWriter, batch_params
from watcher.store.pg_sql import CLAIM_ALERTS, CLAIM_DUE, SYNC_FEEDS
from watcher.store.sql import (
    CLAIM_SCAN,
    HEARTBEAT,
    SAVE_FEED,
    Params,
    PostgresDialect,
    Row,
    SqlStore,
    chunks,
    feed_from_row,
    feed_params,
    heartbeat_params,
    poll_writes,
    seen_by_link,
)

log = logging.getLogger("watcher.store")
FOREVER = 2**31 - 1
CONNECT_TIMEOUT = 10  # seconds to reach the server at open
ACQUIRE_TIMEOUT = 15.0  # seconds a call waits for a pooled connection before giving up


def _utcnow() -> datetime:
    return datetime.now(UTC)


DIALECT = PostgresDialect()
render = DIALECT.render


def _feed(row: Row) -> FeedState:
    return feed_from_row(row, DIALECT)


class PostgresStore(SqlStore):
    """The shared store for several nodes (see docs/scaling-out.md)."""

    dialect = DIALECT

    def __init__(self, url: str, *, password_env: str = "", node_ttl: float | None = None,
                 pool_size: int = 10) -> None:
        self.target = pg_schema.describe(url)
        self._url = url
        self._password_env = password_env
        self.node_ttl = node_ttl if node_ttl is not None else float(
            os.environ.get("WATCHER_NODE_TTL") or DEFAULT_NODE_TTL)
        self.pool_size = pool_size
        self.node: str | None = None  # set by heartbeat/claim_due: owner of our leases
        self._pool: AsyncConnectionPool | None = None
        self._last_beat = 0.0
        self.server_version = 0
        self._checking: asyncio.Future[None] | None = None
        self._deciding = asyncio.Lock()  # see record_poll
        self._writer = FeedWriter(self._save_feeds)

    def __repr__(self) -> str:
        return f"PostgresStore({self.target.url!r})"

    # --- lifecycle ---

    async def open(self) -> None:
        kwargs = pg_schema.connect_kwargs(self._url, self._password_env)
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, **kwargs)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.target}: {_reason(exc)}") from None
        try:
            self.server_version = conn.info.server_version
            pg_schema.check_server_version(self.server_version, self.target)
            await pg_schema.migrate(conn, self.target)
        except psycopg.Error as exc:
            raise StoreError(f"{self.target}: cannot prepare the schema: {_reason(exc)}") \
                from None
        finally:
            await conn.close()
        self._pool = AsyncConnectionPool(
            self._url, kwargs={**kwargs, "autocommit": True, "row_factory": dict_row,
                               "connect_timeout": CONNECT_TIMEOUT},
            min_size=1, max_size=self.pool_size, open=False, configure=_configure,
            timeout=ACQUIRE_TIMEOUT, name="watcher")
        await self._pool.open(wait=False)
        log.info("state store opened", extra={"store": self.target.url,
                                              "server": self.server_version})

    async def check_location(self) -> None:
        """A database cannot be deleted under an open connection unnoticed: nothing to do."""

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _conn(self, durable: bool = False) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; with `durable`, inside a transaction committed to disk."""
        if self._pool is None:
            raise StoreError(f"{self.target}: the store is not open")
        try:
            async with self._pool.connection() as conn:
                if not durable:
                    yield conn
                    return
                async with conn.transaction():
                    await conn.execute("SET LOCAL synchronous_commit = on")
                    yield conn
        except PoolTimeout:
            raise StoreError(f"{self.target}: no database connection within "
                             f"{ACQUIRE_TIMEOUT:.0f}s (server down or unreachable?)") from None
        except psycopg.OperationalError as exc:
            self._check_pool()
            raise StoreError(f"{self.target}: database connection lost: {_reason(exc)}") \
                from None
        except psycopg.Error as exc:  # e.g. a deadlock or serialization failure: retry later
            if (exc.sqlstate or "").startswith("53"):  # insufficient resources: disk full...
                raise StoreFull(f"{self.target}: the server cannot write "
                                f"({type(exc).__name__}: {_reason(exc)}): free space on the "
                                f"database server (watcher retries)") from None
            raise StoreError(f"{self.target}: {type(exc).__name__}: {_reason(exc)}") from None

    def _check_pool(self) -> None:
        """After a lost connection: let the pool drop its other broken idle connections."""
        if self._pool is not None and (self._checking is None or self._checking.done()):
            self._checking = asyncio.ensure_future(self._pool.check())

    # --- the primitives of SqlStore ---

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        async with self._conn() as conn:
            cur = await conn.execute(render(sql), params or {})
            return await cur.fetchall()

    async def execute(self, sql: str, params: Params | None = None, *,
                      durable: bool = False) -> int:
        async with self._conn(durable=durable) as conn:
            cur = await conn.execute(render(sql), params or {})
            return max(cur.rowcount, 0)

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        if rows:
            async with self._conn(durable=True) as conn:
                await conn.cursor().executemany(render(sql), rows)

    async def transaction(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        async with self._conn(durable=True) as conn:
            return [max((await conn.execute(render(sql), params)).rowcount, 0)
                    for sql, params in statements]

    # --- feeds ---

    async def save_feed(self, state: FeedState) -> None:
        """Write the feed's state and release our lease on it (not a newer owner's).

        Writes arriving together are grouped into one statement (pg_batch.FeedWriter)."""
        await self._writer.save(state)

    async def _save_feeds(self, states: list[FeedState]) -> None:
        async with self._conn() as conn:
            await conn.execute(SAVE_FEEDS, batch_params(states, self.node, _utcnow()))

    async def sync_feeds(self, urls: list[str], now: datetime, spread: float) -> None:
        """Make the configured feeds the active ones; new feeds fall due within `spread` s."""
        hosts = [feed_host(u) for u in urls]
        async with self._conn(durable=True) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (pg_schema.CLAIM_LOCK,))
            await conn.execute(SYNC_FEEDS, {"urls": urls, "hosts": hosts, "now": now,
                                            "spread": spread})
            # a claim finds due feeds by a range of feeds_due, which NULL would escape
            await conn.execute("UPDATE feeds SET next_poll_at = '-infinity' "
                               "WHERE active AND next_poll_at IS NULL")

    async def claim_due(self, node: str, now: datetime, lease: float, limit: int,
                        per_host: int | None = None) -> list[FeedState]:
        """Lease up to `limit` due feeds, at most `per_host` leased per host cluster-wide.

        Claims are serialised by an advisory lock (so per-host counts are exact); rows a
        concurrent writer holds are skipped (FOR UPDATE SKIP LOCKED). A claim also counts
        as a sign of life for `node` (its heartbeat row is refreshed every few seconds).
        """
        self.node = node
        params = {"node": node, "now": now, "until": now + timedelta(seconds=lease),
                  "limit": limit, "per_host": per_host or FOREVER,
                  "scan": limit * CLAIM_SCAN if per_host else limit}
        async with self._conn() as conn, conn.pipeline(), conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (pg_schema.CLAIM_LOCK,))
            await self._touch(conn, node, now)
            cur = await conn.execute(CLAIM_DUE, params)
            rows = await cur.fetchall()
        rows.sort(key=lambda r: r["next_poll_at"] or now)
        return [_feed(r) for r in rows]

    # --- one poll, one transaction ---

    async def record_poll(self, record: PollRecord, decide: Decider | None = None,
                          undo: Callable[[PollRecord], None] | None = None) -> None:
        if not (record.matches and decide is not None):
            await self._record_poll(record, None)
            return
        # this process's polls decide one at a time until a failed one is undone (the
        # advisory lock is gone with the failed transaction, before `undo` could run)
        async with self._deciding:
            try:
                await self._record_poll(record, decide)
            except BaseException:
                if undo is not None:
                    undo(record)
                raise

    async def _record_poll(self, record: PollRecord, decide: Decider | None) -> None:
        now = record.feed.last_poll_at or _utcnow()
        async with self._conn(durable=True) as conn:
            if (record.matches and decide is not None) or record.stories or record.events:
                # The story lock: one node at a time decides, seeing every story committed
                # before it (so two nodes that both see a story cannot both alert on it).
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (pg_schema.STORY_LOCK,))
                if record.matches and decide is not None:
                    await self._drop_seen_elsewhere(conn, record)
                    decide(record, await self._fresh_stories(conn))
            await self._write_poll(conn, record, now)

    async def _drop_seen_elsewhere(self, conn: psycopg.AsyncConnection[Any],
                                   record: PollRecord) -> None:
        """Seen by canonical link, checked again under the story lock: every poll that
        alerts holds it, and this statement sees what the polls before it committed."""
        rows: list[tuple[str, str, str]] = []
        for chunk in chunks(match_links(record)):
            sql, params = seen_by_link(chunk)
            cur = await conn.execute(render(sql), params)
            rows += [(r["canonical_link"], r["feed_url"], r["entry_key"])
                     for r in await cur.fetchall()]
        log_dropped(drop_seen_elsewhere(record, rows))

    async def _write_poll(self, conn: psycopg.AsyncConnection[Any], record: PollRecord,
                          now: datetime) -> None:
        async with conn.pipeline():
            await conn.execute(render(SAVE_FEED),
                               feed_params(record.feed, self.node, _utcnow(), DIALECT))
            cur = conn.cursor()
            for sql, rows in poll_writes(record, now, DIALECT):
                await cur.executemany(render(sql), rows)

    async def _fresh_stories(self, conn: psycopg.AsyncConnection[Any]) -> list[StoryEvent]:
        """Story placements committed (by any node) since this store last looked. Every
        placement is inserted under the story lock, so sequence order is commit order and a
        cursor on `seq` misses nothing."""
        sql, params = self.fresh_events_query()
        cur = await conn.execute(render(sql), params)
        return self.took_fresh(await cur.fetchall())

    async def _touch(self, conn: psycopg.AsyncConnection[Any], node: str, now: datetime) -> None:
        """Refresh the node's liveness at most every third of its TTL (cheap sign of life)."""
        if now.timestamp() - self._last_beat < self.node_ttl / 3:
            return
        self._last_beat = now.timestamp()
        await conn.execute(render(HEARTBEAT), heartbeat_params(node, None, now, self.node_ttl,
                                                               None, DIALECT))

    # --- outbox ---

    async def due_alerts(self, now: datetime, limit: int = 100) -> list[OwedAlert]:
        """Claim due alerts for DELIVERY_LEASE seconds (or until our heartbeat expires)."""
        params = {"now": now, "limit": limit, "node": self.node,
                  "until": now + timedelta(seconds=DELIVERY_LEASE)}
        async with self._conn() as conn:
            cur = await conn.execute(CLAIM_ALERTS, params)
            rows = await cur.fetchall()
        rows.sort(key=lambda r: (r["next_attempt_at"], r["id"]))
        return self.owed(rows, await self.outlets(list({r["story_id"] for r in rows})))

    async def note_sent(self, alert_id: str, targets: list[str]) -> None:
        """Add `targets` to the alert's done targets (a set, kept sorted), durably."""
        if targets:
            await self.execute(
                "UPDATE alerts SET sent_to = ARRAY(SELECT DISTINCT t FROM "
                "unnest(sent_to || CAST(:targets AS text[])) AS t ORDER BY t) WHERE id = :id",
                {"targets": list(targets), "id": alert_id}, durable=True)


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """Per connection: UTC timestamps; feed-state writes need not wait for the disk flush
    (a lost lease or poll result only means a feed is polled again; record_poll and the
    outbox marks switch synchronous_commit back on for their transactions)."""
    await conn.execute("SET TIME ZONE 'UTC'")
    await conn.execute("SET synchronous_commit = off")


def _reason(exc: BaseException) -> str:
    """libpq's message, on one line (it never contains the password)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())
