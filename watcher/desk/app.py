"""The desk's aiohttp application: pages, story feeds, JSON API, served by the daemon.

`Desk(config, store).start()` binds `[watcher] web`; `close()` stops it. Every page is
rendered on the server (Jinja2, autoescaped) from a few LIMITed queries; reading needs no
JavaScript, and the Content-Security-Policy allows none. See security.py for who may read
and how POSTs are protected. This module wires the app (routes, the guard middleware,
errors); the handlers are in groups beside it: pages.py (stories, alerts, feeds), auth.py
(login, logout), playground_views.py (the rule playground), api_views.py (story feeds and
JSON API), over base.py (rendering, forms, topics).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from yarl import URL

from watcher.config import Config, ConfigError, resolve_secret
from watcher.desk import api
from watcher.desk.api_views import ApiViews
from watcher.desk.auth import AuthViews
from watcher.desk.model import DeskSource
from watcher.desk.pages import PageViews
from watcher.desk.playground_views import PlaygroundViews
from watcher.desk.security import HEADERS, Guard, listens_on_loopback, safe_link
from watcher.metrics import parse_address
from watcher.store.base import Store, StoreError

if TYPE_CHECKING:
    from watcher.pipeline import Embedding

log = logging.getLogger("watcher.desk")

STATIC = Path(__file__).parent / "static"
MIN_TOKEN = 16  # characters a token needs
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DeskError(Exception):
    """The desk cannot start (address, token); the message says what to change."""


def read_token(config: Config) -> str:
    """The token from web_token_env / web_token_file ("" when neither is set)."""
    w = config.watcher
    try:
        token = resolve_secret(w.web_token_env, w.web_token_file, config.base_dir).strip()
    except ConfigError as exc:
        raise DeskError(f"desk token: {exc}") from None
    if (w.web_token_env or w.web_token_file) and len(token) < MIN_TOKEN:
        key = "web_token_env" if w.web_token_env else "web_token_file"
        raise DeskError(f"desk token ({key}) is {len(token)} characters: use at least "
                        f"{MIN_TOKEN} (e.g. `openssl rand -hex 24`)")
    return token


def environment() -> Environment:
    env = Environment(loader=PackageLoader("watcher.desk", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=_when, clock=_clock, iso=api.iso, ago=_ago, safe_link=safe_link)
    return env


def _when(value: datetime | None) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M}" if value else "-"


def _clock(value: datetime) -> str:
    return f"{value.astimezone(UTC):%H:%M}"


def _ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = int((datetime.now(UTC) - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            n = abs(seconds) // size
            return f"{n}{unit} ago" if seconds > 0 else f"in {n}{unit}"
    return "just now"


class Desk(PageViews, AuthViews, PlaygroundViews, ApiViews):
    """The desk of one daemon: an aiohttp site on `[watcher] web` reading `store`."""

    def __init__(self, config: Config, store: Store, source: DeskSource | None = None, *,
                 address: str | None = None, embedding: Embedding | None = None,
                 on_retry: Callable[[], None] | None = None) -> None:
        address = address or config.watcher.web
        if not address:
            raise DeskError("[watcher] web is not set: nothing to serve the desk on")
        try:
            self.host, self._port = parse_address(address)
        except ValueError as exc:
            raise DeskError(str(exc).replace("metrics address", "web address")) from None
        token = read_token(config)
        if not token and not listens_on_loopback(self.host):
            raise DeskError(f"web = {address!r} is not a loopback address (127.0.0.1, ::1 "
                            "or localhost): set web_token_env or web_token_file so the desk "
                            "asks for a token")
        if source is None:
            from watcher.desk.queries import DeskQueries

            source = DeskQueries(store)
        self.config, self.store, self.source = config, store, source
        self.guard = Guard(token, self.host)
        self.embedding = embedding  # the daemon's model, for topics by meaning
        self.on_retry = on_retry or (lambda: None)
        self.templates = environment()
        self._runner: web.AppRunner | None = None
        self.trying = asyncio.Semaphore(1)  # one playground try at a time (CPU, memory)

    # --- lifecycle ---

    @property
    def port(self) -> int:
        if self._runner is not None:
            for addr in self._runner.addresses:
                if isinstance(addr, tuple):
                    return int(addr[1])
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard_mw], client_max_size=256 * 1024)
        r = app.router
        r.add_get("/", self.stories_page)
        r.add_get("/stories/{id}", self.story_page)
        r.add_get("/alerts", self.alerts_page)
        r.add_post("/alerts/{id}/retry", self.retry)
        r.add_get("/feeds", self.feeds_page)
        r.add_get("/playground", self.playground_page)
        r.add_post("/playground", self.playground_try)
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/topics/{name}.atom", self.topic_atom)
        r.add_get("/topics/{name}.json", self.topic_json)
        r.add_get("/api/stories", self.api_stories)
        r.add_get("/api/alerts", self.api_alerts)
        r.add_get("/api/feeds", self.api_feeds)
        r.add_static("/static", STATIC)
        return app

    async def start(self) -> None:
        """Bind and serve; DeskError when the address cannot be bound."""
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._port).start()
        except OSError as exc:
            await runner.cleanup()
            raise DeskError(f"cannot serve the desk on {self.host}:{self._port}: "
                            f"{exc.strerror or exc}") from None
        self._runner = runner
        # not "token": the log masks fields so named, and this one holds no secret
        log.info("desk listening", extra={"address": self.url, "access": (
            "token required" if not self.guard.open else "open (loopback, no token)")})

    async def close(self) -> None:
        """Stop serving; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def reload(self, config: Config) -> None:
        """Use a reloaded config (topics, feeds, token); the address needs a restart, so a
        desk listening beyond loopback keeps its token until then (DeskError says so)."""
        self.config = config
        token = read_token(config)
        if not token and not listens_on_loopback(self.host):
            raise DeskError(f"the desk listens on {self.host} until a restart, which needs "
                            "a token: the previous one stays")
        self.guard.set_token(token)

    # --- plumbing ---

    @web.middleware
    async def _guard_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await self._guarded(request, handler)
        except web.HTTPException as exc:
            exc.headers.update(HEADERS)
            raise
        except Exception:  # a bug: logged, and the answer keeps the security headers
            log.exception("desk: request failed", extra={"path": request.path})
            response = web.Response(status=500, text="500: the desk failed on this request "
                                                     "(see the daemon's log)")
        response.headers.update(HEADERS)
        return response

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.guard.host_allowed(request):
            raise web.HTTPMisdirectedRequest(text="this desk answers to loopback host names "
                                                  "only (set a token to serve other names)")
        public = request.path == "/login" or request.path.startswith("/static/")
        if not public and not self.guard.authenticated(request):
            if request.method == "GET" and not request.path.startswith(("/api/", "/topics/")):
                raise web.HTTPSeeOther(str(URL("/login").with_query(next=request.path_qs)))
            raise web.HTTPUnauthorized(
                text="a token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": 'Bearer realm="watcher", Basic realm="watcher"'})
        try:
            return await handler(request)
        except StoreError as exc:
            log.error("desk: the state store failed", extra={"path": request.path,
                                                             "error": str(exc)})
            return self._problem(request, 503, "The state store is unavailable", str(exc))
        except api.BadQuery as exc:
            return self._problem(request, 400, "Bad request", str(exc))

    def _problem(self, request: web.Request, status: int, title: str,
                 message: str) -> web.Response:
        if request.path.startswith(("/api/", "/topics/")):
            return web.json_response({"error": message}, status=status)
        return self.render(request, "error.html", code=status, title=title, message=message)


async def start(config: Config, store: Store, *, embedding: Embedding | None = None,
                on_retry: Callable[[], None] | None = None) -> Desk:
    """Serve the desk on `[watcher] web` (DeskError says why it cannot). `embedding`: the
    daemon's model (topics by meaning in the playground); `on_retry`: wakes the outbox."""
    desk = Desk(config, store, embedding=embedding, on_retry=on_retry)
    await desk.start()
    return desk
