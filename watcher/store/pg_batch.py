"""Group commit of feed-state writes for the PostgreSQL backend.

Most polls end with nothing new (304 Not Modified) and only write the feed's state. One
statement per poll costs a pooled connection and a network round trip each; instead the
writes that arrive while one batch is being written go together in the next statement
(one multi-row upsert). `save_feed` still returns only once its row is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from watcher.http import feed_host
from watcher.model import FeedState
from watcher.store.sql import FEED_COLUMNS, RELEASE_LEASE, PostgresDialect

_TYPES = {"primed": "boolean", "last_status": "integer", "error_count": "integer",
          "entries_total": "integer", "interval_s": "double precision",
          "last_poll_at": "timestamptz", "last_success_at": "timestamptz",
          "next_poll_at": "timestamptz"}
_COLUMNS = (*FEED_COLUMNS, "host")
SAVE_FEEDS = PostgresDialect().render(
    f"INSERT INTO feeds ({', '.join(_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"CAST(:{c} AS {_TYPES.get(c, 'text')}[])" for c in _COLUMNS)
    + ") ON CONFLICT (url) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:]) + RELEASE_LEASE
)


def batch_params(states: list[FeedState], node: str | None, now: datetime) -> dict[str, Any]:
    """One array per column (sorted by URL: writers lock rows in one order, no deadlocks)."""
    latest = {s.url: s for s in states}  # a feed saved twice in one batch: the last wins
    ordered = [latest[url] for url in sorted(latest)]
    params: dict[str, Any] = {c: [getattr(s, c) for s in ordered] for c in FEED_COLUMNS}
    params["host"] = [feed_host(s.fetch_url) for s in ordered]
    params["node"] = node
    params["now"] = now  # a row without a poll time ends the leases older than this
    return params


class FeedWriter:
    """Collects save_feed calls; one task writes them in batches, in arrival order."""

    def __init__(self, write: Callable[[list[FeedState]], Awaitable[None]],
                 max_batch: int = 500) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[FeedState, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def save(self, state: FeedState) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((state, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="feed-writer")
        await done

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[:self._max_batch]
            del self._pending[:self._max_batch]
            try:
                await self._write([state for state, _ in batch])
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
