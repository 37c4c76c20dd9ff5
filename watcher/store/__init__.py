"""State stores behind one interface: SQLite (embedded default) and PostgreSQL (several nodes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from watcher.store.base import (
    ClusterStore,
    FeedStore,
    OutboxStore,
    ReportStore,
    Store,
    StoreDamaged,
    StoreError,
    StoreFull,
    StoreLost,
)

if TYPE_CHECKING:
    from watcher.config import Config
    from watcher.store.sqlite import SqliteStore

__all__ = [
    "ClusterStore",
    "FeedStore",
    "OutboxStore",
    "ReportStore",
    "SqliteStore",
    "Store",
    "StoreDamaged",
    "StoreError",
    "StoreFull",
    "StoreLost",
    "is_postgres",
    "open_config_store",
    "open_store",
]


def __getattr__(name: str) -> object:
    """`SqliteStore`, imported when first named (`watcher check` opens no store)."""
    if name == "SqliteStore":
        from watcher.store.sqlite import SqliteStore

        return SqliteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def open_config_store(config: Config, *, create: bool = True) -> Store:
    """The config's state store, opened (raises StoreError with the reason).

    With `create=False` (read-only commands) a missing SQLite state file raises StoreError
    ("no state file at ...") instead of being created empty."""
    store = open_store(config.state_location(),
                       password_env=config.watcher.state_password_env, create=create)
    await store.open()
    return store


def is_postgres(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


def open_store(location: str, *, password_env: str = "", node_ttl: float | None = None,
               create: bool = True) -> Store:
    """The store for a config's state location: a SQLite path, or a postgresql:// URL.

    For PostgreSQL the password comes from the environment variable `password_env`
    ([watcher] state_password_env) when set, else from libpq (PGPASSWORD, PGPASSFILE or
    ~/.pgpass, a service file); a password written in the URL is refused. Nothing is
    connected until `await store.open()`, which raises StoreError with the reason.
    With `create=False` a missing SQLite file is such an error instead of a new, empty
    state (read-only commands must not create one).
    """
    if is_postgres(location):
        try:
            from watcher.store.postgres import PostgresStore
        except ImportError as exc:
            raise StoreError(f"PostgreSQL state needs psycopg 3 and psycopg-pool "
                             f"(pip install 'watcher[postgres]'): {exc}") from None
        return PostgresStore(location, password_env=password_env, node_ttl=node_ttl)
    from watcher.store.sqlite import SqliteStore

    return SqliteStore(location, node_ttl=node_ttl, create=create)
