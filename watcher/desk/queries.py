"""The desk's reads (and its one write, re-queueing a failed alert), written once for both
backends over the store's SQL core (watcher/store/sql.py: `fetch`, `execute`, the dialect).

Every page costs a fixed number of statements whatever it lists: the stories (LIMITed,
newest first, by the `stories_by_time` index or a topic's), then their outlets, the stories
merged into them and their alerts in one statement each (IN lists of at most 500), never one
query per story. A story merged into another (`merged_into`) is listed as that one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from watcher.desk.model import AlertView, Cursor, OutletView, RecentEntry, StoryView
from watcher.model import Hit
from watcher.redact import mask_text
from watcher.store.base import alert_state, mask_error
from watcher.store.sql import REQUEUE, Row, SqlStore, chunks, in_list

OUTLETS_SHOWN = 100  # outlets listed per story (the first reporters)
STORY = "SELECT id, topic, title, summary, opened_at, merged_into FROM stories"
LISTED = " WHERE merged_into IS NULL"  # a merged story is listed as the one it joined
NEWEST = " ORDER BY opened_at DESC, id DESC LIMIT :limit"
BEFORE = " AND (opened_at < :b_at OR (opened_at = :b_at AND id < :b_id))"
MEMBERS = ("SELECT story_id, feed_url, feed_name, title, link, language, seen_at "
           "FROM story_members WHERE story_id IN {} ORDER BY story_id, seen_at, feed_url, "
           "entry_key")
ALERTS = ("SELECT id, story_id, channel, status, attempts, last_error, created_at, "
          "delivered_at, next_attempt_at, kind{payload} FROM alerts WHERE topic IN {topics} "
          "AND story_id IN {ids} ORDER BY created_at, channel, kind")
MERGED = "SELECT id, merged_into FROM stories WHERE merged_into IN {}"
RETRY_ONE = REQUEUE + " AND id = :id"


class DeskQueries:
    """A DeskSource over a SQL store (SQLite or PostgreSQL)."""

    def __init__(self, store: Any) -> None:
        if not isinstance(store, SqlStore):
            raise TypeError(f"the desk reads a SQL store, not {type(store).__name__}")
        self.store = store
        self.d = store.dialect

    async def latest_stories(self, topics: Sequence[str], per_topic: int) -> list[StoryView]:
        if not topics:
            return []
        parts = [f"SELECT * FROM ({STORY}{LISTED} AND topic = :t{i}{NEWEST}) s{i}"
                 for i in range(len(topics))]
        params: dict[str, Any] = {f"t{i}": t for i, t in enumerate(topics)}
        params["limit"] = per_topic
        rows = await self.store.fetch(" UNION ALL ".join(parts), params)
        return await self._complete(rows)

    async def stories(self, *, topic: str | None = None, since: datetime | None = None,
                      before: Cursor | None = None, limit: int = 50) -> list[StoryView]:
        sql = STORY + LISTED
        params: dict[str, Any] = {"limit": limit}
        if topic is not None:
            sql += " AND topic = :topic"
            params["topic"] = topic
        if since is not None:
            sql += " AND opened_at >= :since"
            params["since"] = self.d.time(since)
        if before is not None:
            sql += BEFORE
            params.update(b_at=self.d.time(before[0]), b_id=before[1])
        return await self._complete(await self.store.fetch(sql + NEWEST, params))

    async def story(self, story_id: str) -> StoryView | None:
        rows = await self.store.fetch(STORY + " WHERE id = :id", {"id": story_id})
        if rows and rows[0]["merged_into"]:  # an old alert's link: the story it joined
            rows = await self.store.fetch(STORY + " WHERE id = :id",
                                          {"id": rows[0]["merged_into"]})
        if not rows:
            return None
        story_id = rows[0]["id"]
        members = await self._members([story_id])
        alert_rows = await self._alert_rows([story_id], [rows[0]["topic"]], payload=True)
        score, hits = _explanation(alert_rows)
        return self._story(rows[0], members, alert_rows, score, hits, payload=True)

    async def retry_alert(self, alert_id: str, now: datetime) -> bool:
        changed = await self.store.execute(RETRY_ONE, {"id": alert_id,
                                                       "now": self.d.time(now)}, durable=True)
        return changed > 0

    async def recent_entries(self, since: datetime, limit: int) -> list[RecentEntry]:
        stored = await self.store.recent_entries(since, limit)
        return [RecentEntry(s.entry, s.seen_at, s.entry.language or None, s.vector,
                            s.model)
                for s in stored]

    # --- the parts of a list of stories ---

    async def _complete(self, rows: list[Row]) -> list[StoryView]:
        """Stories with their outlets and alerts: two more statements for the whole list."""
        ids = [r["id"] for r in rows]
        members = await self._members(ids)
        alerts: dict[str, list[Row]] = {}
        for a in await self._alert_rows(ids, sorted({r["topic"] for r in rows})):
            alerts.setdefault(a["listed_as"], []).append(a)
        return [self._story(r, members, alerts.get(r["id"], [])) for r in rows]

    async def _members(self, ids: list[str]) -> dict[str, list[OutletView]]:
        found: dict[str, list[OutletView]] = {}
        for chunk in chunks(ids):
            marks, params = in_list("s", chunk)
            for r in await self.store.fetch(MEMBERS.format(marks), params):
                outlets = found.setdefault(r["story_id"], [])
                if len(outlets) < OUTLETS_SHOWN:
                    # a name stored before names were masked may be a credentialed URL
                    name = mask_text(r["feed_name"] or "")
                    outlets.append(OutletView(name, r["feed_url"], r["title"], r["link"],
                                              self.d.datetime(r["seen_at"]),
                                              r["language"] or None))
        return found

    async def _alert_rows(self, ids: list[str], topics: list[str], *,
                          payload: bool = False) -> list[Row]:
        """The stories' alerts and those of the stories merged into them, each with the
        story it is listed under (`listed_as`), oldest first."""
        listed_as = {i: i for i in ids}
        for chunk in chunks(ids):
            marks, params = in_list("s", chunk)
            for r in await self.store.fetch(MERGED.format(marks), params):
                listed_as[r["id"]] = r["merged_into"]
        rows: list[Row] = []
        topic_marks, topic_params = in_list("t", topics)
        for chunk in chunks(list(listed_as)):
            marks, params = in_list("s", chunk)
            sql = ALERTS.format(payload=", payload" if payload else "", ids=marks,
                                topics=topic_marks)
            rows.extend({**r, "listed_as": listed_as[r["story_id"]]}
                        for r in await self.store.fetch(sql, {**params, **topic_params}))
        rows.sort(key=lambda r: (r["created_at"], r["channel"], r["kind"]))
        return rows

    def _alert(self, r: Row, payload: bool) -> AlertView:
        return AlertView(
            id=r["id"], channel=r["channel"], state=alert_state(r["status"], r["attempts"]),
            attempts=r["attempts"], last_error=mask_error(r["last_error"]),
            created_at=self.d.datetime(r["created_at"]),
            delivered_at=self.d.datetime(r["delivered_at"]),
            due_at=self.d.datetime(r["next_attempt_at"]), kind=r["kind"],
            note=json.loads(r["payload"]).get("note", "") if payload else "")

    def _story(self, r: Row, members: dict[str, list[OutletView]], alert_rows: list[Row],
               score: float | None = None, hits: tuple[Hit, ...] = (), *,
               payload: bool = False) -> StoryView:
        alerts = tuple(self._alert(a, payload) for a in alert_rows)
        return StoryView(id=r["id"], topic=r["topic"], title=r["title"], summary=r["summary"],
                         opened_at=self.d.datetime(r["opened_at"]),
                         outlets=tuple(members.get(r["id"], ())), alerts=alerts,
                         score=score, hits=hits)


def _explanation(alert_rows: list[Row]) -> tuple[float | None, tuple[Hit, ...]]:
    """The first match's score and hits, as its first alert carried them."""
    for r in alert_rows:
        if r["kind"] == "story":
            data = json.loads(r["payload"])
            return data["score"], tuple(Hit(**h) for h in data["hits"])
    return None, ()
