"""The desk's aiohttp application: pages, story feeds, JSON API, served by the daemon.

`Desk(config, store).start()` binds `[watcher] web`; `close()` stops it. Every page is
rendered on the server (Jinja2, autoescaped) from a few LIMITed queries; reading needs no
JavaScript, and the Content-Security-Policy allows none. See security.py for who may read
and how POSTs are protected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from yarl import URL

from watcher import __version__
from watcher.config import Config, ConfigError, TopicSettings, resolve_secret
from watcher.desk import api, playground, syndication
from watcher.desk.model import Cursor, DeskSource, RecentEntry, StoryView
from watcher.desk.security import HEADERS, Guard, listens_on_loopback, local_path, safe_link
from watcher.metrics import parse_address
from watcher.model import ALERT_STATES, NodeInfo
from watcher.report import _feed_data as feed_data  # `watcher status`'s view of a feed
from watcher.store.base import Store, StoreError

if TYPE_CHECKING:
    from watcher.pipeline import Embedding

log = logging.getLogger("watcher.desk")

STATIC = Path(__file__).parent / "static"
PER_TOPIC = 10  # stories per topic on the front page
PAGE = 50  # stories on a topic's page
FEED_ITEMS = 50  # stories in a topic's Atom / JSON feed
API_STORIES = 100  # default `limit` of /api/stories
ALERTS_SHOWN = 200
MIN_TOKEN = 16  # characters a token needs
MESSAGES = {"requeued": "The alert is owed again: the daemon delivers it within seconds.",
            "not-failed": "That alert is not failed (any more): nothing to re-queue.",
            "bad-token": "Wrong token."}
FEED_COLUMNS = [("name", "feed"), ("last_poll", "last poll"), ("status", "HTTP"),
                ("entries", "entries"), ("errors", "errors"), ("next_poll", "next poll"),
                ("problem", "problem")]
_FAR = datetime.max.replace(tzinfo=UTC)
_NEVER = datetime.min.replace(tzinfo=UTC)
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


class Desk:
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
        """Use a reloaded config (topics, feeds, token); the address needs a restart."""
        self.guard.set_token(read_token(config))
        self.config = config

    # --- plumbing ---

    @web.middleware
    async def _guard_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await self._guarded(request, handler)
        except web.HTTPException as exc:
            exc.headers.update(HEADERS)
            raise
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

    async def _feeds(self) -> tuple[list[dict[str, Any]], list[NodeInfo]]:
        """Every configured feed as `watcher status` shows it, and the live daemons (two
        statements; not status_data, whose per-channel counts scan every alert)."""
        now = datetime.now(UTC)
        running = [n for n in await self.store.nodes() if n.alive(now)]
        states = await self.store.feed_states([f.url for f in self.config.feeds])
        return [feed_data(f, states[f.url], self.config, now, bool(running))
                for f in self.config.feeds], running

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
        days = min(max_days, max(1, int(days_text))) if days_text.isdigit() else max_days
        topic, raw, problems = playground.parse_topic(text, self.config)
        result = None
        if topic is not None:
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

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        target = local_path(request.query.get("next"))
        if self.guard.open or self.guard.authenticated(request):
            raise web.HTTPSeeOther(target)
        return self.render(request, "login.html", title="Log in", next=target)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await self._form(request, "login")
        target = local_path(form.get("next") if isinstance(form.get("next"), str) else None)
        response = web.HTTPSeeOther(target)
        token = form.get("token")
        if self.guard.open or (isinstance(token, str) and self.guard.login(
                response, token, secure=request.secure)):
            raise response
        log.warning("desk: a login with a wrong token", extra={"remote": request.remote})
        raise web.HTTPSeeOther(str(URL("/login").with_query(next=target, msg="bad-token")))

    async def logout(self, request: web.Request) -> web.StreamResponse:
        await self._form(request)
        response = web.HTTPSeeOther("/login")
        self.guard.logout(request, response)
        raise response

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


EXAMPLE_TOPIC = """\
[[topics]]
name = "example"
any = ["Kursk evacuation", "evacuate Kursk residents"]
none = ["Battle of Kursk"]
threshold = 85
"""


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


async def start(config: Config, store: Store, *, embedding: Embedding | None = None,
                on_retry: Callable[[], None] | None = None) -> Desk:
    """Serve the desk on `[watcher] web` (DeskError says why it cannot). `embedding`: the
    daemon's model (topics by meaning in the playground); `on_retry`: wakes the outbox."""
    desk = Desk(config, store, embedding=embedding, on_retry=on_retry)
    await desk.start()
    return desk
