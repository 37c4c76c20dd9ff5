"""The desk's shared state and plumbing, beneath `Desk` (watcher.desk.app) and its handler groups.

`DeskBase` declares what `Desk.__init__` sets (config, store, source, guard, embedding,
on_retry, templates) and holds what every handler group uses: `render` (a page, with the
flash message, login state and form token), `_form` (a POSTed form after the CSRF checks),
the configured topic names and `_known_topic` (404 for others), and `_feeds` (every
configured feed as `watcher status` shows it, for the feeds page and /api/feeds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from jinja2 import Environment

from watcher import __version__
from watcher.config import Config
from watcher.desk.model import DeskSource
from watcher.desk.security import Guard
from watcher.model import NodeInfo
from watcher.report_status import _feed_data as feed_data  # `watcher status`'s view of a feed
from watcher.store.base import Store

if TYPE_CHECKING:
    from watcher.pipeline import Embedding

log = logging.getLogger("watcher.desk")

MESSAGES = {"requeued": "The alert is owed again: the daemon delivers it within seconds.",
            "not-failed": "That alert is not failed (any more): nothing to re-queue.",
            "bad-token": "Wrong token."}


class DeskBase:
    """What the handler groups share; `Desk` (watcher.desk.app) sets the attributes."""

    config: Config
    store: Store
    source: DeskSource
    guard: Guard
    embedding: Embedding | None  # the daemon's model, for topics by meaning
    on_retry: Callable[[], None]
    templates: Environment
    trying: asyncio.Semaphore  # one playground try at a time

    def render(self, request: web.Request, name: str, *, code: int = 200,
               **context: Any) -> web.Response:
        context.setdefault("section", "")
        context.setdefault("flash", MESSAGES.get(request.query.get("msg", ""), ""))
        body = self.templates.get_template(name).render(
            now=datetime.now(UTC), logged_in=not self.guard.open,
            csrf=self.guard.csrf_token("login" if name == "login.html" else "forms"),
            version=__version__, **context)
        return web.Response(text=body, status=code, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def _form(self, request: web.Request, purpose: str = "forms") -> Any:
        """The POSTed form, after the CSRF checks (403 when they fail)."""
        form = await request.post()
        token = form.get("csrf")
        if not isinstance(token, str) or not self.guard.csrf_ok(request, token, purpose):
            log.warning("desk: refused a POST without a valid form token (cross-site?)",
                        extra={"path": request.path, "origin": request.headers.get("Origin")})
            raise web.HTTPForbidden(text="refused: this form did not come from the desk's own "
                                         "page (reload the page and try again)")
        return form

    @property
    def topic_names(self) -> list[str]:
        return [t.name for t in self.config.topics]

    def _known_topic(self, name: str | None) -> str | None:
        if name and name not in self.topic_names:
            raise web.HTTPNotFound(text=f"no topic named {name!r} (topics: "
                                        f"{', '.join(self.topic_names) or 'none'})")
        return name or None

    async def _feeds(self) -> tuple[list[dict[str, Any]], list[NodeInfo]]:
        """Every configured feed as `watcher status` shows it, and the live daemons (two
        statements; not status_data, whose per-channel counts scan every alert)."""
        now = datetime.now(UTC)
        running = [n for n in await self.store.nodes() if n.alive(now)]
        states = await self.store.feed_states([f.url for f in self.config.feeds])
        return [feed_data(f, states[f.url], self.config, now, bool(running))
                for f in self.config.feeds], running
