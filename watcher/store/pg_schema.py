"""PostgreSQL: connection settings, the server-version check and versioned schema migrations."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from watcher.redact import mask_text
from watcher.store.base import StoreError

MIN_SERVER_VERSION = 130000  # PostgreSQL 13
SCHEMA_TABLE = "watcher_schema"
# Advisory lock keys (one namespace per purpose; any bigint the rest of the database won't use).
MIGRATE_LOCK = 0x77617463_00000001
STORY_LOCK = 0x77617463_00000002
CLAIM_LOCK = 0x77617463_00000003

MIGRATIONS: list[str] = [
    # 1: the initial schema (the SQLite schema at version 2, in PostgreSQL types)
    """
    CREATE TABLE feeds (
        url text PRIMARY KEY, host text NOT NULL DEFAULT '', current_url text, title text,
        etag text, last_modified text, body_hash text, primed boolean NOT NULL DEFAULT false,
        last_poll_at timestamptz, last_status integer, last_error text,
        error_count integer NOT NULL DEFAULT 0, last_success_at timestamptz,
        next_poll_at timestamptz, disabled_reason text,
        entries_total integer NOT NULL DEFAULT 0, interval_s double precision,
        active boolean NOT NULL DEFAULT true, lease_owner text, lease_until timestamptz
    );
    CREATE INDEX feeds_due ON feeds (next_poll_at) WHERE active AND disabled_reason IS NULL;
    CREATE INDEX feeds_leased ON feeds (host, lease_owner) WHERE lease_owner IS NOT NULL;
    CREATE TABLE seen (
        feed_url text NOT NULL, entry_key text NOT NULL, canonical_link text,
        title_hash text NOT NULL, first_seen timestamptz NOT NULL,
        PRIMARY KEY (feed_url, entry_key)
    );
    CREATE INDEX seen_by_link ON seen (canonical_link) WHERE canonical_link IS NOT NULL;
    CREATE TABLE stories (
        seq bigserial NOT NULL UNIQUE, id text PRIMARY KEY, topic text NOT NULL,
        title text NOT NULL, summary text NOT NULL, opened_at timestamptz NOT NULL
    );
    CREATE INDEX stories_by_time ON stories (opened_at);
    CREATE TABLE story_members (
        story_id text NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
        feed_url text NOT NULL, entry_key text NOT NULL, feed_name text NOT NULL,
        title text NOT NULL, link text, seen_at timestamptz NOT NULL,
        PRIMARY KEY (story_id, feed_url, entry_key)
    );
    CREATE TABLE alerts (
        id text PRIMARY KEY, topic text NOT NULL, channel text NOT NULL,
        story_id text NOT NULL, title text NOT NULL, payload text NOT NULL,
        status text NOT NULL CHECK (status IN ('owed', 'delivered', 'failed')),
        attempts integer NOT NULL DEFAULT 0, next_attempt_at timestamptz NOT NULL,
        last_error text, created_at timestamptz NOT NULL, delivered_at timestamptz,
        lease_owner text, lease_until timestamptz,
        UNIQUE (topic, story_id, channel)
    );
    CREATE INDEX alerts_due ON alerts (next_attempt_at) WHERE status = 'owed';
    CREATE INDEX alerts_by_time ON alerts (created_at);
    CREATE TABLE nodes (
        node text PRIMARY KEY, config_digest text NOT NULL DEFAULT '',
        started_at timestamptz NOT NULL, heartbeat_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL, inflight integer
    );
    CREATE TABLE hosts (
        host text PRIMARY KEY, blocked_until timestamptz NOT NULL, reason text NOT NULL DEFAULT ''
    );
    """,
    # 2: targets an alert already reached (Apprise: no re-send after a restart); the host
    # and pid of a node (a node of this host whose process is gone is dead at once)
    """
    ALTER TABLE alerts ADD COLUMN sent_to text[] NOT NULL DEFAULT '{}';
    ALTER TABLE nodes ADD COLUMN hostname text;
    ALTER TABLE nodes ADD COLUMN pid integer;
    """,
    # 3: the story engine (see the SQLite schema's step 5)
    """
    CREATE TABLE story_log (
        seq bigserial PRIMARY KEY, story_id text NOT NULL, topic text NOT NULL,
        entry_id text NOT NULL, feed_url text NOT NULL, evidence text NOT NULL,
        seen_at timestamptz NOT NULL, UNIQUE (story_id, entry_id)
    );
    CREATE INDEX story_log_by_time ON story_log (seen_at);
    CREATE TABLE entries (
        feed_url text NOT NULL, entry_key text NOT NULL, feed_name text NOT NULL,
        title text NOT NULL, summary text NOT NULL, link text, language text NOT NULL,
        published timestamptz, seen_at timestamptz NOT NULL, evidence text,
        PRIMARY KEY (feed_url, entry_key)
    );
    CREATE INDEX entries_by_time ON entries (seen_at);
    ALTER TABLE story_members ADD COLUMN language text NOT NULL DEFAULT '';
    ALTER TABLE alerts ADD COLUMN kind text NOT NULL DEFAULT 'story';
    ALTER TABLE alerts DROP CONSTRAINT alerts_topic_story_id_channel_key;
    ALTER TABLE alerts ADD CONSTRAINT alerts_story_kind UNIQUE (topic, story_id, channel, kind);
    """,
    # 6: a story merged into another points at it; a topic's stories by index (see SQLite's)
    """
    ALTER TABLE stories ADD COLUMN merged_into text;
    CREATE INDEX stories_merged ON stories (merged_into) WHERE merged_into IS NOT NULL;
    CREATE INDEX stories_by_topic ON stories (topic, opened_at, id);
    """,
]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a postgresql:// URL points, for messages (never the password)."""

    url: str  # the URL with any password removed
    host: str
    port: str
    database: str
    user: str

    def __str__(self) -> str:
        return f"PostgreSQL {self.user}@{self.host}:{self.port}/{self.database}"


def describe(url: str) -> Target:
    """Host, port, database and user of a URL, with libpq's defaults and environment."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError: a malformed URL
        raise StoreError(f"the state URL is not a valid PostgreSQL URL: {exc}") from None
    user = str(params.get("user") or os.environ.get("PGUSER") or _login())
    host = str(params.get("host") or os.environ.get("PGHOST") or "localhost (Unix socket)")
    if "service" in params and not params.get("host"):
        host = f"service {params['service']}"
    return Target(
        url=strip_password(url), host=host,
        port=str(params.get("port") or os.environ.get("PGPORT") or 5432),
        database=str(params.get("dbname") or os.environ.get("PGDATABASE") or user), user=user)


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "?"


def strip_password(url: str) -> str:
    """The URL without its password, in the user part or as a `password=` parameter."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}@{netloc}" if user else netloc)
    if "password" in parts.query.lower():
        parts = parts._replace(query="&".join(
            "password=***" if p.lower().startswith("password=") else p
            for p in parts.query.split("&")))
    return mask_text(urlunsplit(parts)) if parts.query else urlunsplit(parts)


def connect_kwargs(url: str, password_env: str) -> dict[str, Any]:
    """Connection keywords: the password comes from `password_env`, else libpq finds it
    (PGPASSWORD, PGPASSFILE/~/.pgpass, a service file); it is never written in the URL."""
    if urlsplit(url).password is not None or "password=" in url:
        raise StoreError(
            f"{strip_password(url)}: the state URL must not contain a password; name an "
            f"environment variable in [watcher] state_password_env, or use PGPASSFILE or a "
            f"libpq service file")
    kwargs: dict[str, Any] = {"application_name": "watcher"}
    if password_env:
        password = os.environ.get(password_env)
        if password is None:
            raise StoreError(f"[watcher] state_password_env names {password_env!r}, "
                             f"which is not set in the environment")
        kwargs["password"] = password
    return kwargs


def check_server_version(version: int, target: Target) -> None:
    if version < MIN_SERVER_VERSION:
        raise StoreError(
            f"{target}: the server runs PostgreSQL {_version_text(version)}; watcher needs "
            f"PostgreSQL {_version_text(MIN_SERVER_VERSION)} or newer")


def _version_text(version: int) -> str:
    major = version // 10000
    return f"{major}.{version % 10000}" if major >= 10 else \
        f"{major}.{version // 100 % 100}.{version % 100}"


async def migrate(conn: Any, target: Target) -> int:
    """Bring the schema up to date (one transaction per step, serialised across nodes)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} "
                           f"(version integer NOT NULL)")
        cur = await conn.execute(f"SELECT max(version) FROM {SCHEMA_TABLE}")
        version = (await cur.fetchone())[0] or 0
        if version > len(MIGRATIONS):
            raise StoreError(f"{target} was written by a newer watcher (schema {version}, "
                             f"this one knows {len(MIGRATIONS)}); upgrade watcher")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    await conn.execute(statement)
            await conn.execute(f"DELETE FROM {SCHEMA_TABLE}")
            await conn.execute(f"INSERT INTO {SCHEMA_TABLE} (version) VALUES (%s)", (number,))
        return version
