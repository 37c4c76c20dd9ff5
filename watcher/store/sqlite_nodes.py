"""SQLite: node heartbeats, host blocks and pruning (a mixin of SqliteStore).

SQLite serves one machine, but several processes may share the file (`watcher run` and a
`watcher once` or `watcher status`), so it keeps the same records as PostgreSQL does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from watcher.model import NodeInfo, PruneCounts, node_identity
from watcher.store.base import from_epoch, to_epoch

T = TypeVar("T")
LEASE_VOID = ("(COALESCE({t}.lease_until, 0) < :now OR EXISTS "
              "(SELECT 1 FROM nodes d WHERE d.node = {t}.lease_owner AND d.expires_at < :now))")

_PRUNE: list[tuple[str, str]] = [
    ("alerts", "DELETE FROM alerts WHERE status <> 'owed' AND created_at < :horizon"),
    ("stories", "DELETE FROM story_members WHERE story_id IN (SELECT s.id FROM stories s "
                "WHERE s.opened_at < :horizon AND NOT EXISTS "
                "(SELECT 1 FROM alerts a WHERE a.story_id = s.id))"),
    ("stories", "DELETE FROM stories WHERE opened_at < :horizon AND NOT EXISTS "
                "(SELECT 1 FROM alerts a WHERE a.story_id = stories.id)"),
    ("feeds", "DELETE FROM feeds WHERE active = 0 AND lease_owner IS NULL "
              "AND COALESCE(last_poll_at, 0) < :horizon"),
    ("seen", "DELETE FROM seen WHERE feed_url NOT IN (SELECT url FROM feeds)"),
    ("seen", "DELETE FROM seen WHERE (feed_url, entry_key) IN (SELECT feed_url, entry_key FROM "
             "(SELECT feed_url, entry_key, row_number() OVER (PARTITION BY feed_url "
             "ORDER BY first_seen DESC, entry_key) AS rn FROM seen) WHERE rn > :keep)"),
    ("nodes", "DELETE FROM nodes WHERE expires_at < :node_horizon"),
    ("hosts", "DELETE FROM hosts WHERE blocked_until < :now"),
]


class SqliteNodes:
    node: str | None
    node_ttl: float

    @property
    def db(self) -> sqlite3.Connection:
        raise NotImplementedError

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    def _tx(self) -> Any:
        raise NotImplementedError

    async def heartbeat(self, node: str, config_fingerprint: str, now: datetime,
                        inflight: int | None = None) -> None:
        """Record that `node` is alive, with its config's fingerprint and its polls in flight."""
        self.node = node
        await self._run(self._beat, node, config_fingerprint, now, inflight)

    def _beat(self, node: str, fingerprint: str | None, now: datetime,
              inflight: int | None) -> None:
        t = to_epoch(now)
        hostname, pid = node_identity(node)
        self.db.execute(
            "INSERT INTO nodes (node, config_digest, started_at, heartbeat_at, expires_at, "
            "inflight, hostname, pid) VALUES (?, COALESCE(?, ''), ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (node) DO UPDATE SET "
            "config_digest = COALESCE(?, config_digest), heartbeat_at = excluded.heartbeat_at, "
            "expires_at = excluded.expires_at, inflight = COALESCE(?, inflight)",
            (node, fingerprint, t, t, (t or 0) + self.node_ttl, inflight, hostname, pid,
             fingerprint, inflight))

    async def nodes(self) -> list[NodeInfo]:
        return await self._run(self._nodes, to_epoch(datetime.now(UTC)))

    def _nodes(self, now: float) -> list[NodeInfo]:
        rows = self.db.execute(
            "SELECT n.*, (SELECT COUNT(*) FROM feeds f WHERE f.lease_owner = n.node "
            "AND f.lease_until >= ?) AS leased FROM nodes n ORDER BY n.node", (now,)).fetchall()
        return [NodeInfo(r["node"], from_epoch(r["heartbeat_at"]), from_epoch(r["expires_at"]),
                         r["config_digest"], r["leased"], from_epoch(r["started_at"]),
                         r["inflight"], r["hostname"], r["pid"]) for r in rows]

    async def leave(self, node: str) -> None:
        await self._run(self._leave, node)

    def _leave(self, node: str) -> None:
        with self._tx():
            self.db.execute("UPDATE feeds SET lease_owner = NULL, lease_until = NULL "
                            "WHERE lease_owner = ?", (node,))
            self.db.execute("UPDATE alerts SET lease_owner = NULL, lease_until = NULL "
                            "WHERE lease_owner = ?", (node,))
            self.db.execute("DELETE FROM nodes WHERE node = ?", (node,))

    async def release(self, node: str, urls: list[str]) -> None:
        await self._run(lambda: self.db.executemany(
            "UPDATE feeds SET lease_owner = NULL, lease_until = NULL "
            "WHERE lease_owner = ? AND url = ?", [(node, url) for url in urls]))

    async def block_host(self, host: str, until: datetime, reason: str = "") -> None:
        """No process polls `host` before `until` (a 429/503 Retry-After)."""
        if host:
            await self._run(lambda: self.db.execute(
                "INSERT INTO hosts (host, blocked_until, reason) VALUES (?, ?, ?) "
                "ON CONFLICT (host) DO UPDATE SET blocked_until = "
                "MAX(blocked_until, excluded.blocked_until), reason = excluded.reason",
                (host, to_epoch(until), reason)))

    async def blocked_hosts(self, now: datetime) -> dict[str, datetime]:
        rows = await self._run(lambda: self.db.execute(
            "SELECT host, blocked_until FROM hosts WHERE blocked_until > ? ORDER BY host",
            (to_epoch(now),)).fetchall())
        return {r[0]: from_epoch(r[1]) for r in rows}

    async def prune(self, now: datetime, *, stories_older_than: timedelta = timedelta(days=30),
                    keep_seen_per_feed: int = 2000,
                    nodes_older_than: timedelta = timedelta(days=1)) -> PruneCounts:
        """Delete what can never matter again (see docs/scaling-out.md, "Housekeeping")."""
        params = {"now": to_epoch(now), "horizon": to_epoch(now - stories_older_than),
                  "keep": keep_seen_per_feed, "node_horizon": to_epoch(now - nodes_older_than)}
        return await self._run(self._prune, params)

    def _prune(self, params: dict[str, Any]) -> PruneCounts:
        counts = dict.fromkeys(PruneCounts.__slots__, 0)
        with self._tx():
            for name, sql in _PRUNE:
                n = self.db.execute(sql, params).rowcount
                counts[name] += n if name != "stories" or "story_members" not in sql else 0
        return PruneCounts(**counts)
