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
    # 5: the story engine: every placement of an entry in a story with the engine's evidence
    # (the index is rebuilt from it, by other processes too: `seq` is commit order); recent
    # entries' text and vectors; an outlet's language; alert kinds (story, update, surge),
    # each owed once per (topic, story, channel)
    """
    CREATE TABLE story_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, story_id TEXT NOT NULL, topic TEXT NOT NULL,
        entry_id TEXT NOT NULL, feed_url TEXT NOT NULL, evidence TEXT NOT NULL,
        seen_at REAL NOT NULL, UNIQUE (story_id, entry_id)
    );
    CREATE INDEX story_log_by_time ON story_log (seen_at);
    CREATE TABLE entries (
        feed_url TEXT NOT NULL, entry_key TEXT NOT NULL, feed_name TEXT NOT NULL,
        title TEXT NOT NULL, summary TEXT NOT NULL, link TEXT, language TEXT NOT NULL,
        published REAL, seen_at REAL NOT NULL, evidence TEXT,
        PRIMARY KEY (feed_url, entry_key)
    ) WITHOUT ROWID;
    CREATE INDEX entries_by_time ON entries (seen_at);
    ALTER TABLE story_members ADD COLUMN language TEXT NOT NULL DEFAULT '';
    CREATE TABLE alerts_v5 (
        id TEXT PRIMARY KEY, topic TEXT NOT NULL, channel TEXT NOT NULL,
        story_id TEXT NOT NULL, title TEXT NOT NULL, payload TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('owed', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, last_error TEXT,
        created_at REAL NOT NULL, delivered_at REAL, lease_until REAL, lease_owner TEXT,
        sent_to TEXT NOT NULL DEFAULT '[]', kind TEXT NOT NULL DEFAULT 'story',
        UNIQUE (topic, story_id, channel, kind)
    );
    INSERT INTO alerts_v5 (id, topic, channel, story_id, title, payload, status, attempts,
        next_attempt_at, last_error, created_at, delivered_at, lease_until, lease_owner,
        sent_to) SELECT id, topic, channel, story_id, title, payload, status, attempts,
        next_attempt_at, last_error, created_at, delivered_at, lease_until, lease_owner,
        sent_to FROM alerts;
    DROP TABLE alerts;
    ALTER TABLE alerts_v5 RENAME TO alerts;
    CREATE INDEX alerts_due ON alerts (status, next_attempt_at);
    CREATE INDEX alerts_by_time ON alerts (created_at);
    """,
    # 6: a story merged into another (an entry reported both) points at it; the desk lists
    # the one it joined, with the outlets of both; a topic's stories newest first by index
    # (benchmarks/desk_speed.py, 50,000 stories: a topic's page 19.5 -> 15.5 ms median)
    """
    ALTER TABLE stories ADD COLUMN merged_into TEXT;
    CREATE INDEX stories_merged ON stories (merged_into) WHERE merged_into IS NOT NULL;
    CREATE INDEX stories_by_topic ON stories (topic, opened_at, id);
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
