"""The desk's rule playground pages: a topic's TOML tried on the entries of recent days.

`PlaygroundViews` holds the handlers (mixed into `Desk`, watcher.desk.app, which routes
them): the form (a configured topic's TOML, else `EXAMPLE_TOPIC`) and the try, evaluated
off the event loop (in the embedding model's own thread when the topic needs it). Parsing
the TOML and matching are watcher.desk.playground's.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from watcher.config import TopicSettings
from watcher.desk import playground
from watcher.desk.base import DeskBase
from watcher.desk.model import RecentEntry


class PlaygroundViews(DeskBase):
    """The rule playground's handlers (mixed into `Desk`)."""

    async def playground_page(self, request: web.Request) -> web.Response:
        picked = request.query.get("topic") or (self.topic_names[0] if self.topic_names
                                                else "")
        toml = playground.configured_toml(self.config, picked) if picked else None
        return self._playground(request, picked=picked, toml=toml or EXAMPLE_TOPIC,
                                days=playground.default_days(self.config))

    async def playground_try(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        text = str(form.get("toml") or "")
        max_days = playground.default_days(self.config)
        days_text = str(form.get("days") or "")
        days = min(max_days, max(1, int(days_text))) if days_text.isascii() \
            and days_text.isdigit() and len(days_text) <= 6 else max_days
        topic, raw, problems = playground.parse_topic(text, self.config)
        result = None
        if topic is not None:
            if self.trying.locked():  # tries are CPU-bound: one at a time
                raise web.HTTPServiceUnavailable(
                    text="another playground try is running: try again in a moment",
                    headers={"Retry-After": "10"})
            async with self.trying:
                now = datetime.now(UTC)
                entries = await self.source.recent_entries(now - timedelta(days=days),
                                                           playground.MAX_ENTRIES + 1)
                result = await self._evaluate(topic, raw, entries)
            if not entries:
                result.notice = " ".join(filter(None, [
                    result.notice, "The store holds no entries of these days yet "
                                   "(they are kept from the daemon's polls for keep_entries)."]))
        return self._playground(request, picked=str(raw.get("name", "")), toml=text,
                                days=days, problems=problems, result=result)

    async def _evaluate(self, topic: TopicSettings, raw: dict[str, Any],
                        entries: list[RecentEntry]) -> playground.Result:
        """The try, off the event loop: in the model's own thread when the topic needs the
        daemon's embedding model (which is not shared with other threads), else in a worker."""
        loop = asyncio.get_running_loop()
        model, executor = None, None
        if (topic.about or topic.like) and self.embedding is not None \
                and self.embedding.enabled:
            executor = self.embedding.executor
            model = await loop.run_in_executor(executor, self.embedding.load)
        return await loop.run_in_executor(executor, playground.evaluate, topic, raw,
                                          self.config, entries, model)

    def _playground(self, request: web.Request, **context: Any) -> web.Response:
        context.setdefault("problems", [])
        context.setdefault("result", None)
        keep = self.config.watcher.keep_entries
        return self.render(request, "playground.html", section="playground",
                           title="Rule playground", topics=self.topic_names,
                           max_days=playground.default_days(self.config),
                           keep=f"{keep.days} days" if keep.days else str(keep), **context)


EXAMPLE_TOPIC = """\
[[topics]]
name = "example"
any = ["Kursk evacuation", "evacuate Kursk residents"]
none = ["Battle of Kursk"]
threshold = 85
"""
