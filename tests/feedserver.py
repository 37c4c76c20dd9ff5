"""A real HTTP feed server on 127.0.0.1 for tests: ETag, Last-Modified, 304s, and misbehaviour.

It runs its own event loop in a background thread, so in-process async tests and daemon
subprocesses can both poll it. Feeds are set per path; every request is recorded.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Item:
    title: str
    link: str
    guid: str | None = None
    summary: str = ""
    published: datetime | None = None


def rss(items: list[Item], title: str = "Test feed", link: str = "http://127.0.0.1/") -> bytes:
    """An RSS 2.0 document with these items."""
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
             f"<title>{escape(title)}</title><link>{escape(link)}</link>"
             f"<description>test</description>"]
    for it in items:
        parts.append("<item>")
        parts.append(f"<title>{escape(it.title)}</title><link>{escape(it.link)}</link>")
        if it.guid:
            parts.append(f'<guid isPermaLink="false">{escape(it.guid)}</guid>')
        if it.summary:
            parts.append(f"<description>{escape(it.summary)}</description>")
        if it.published:
            parts.append(f"<pubDate>{format_datetime(it.published, usegmt=True)}</pubDate>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode()


@dataclass
class Hit:
    path: str
    status: int
    if_none_match: str | None
    if_modified_since: str | None
    user_agent: str | None


@dataclass
class _Doc:
    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    modified: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(self.body).hexdigest()[:16] + '"'


class FeedServer:
    """Serves feeds at paths; `set_feed` changes one (new ETag and Last-Modified)."""

    def __init__(self) -> None:
        self.docs: dict[str, _Doc] = {}
        self.handlers: dict[str, Handler] = {}
        self.hits: list[Hit] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- content ---

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def set_feed(self, path: str, body: bytes | list[Item],
                 content_type: str = "application/rss+xml; charset=utf-8") -> str:
        data = rss(body) if isinstance(body, list) else body
        old = self.docs.get("/" + path.lstrip("/"))
        modified = datetime.now(UTC).replace(microsecond=0)
        if old is not None and old.modified >= modified:
            modified = old.modified.replace(second=(old.modified.second + 1) % 60) \
                if old.modified.second < 59 else old.modified
        self.docs["/" + path.lstrip("/")] = _Doc(data, content_type, modified)
        return self.url(path)

    def set_handler(self, path: str, handler: Handler) -> str:
        """Serve `path` with a custom aiohttp handler (for misbehaving servers)."""
        self.handlers["/" + path.lstrip("/")] = handler
        return self.url(path)

    def requests(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == "/" + path.lstrip("/")]

    # --- serving ---

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path in self.handlers:
            response = await self.handlers[path](request)
            self._record(request, response.status)
            return response
        doc = self.docs.get(path)
        if doc is None:
            self._record(request, 404)
            return web.Response(status=404, text="not found")
        inm = request.headers.get("If-None-Match")
        ims = request.headers.get("If-Modified-Since")
        last_modified = format_datetime(doc.modified, usegmt=True)
        if (inm and inm == doc.etag) or (not inm and ims and ims == last_modified):
            self._record(request, 304)
            return web.Response(status=304, headers={"ETag": doc.etag})
        headers = {"ETag": doc.etag, "Last-Modified": last_modified,
                   "Content-Type": doc.content_type}
        body = doc.body
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        self._record(request, 200)
        return web.Response(body=body, headers=headers)

    def _record(self, request: web.Request, status: int) -> None:
        self.hits.append(Hit(request.path, status, request.headers.get("If-None-Match"),
                             request.headers.get("If-Modified-Since"),
                             request.headers.get("User-Agent")))

    def start(self) -> FeedServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
