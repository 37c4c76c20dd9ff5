"""The desk's reading pages: stories (front page and a topic's pages), one story, alerts
(and re-queuing a failed one), feeds.

`PageViews` holds their handlers (mixed into `Desk`, watcher.desk.app, which routes them);
beside it the page sizes, the feed table's columns and sort order (`sort_feeds`) and the
page cursor of a topic's stories (`_cursor`, `_cursor_text`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from yarl import URL

from watcher.desk import api
from watcher.desk.base import DeskBase
from watcher.desk.model import Cursor, StoryView
from watcher.desk.security import local_path
from watcher.model import ALERT_STATES

log = logging.getLogger("watcher.desk")

PER_TOPIC = 10  # stories per topic on the front page
PAGE = 50  # stories on a topic's page
ALERTS_SHOWN = 200
FEED_COLUMNS = [("name", "feed"), ("last_poll", "last poll"), ("status", "HTTP"),
                ("entries", "entries"), ("errors", "errors"), ("next_poll", "next poll"),
                ("problem", "problem")]
_FAR = datetime.max.replace(tzinfo=UTC)
_NEVER = datetime.min.replace(tzinfo=UTC)


class PageViews(DeskBase):
    """The reading pages' handlers (mixed into `Desk`)."""

    # --- pages ---

    async def stories_page(self, request: web.Request) -> web.Response:
        topic = request.query.get("topic") or None
        if topic:
            self._known_topic(topic)
            cursor = _cursor(request.query.get("before"))
            stories = await self.source.stories(topic=topic, before=cursor, limit=PAGE)
            older = (str(URL("/").with_query(topic=topic, before=_cursor_text(stories[-1])))
                     if len(stories) == PAGE else None)
            return self.render(request, "stories.html", section="stories", title=topic,
                               topic=topic, topics=self.topic_names, stories=stories,
                               older=older, by_topic=[], per_topic=PER_TOPIC)
        latest = await self.source.latest_stories(self.topic_names, PER_TOPIC)
        by_topic = [(t, [s for s in latest if s.topic == t]) for t in self.topic_names]
        return self.render(request, "stories.html", section="stories", title="Stories",
                           topic=None, topics=self.topic_names, stories=[], older=None,
                           by_topic=by_topic, per_topic=PER_TOPIC)

    async def story_page(self, request: web.Request) -> web.Response:
        story = await self.source.story(request.match_info["id"])
        if story is None:
            return self.render(request, "error.html", code=404, title="No such story",
                               message="This story is not (or no longer) in the store.")
        return self.render(request, "story.html", section="stories", title=story.title,
                           s=story)

    async def alerts_page(self, request: web.Request) -> web.Response:
        status = request.query.get("status") or None
        if status is not None and status not in ALERT_STATES:
            raise api.BadQuery(f"status: expected one of {', '.join(ALERT_STATES)}, "
                               f"got {status!r}")
        topic = request.query.get("topic") or None
        records = await self.store.alert_history(topic=topic, status=status,
                                                 limit=ALERTS_SHOWN)
        return self.render(request, "alerts.html", section="alerts", title="Alerts",
                           alerts=records, status=status, topic=topic, states=ALERT_STATES,
                           topics=self.topic_names, limit=ALERTS_SHOWN,
                           here=request.path_qs)

    async def retry(self, request: web.Request) -> web.StreamResponse:
        form = await self._form(request)
        alert_id = request.match_info["id"]
        done = await self.source.retry_alert(alert_id, datetime.now(UTC) - timedelta(seconds=1))
        if done:
            log.info("alert re-queued from the desk", extra={"alert": alert_id})
            self.on_retry()
        target = URL(local_path(form.get("next") if isinstance(form.get("next"), str)
                                else None))
        raise web.HTTPSeeOther(str(target.update_query(msg="requeued" if done
                                                       else "not-failed")))

    async def feeds_page(self, request: web.Request) -> web.Response:
        feeds, running = await self._feeds()
        sort = request.query.get("sort", "")
        if sort not in dict(FEED_COLUMNS):
            sort = ""
        order = "desc" if request.query.get("order") == "desc" else "asc"
        feeds = sort_feeds(feeds, sort, order == "desc")
        return self.render(request, "feeds.html", section="feeds", title="Feeds", feeds=feeds,
                           nodes=running, failing=sum(1 for f in feeds if f["problem"]),
                           sort=sort, order=order, columns=FEED_COLUMNS)


def sort_feeds(feeds: Sequence[dict[str, Any]], sort: str, desc: bool) -> list[dict[str, Any]]:
    """Feeds in the asked order; by default failing feeds first, then by name."""
    keys: dict[str, Callable[[dict[str, Any]], Any]] = {
        "name": lambda f: f["name"].lower(),
        "last_poll": lambda f: f["last_poll_at"] or _NEVER,
        "status": lambda f: f["http_status"] or 0,
        "entries": lambda f: f["entries"],
        "errors": lambda f: f["errors"],
        "next_poll": lambda f: f["next_poll_at"] or _FAR,
        "problem": lambda f: (f["problem"] is None, f["problem"] or ""),
    }
    if sort in keys:
        return sorted(feeds, key=keys[sort], reverse=desc)
    return sorted(feeds, key=lambda f: (f["problem"] is None, -f["errors"], f["name"].lower()))


def _cursor_text(story: StoryView) -> str:
    return f"{story.opened_at.timestamp()!r}~{story.id}"


def _cursor(text: str | None) -> Cursor | None:
    if not text:
        return None
    stamp, _, story = text.partition("~")
    try:
        return datetime.fromtimestamp(float(stamp), tz=UTC), story
    except (ValueError, OverflowError, OSError):
        raise api.BadQuery(f"before: not a page cursor: {text!r}") from None
