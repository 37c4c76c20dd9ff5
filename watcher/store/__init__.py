"""State stores: SQLite (embedded default) behind one interface."""

from __future__ import annotations

from watcher.store.base import FeedState, PollRecord, Store, StoreError
from watcher.store.sqlite import SqliteStore

__all__ = ["FeedState", "PollRecord", "SqliteStore", "Store", "StoreError", "open_store"]


def open_store(location: str) -> Store:
    """The store for a config's state location: a SQLite path, or a postgresql:// URL."""
    if location.startswith(("postgresql://", "postgres://")):
        raise StoreError("PostgreSQL state is not supported by this build yet")
    return SqliteStore(location)
