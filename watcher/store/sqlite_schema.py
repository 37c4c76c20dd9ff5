"""SQLite: versioned schema migrations (PRAGMA user_version counts the steps applied)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from watcher.http import feed_host
from watcher.store.base import StoreError

Migration = str | Callable[[sqlite3.Connection], None]


def _backfill_hosts(db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT url, COALESCE(current_url, url) FROM feeds").fetchall()
    db.executemany("UPDATE feeds SET host = ? WHERE url = ?",
                   [(feed_host(fetch_url), url) for url, fetch_url in rows])


MIGRATIONS: list[Migration] = [
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
    # 2: several processes: per-host politeness, node heartbeats, alert lease owners
    """
    ALTER TABLE feeds ADD COLUMN host TEXT NOT NULL DEFAULT '';
    ALTER TABLE alerts ADD COLUMN lease_owner TEXT;
    CREATE INDEX feeds_leased ON feeds (host) WHERE lease_owner IS NOT NULL;
    CREATE TABLE nodes (
        node TEXT PRIMARY KEY, config_digest TEXT NOT NULL DEFAULT '',
        started_at REAL NOT NULL, heartbeat_at REAL NOT NULL, expires_at REAL NOT NULL,
        inflight INTEGER
    );
    CREATE TABLE hosts (
        host TEXT PRIMARY KEY, blocked_until REAL NOT NULL, reason TEXT NOT NULL DEFAULT ''
    );
    """,
    _backfill_hosts,
    # 4: targets an alert already reached (Apprise: no re-send after a restart); the host
    # and pid of a node (a node of this host whose process is gone is dead at once)
    """
    ALTER TABLE alerts ADD COLUMN sent_to TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE nodes ADD COLUMN hostname TEXT;
    ALTER TABLE nodes ADD COLUMN pid INTEGER;
    """,
]


def migrate(db: sqlite3.Connection, where: object) -> int:
    """Apply the missing steps, each in its own transaction; returns the version found."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(f"{where} was written by a newer watcher (schema {version}, "
                         f"this one knows {len(MIGRATIONS)}); upgrade watcher")
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] >= number:
                db.execute("ROLLBACK")  # another process got here first
                continue
            if callable(step):
                step(db)
            else:
                for statement in step.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version={number}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return version
