"""`watcher migrate-state`: copy a single-machine SQLite state file into PostgreSQL.

Feed state (validators, schedule, errors), seen entries, stories with their members, and
the outbox (owed, delivered and failed alerts, with their attempts) are copied, so the
nodes carry on where the single machine stopped: nothing is re-alerted and nothing owed is
lost. Leases are not copied (stop the old daemon first). Copying again is harmless: rows
already in the destination are kept as they are.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcher.store.base import StoreError, from_epoch

log = logging.getLogger("watcher.store")
BATCH = 5000


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    key: str  # the ON CONFLICT target
    order: str  # source order (stories: oldest first, so their sequence follows time)
    times: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()  # SQLite 0/1 -> boolean
    lists: frozenset[str] = frozenset()  # SQLite JSON array -> text[]


TABLES = (
    _Table("feeds", ("url", "host", "current_url", "title", "etag", "last_modified",
                     "body_hash", "primed", "last_poll_at", "last_status", "last_error",
                     "error_count", "last_success_at", "next_poll_at", "disabled_reason",
                     "entries_total", "interval_s", "active"), "url", "url",
           frozenset({"last_poll_at", "last_success_at", "next_poll_at"}),
           frozenset({"primed", "active"})),
    _Table("seen", ("feed_url", "entry_key", "canonical_link", "title_hash", "first_seen"),
           "feed_url, entry_key", "feed_url, entry_key", frozenset({"first_seen"})),
    _Table("stories", ("id", "topic", "title", "summary", "opened_at", "merged_into"), "id",
           "opened_at, rowid", frozenset({"opened_at"})),
    _Table("story_members", ("story_id", "feed_url", "entry_key", "feed_name", "title", "link",
                             "seen_at", "language"), "story_id, feed_url, entry_key", "seen_at",
           frozenset({"seen_at"})),
    # the story engine's placements, in commit order (new sequence numbers)
    _Table("story_log", ("story_id", "topic", "entry_id", "feed_url", "evidence", "seen_at"),
           "story_id, entry_id", "seq", frozenset({"seen_at"})),
    _Table("entries", ("feed_url", "entry_key", "feed_name", "title", "summary", "link",
                       "language", "published", "seen_at", "evidence"), "feed_url, entry_key",
           "seen_at", frozenset({"published", "seen_at"})),
    _Table("alerts", ("id", "topic", "channel", "story_id", "title", "payload", "status",
                      "attempts", "next_attempt_at", "last_error", "created_at",
                      "delivered_at", "sent_to", "kind"), "id", "created_at, id",
           frozenset({"next_attempt_at", "created_at", "delivered_at"}),
           lists=frozenset({"sent_to"})),
)


async def migrate_state(sqlite_path: str | Path, dst_url: str, *, password_env: str = "",
                        force: bool = False,
                        progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Copy the SQLite state file into the PostgreSQL database at `dst_url`.

    Refuses (StoreError) when the destination already holds state, unless `force`, which
    merges: rows already there win. Returns the rows copied per table.
    """
    from watcher.store.postgres import PostgresStore
    from watcher.store.sqlite import SqliteStore

    path = Path(sqlite_path)
    if not path.is_file():
        raise StoreError(f"{path}: no such state file")
    source = SqliteStore(path)
    await source.open()  # brings an older file's schema up to date
    await source.close()
    dest = PostgresStore(dst_url, password_env=password_env)
    await dest.open()
    try:
        async with dest._conn(durable=True) as conn:
            if not force:
                await _refuse_if_not_empty(conn, dest)
            counts = {}
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                for table in TABLES:
                    counts[table.name] = await _copy(db, conn, table)
                    if progress is not None:
                        progress(table.name, counts[table.name])
    finally:
        await dest.close()
    log.info("state copied", extra={"source": str(path), "store": dest.target.url, **counts})
    return counts


async def _refuse_if_not_empty(conn: Any, dest: Any) -> None:
    for table in TABLES:
        cur = await conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table.name}) AS used")
        if (await cur.fetchone())["used"]:
            raise StoreError(f"{dest.target} already holds watcher state (table "
                             f"{table.name}); copy into an empty database, or pass --force "
                             f"to merge (rows already there are kept)")


def _rows(db: sqlite3.Connection, table: _Table) -> Iterator[list[tuple[Any, ...]]]:
    cursor = db.execute(f"SELECT {', '.join(table.columns)} FROM {table.name} "
                        f"ORDER BY {table.order}")
    while batch := cursor.fetchmany(BATCH):
        yield [tuple(_convert(table, col, value) for col, value in zip(table.columns, row,
                                                                       strict=True))
               for row in batch]


def _convert(table: _Table, column: str, value: Any) -> Any:
    if column in table.times:
        return from_epoch(value)
    if column in table.flags:
        return bool(value)
    if column in table.lists:
        return json.loads(value or "[]")
    return value


async def _copy(db: sqlite3.Connection, conn: Any, table: _Table) -> int:
    """COPY the rows into a temporary table, then insert what the destination lacks."""
    columns = ", ".join(table.columns)
    await conn.execute(f"CREATE TEMPORARY TABLE incoming (LIKE {table.name})")
    if table.name in ("stories", "story_log"):
        await conn.execute("ALTER TABLE incoming ALTER COLUMN seq DROP NOT NULL")
    async with conn.cursor().copy(f"COPY incoming ({columns}) FROM STDIN") as copy:
        for batch in _rows(db, table):
            for row in batch:
                await copy.write_row(row)
    order = {"stories": " ORDER BY opened_at, id", "story_log": " ORDER BY seen_at"}.get(
        table.name, "")
    cur = await conn.execute(f"INSERT INTO {table.name} ({columns}) SELECT {columns} "
                             f"FROM incoming{order} ON CONFLICT ({table.key}) DO NOTHING")
    copied = max(cur.rowcount, 0)
    await conn.execute("DROP TABLE incoming")
    return copied
