"""The PostgreSQL backend's outbox and status queries (a mixin of PostgresStore)."""

from __future__ import annotations

from collections import defaultdict
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

import psycopg

from watcher.model import AlertRecord, ChannelCounts, FailedAlert, Outlet, OwedAlert, StorySummary
from watcher.store.base import (
    DELIVERY_LEASE,
    STATUS_FILTER,
    check_alert_status,
    message_from_row,
    record_from_row,
)
from watcher.store.pg_sql import CLAIM_ALERTS

OUTLETS_PER_STORY = 50


class PgOutbox:
    """Alerts owed, claimed with a lease, and marked; the counts `watcher status` shows."""

    node: str | None

    def _conn(self, durable: bool = False) -> AbstractAsyncContextManager[
            psycopg.AsyncConnection[Any]]:
        raise NotImplementedError

    async def due_alerts(self, now: datetime, limit: int = 100) -> list[OwedAlert]:
        """Claim due alerts for DELIVERY_LEASE seconds (or until our heartbeat expires)."""
        params = {"now": now, "limit": limit, "node": self.node,
                  "until": now + timedelta(seconds=DELIVERY_LEASE)}
        async with self._conn() as conn:
            cur = await conn.execute(CLAIM_ALERTS, params)
            rows = await cur.fetchall()
            rows.sort(key=lambda r: (r["next_attempt_at"], r["id"]))
            outlets = await self._outlets(conn, list({r["story_id"] for r in rows}))
        return [OwedAlert(r["id"], r["channel"], r["attempts"], message_from_row(
            r["id"], r["topic"], r["channel"], r["payload"], r["created_at"],
            outlets.get(r["story_id"], [])), tuple(r["sent_to"])) for r in rows]

    async def _outlets(self, conn: psycopg.AsyncConnection[Any],
                       story_ids: list[str]) -> dict[str, list[Outlet]]:
        """Each story's other outlets, as known now (later reports show in later deliveries)."""
        if not story_ids:
            return {}
        cur = await conn.execute(
            "SELECT story_id, feed_name, title, link FROM story_members "
            "WHERE story_id = ANY(%s) ORDER BY story_id, seen_at, feed_url, entry_key",
            (story_ids,))
        members: dict[str, list[Outlet]] = defaultdict(list)
        for r in await cur.fetchall():
            if len(members[r["story_id"]]) < OUTLETS_PER_STORY:
                members[r["story_id"]].append(Outlet(r["feed_name"], r["title"], r["link"]))
        return {story: found[1:] for story, found in members.items()}

    async def mark_delivered(self, alert_ids: list[str], at: datetime) -> None:
        await self._update_alerts(
            "status = 'delivered', delivered_at = %s, attempts = attempts + 1, "
            "last_error = NULL, lease_owner = NULL, lease_until = NULL", (at,), alert_ids)

    async def mark_retry(self, alert_ids: list[str], error: str, next_at: datetime) -> None:
        await self._update_alerts(
            "attempts = attempts + 1, last_error = %s, next_attempt_at = %s, "
            "lease_owner = NULL, lease_until = NULL", (error, next_at), alert_ids)

    async def mark_failed(self, alert_ids: list[str], error: str) -> None:
        await self._update_alerts(
            "status = 'failed', attempts = attempts + 1, last_error = %s, "
            "lease_owner = NULL, lease_until = NULL", (error,), alert_ids)

    async def note_sent(self, alert_id: str, targets: list[str]) -> None:
        """Add `targets` to the alert's done targets (a set, kept sorted), durably."""
        if not targets:
            return
        async with self._conn(durable=True) as conn:
            await conn.execute(
                "UPDATE alerts SET sent_to = ARRAY(SELECT DISTINCT t FROM "
                "unnest(sent_to || %s::text[]) AS t ORDER BY t) WHERE id = %s",
                (list(targets), alert_id))

    async def alert_history(self, *, topic: str | None = None, since: datetime | None = None,
                            status: str | None = None, limit: int = 500) -> list[AlertRecord]:
        check_alert_status(status)
        sql = ("SELECT id, topic, channel, story_id, title, payload, status, attempts, "
               "last_error, created_at, delivered_at FROM alerts WHERE true")
        if topic is not None:
            sql += " AND topic = %(topic)s"
        if since is not None:
            sql += " AND created_at >= %(since)s"
        sql += STATUS_FILTER.get(status or "", "")
        sql += " ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
        async with self._conn() as conn:
            cur = await conn.execute(sql, {"topic": topic, "since": since,
                                           "limit": limit})
            rows = await cur.fetchall()
        return [record_from_row(r, r["payload"], r["created_at"], r["delivered_at"])
                for r in rows]

    async def _update_alerts(self, assignments: str, params: tuple[Any, ...],
                             ids: list[str]) -> None:
        """Change owed alerts only: one another node already delivered stays delivered."""
        async with self._conn(durable=True) as conn:
            await conn.execute(f"UPDATE alerts SET {assignments} "
                               f"WHERE id = ANY(%s) AND status = 'owed'", (*params, ids))

    async def requeue_failed(self, channel: str | None, now: datetime) -> int:
        sql = "UPDATE alerts SET status = 'owed', attempts = 0, next_attempt_at = %s " \
              "WHERE status = 'failed'"
        params: list[Any] = [now]
        if channel:
            sql += " AND channel = %s"
            params.append(channel)
        async with self._conn(durable=True) as conn:
            cur = await conn.execute(sql, params)
            return cur.rowcount

    async def next_due_at(self) -> datetime | None:
        async with self._conn() as conn:
            cur = await conn.execute("SELECT min(next_attempt_at) AS t FROM alerts "
                                     "WHERE status = 'owed'")
            row = await cur.fetchone()
        return row["t"] if row else None

    async def channel_counts(self) -> dict[str, ChannelCounts]:
        async with self._conn() as conn:
            cur = await conn.execute("SELECT channel, status, count(*) AS n FROM alerts "
                                     "GROUP BY channel, status")
            rows = await cur.fetchall()
        counts: dict[str, dict[str, int]] = {}
        for r in rows:
            counts.setdefault(r["channel"], {})[r["status"]] = r["n"]
        return {ch: ChannelCounts(c.get("owed", 0), c.get("failed", 0), c.get("delivered", 0))
                for ch, c in counts.items()}

    async def failed_alerts(self, limit: int = 20) -> list[FailedAlert]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT id, topic, channel, title, last_error, created_at FROM alerts "
                "WHERE status = 'failed' ORDER BY created_at DESC LIMIT %s", (limit,))
            rows = await cur.fetchall()
        return [FailedAlert(r["id"], r["topic"], r["channel"], r["title"], r["last_error"] or "",
                            r["created_at"]) for r in rows]

    async def recent_stories(self, since: datetime, limit: int = 20) -> list[StorySummary]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT s.topic, s.title, s.opened_at, ARRAY(SELECT feed_name FROM story_members "
                "WHERE story_id = s.id ORDER BY seen_at) AS outlets FROM stories s "
                "WHERE s.opened_at >= %s ORDER BY s.opened_at DESC LIMIT %s", (since, limit))
            return [StorySummary(r["topic"], r["title"], r["opened_at"],
                                 list(dict.fromkeys(r["outlets"])))
                    for r in await cur.fetchall()]

    async def alerts_since(self, since: datetime) -> dict[str, int]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT topic, count(DISTINCT story_id) AS n FROM alerts WHERE created_at >= %s "
                "GROUP BY topic", (since,))
            return {r["topic"]: r["n"] for r in await cur.fetchall()}
