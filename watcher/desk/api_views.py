"""The desk's machine-readable endpoints: a topic's story feeds (Atom, JSON Feed) and the
JSON API (/api/stories, /api/alerts, /api/feeds).

`ApiViews` holds the handlers (mixed into `Desk`, watcher.desk.app, which routes them);
their errors are JSON (see `Desk._problem`). The bodies are built by
watcher.desk.syndication and watcher.desk.api.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from watcher.desk import api, syndication
from watcher.desk.base import DeskBase
from watcher.desk.model import StoryView
from watcher.model import ALERT_STATES

FEED_ITEMS = 50  # stories in a topic's Atom / JSON feed
API_STORIES = 100  # default `limit` of /api/stories


class ApiViews(DeskBase):
    """Story feed and JSON API handlers (mixed into `Desk`)."""

    # --- story feeds ---

    async def _topic_feed(self, request: web.Request
                          ) -> tuple[str, list[StoryView], dict[str, str]]:
        name = request.match_info["name"]
        self._known_topic(name)
        stories = await self.source.stories(topic=name, limit=FEED_ITEMS)
        try:
            base = request.url.origin()
        except ValueError:  # the Host header is no host[:port]
            raise web.HTTPBadRequest(text="bad Host header: expected host[:port]") from None
        urls = {"home_url": str(base.with_path("/").with_query(topic=name)),
                "stories_url": str(base.with_path("/stories/")),
                "self_url": str(base.with_path(request.path))}
        return name, stories, urls

    async def topic_atom(self, request: web.Request) -> web.Response:
        name, stories, urls = await self._topic_feed(request)
        return web.Response(body=syndication.atom(name, stories, **urls),
                            headers={"Content-Type": syndication.ATOM_TYPE})

    async def topic_json(self, request: web.Request) -> web.Response:
        name, stories, urls = await self._topic_feed(request)
        return web.Response(body=syndication.json_feed(name, stories, **urls),
                            headers={"Content-Type": syndication.JSON_FEED_TYPE})

    # --- API ---

    async def api_stories(self, request: web.Request) -> web.Response:
        q = request.query
        topic = self._known_topic(q.get("topic"))
        since = api.parse_since(q.get("since"), datetime.now(UTC))
        limit = api.parse_limit(q.get("limit"), API_STORIES)
        stories = await self.source.stories(topic=topic, since=since, limit=limit)
        return web.json_response({"stories": [api.story_json(s) for s in stories]})

    async def api_alerts(self, request: web.Request) -> web.Response:
        q = request.query
        status = q.get("status") or None
        if status is not None and status not in ALERT_STATES:
            raise api.BadQuery(f"status: expected one of {', '.join(ALERT_STATES)}, "
                               f"got {status!r}")
        records = await self.store.alert_history(
            topic=q.get("topic") or None, since=api.parse_since(q.get("since"),
                                                                datetime.now(UTC)),
            status=status, limit=api.parse_limit(q.get("limit"), 500))
        return web.json_response(api.alerts_json(records))

    async def api_feeds(self, request: web.Request) -> web.Response:
        feeds, _ = await self._feeds()
        return web.json_response({"feeds": [api.feed_json(f) for f in feeds]})
