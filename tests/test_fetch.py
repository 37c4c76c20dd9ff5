"""The fetch stage against a real local HTTP server: politeness, redirects, limits."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import ConfigWriter
from feedserver import FeedServer, Item, rss

from watcher.http import parse_retry_after
from watcher.pipeline import Pipeline, PollSummary
from watcher.reader.fetch import Fetcher, Validators
from watcher.reader.parse import parse_feed
from watcher.store import SqliteStore

ITEMS = [Item("Kursk residents evacuated", "https://news.example/a", "a-1")]


@pytest.fixture
async def fetcher():
    f = Fetcher(timeout=10)
    yield f
    await f.aclose()


async def test_conditional_get_with_etag_then_304(feed_server: FeedServer,
                                                  fetcher: Fetcher) -> None:
    url = feed_server.set_feed("feed.xml", ITEMS)
    first = await fetcher.fetch(url)
    assert first.ok and first.status == 200
    assert first.validators.etag and first.validators.last_modified
    assert parse_feed(first.body or b"", url, content_type=first.content_type).entries
    second = await fetcher.fetch(url, first.validators)
    assert second.not_modified and second.body is None and second.error is None
    assert second.validators == first.validators  # kept for the next poll
    hit = feed_server.requests("feed.xml")[1]
    assert hit.if_none_match == first.validators.etag
    assert hit.if_modified_since == first.validators.last_modified
    assert hit.user_agent and hit.user_agent.startswith("watcher/")


async def test_conditional_get_with_last_modified_only(feed_server: FeedServer,
                                                       fetcher: Fetcher) -> None:
    stamp = format_datetime(datetime(2025, 2, 24, 10, tzinfo=UTC), usegmt=True)

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("If-Modified-Since") == stamp:
            return web.Response(status=304)
        return web.Response(body=b"<rss version='2.0'><channel><title>t</title></channel></rss>",
                            headers={"Last-Modified": stamp})

    url = feed_server.set_handler("lm.xml", handler)
    first = await fetcher.fetch(url)
    assert first.validators == Validators(None, stamp)
    second = await fetcher.fetch(url, first.validators)
    assert second.status == 304 and second.validators == Validators(None, stamp)


async def test_new_200_replaces_old_validators(feed_server: FeedServer, fetcher: Fetcher) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"<rss version='2.0'><channel><title>t</title></channel></rss>")

    url = feed_server.set_handler("plain.xml", handler)
    result = await fetcher.fetch(url, Validators('"old"', "Mon, 01 Jan 2024 00:00:00 GMT"))
    assert result.ok and result.validators == Validators()  # stale validators are dropped


def redirect(status: int, to: str):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": to})
    return handler


@pytest.mark.parametrize(("statuses", "stored"), [
    ((301,), True), ((308,), True), ((301, 308), True),
    ((302,), False), ((307,), False), ((301, 302), False), ((303,), False),
])
async def test_only_permanent_redirects_move_the_feed(
        statuses: tuple[int, ...], stored: bool, feed_server: FeedServer,
        fetcher: Fetcher) -> None:
    final = feed_server.set_feed("final.xml", ITEMS)
    target = "/final.xml"
    for i, status in reversed(list(enumerate(statuses))):
        feed_server.set_handler(f"hop{i}", redirect(status, target))
        target = f"/hop{i}"
    result = await fetcher.fetch(feed_server.url("hop0"))
    assert result.ok and result.body
    assert result.moved_to == (final if stored else None)


@pytest.mark.parametrize("status", [404, 410, 500, 401, 403])
async def test_http_errors_are_results_not_exceptions(
        status: int, feed_server: FeedServer, fetcher: Fetcher) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text="<html>error page</html>")

    result = await fetcher.fetch(feed_server.set_handler("err.xml", handler))
    assert result.status == status and not result.ok and result.body is None
    assert result.error and result.error.startswith(f"HTTP {status}")


async def test_410_gone_is_reported_as_removed(feed_server: FeedServer, fetcher: Fetcher) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=410)

    result = await fetcher.fetch(feed_server.set_handler("gone.xml", handler))
    assert result.status == 410 and result.error == "HTTP 410 Gone: the feed was removed"


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_is_honoured(status: int, form: str, feed_server: FeedServer,
                                       fetcher: Fetcher) -> None:
    value = "120" if form == "seconds" else format_datetime(
        datetime.now(UTC) + timedelta(seconds=120), usegmt=True)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Retry-After": value})

    result = await fetcher.fetch(feed_server.set_handler("busy.xml", handler))
    assert result.status == status and result.retry_after is not None
    assert 60 <= result.retry_after <= 120
    assert "the server asks us to wait" in (result.error or "")


def test_parse_retry_after() -> None:
    now = datetime(2025, 2, 24, 10, 0, tzinfo=UTC)
    assert parse_retry_after("3600", now) == 3600
    assert parse_retry_after("Mon, 24 Feb 2025 10:05:00 GMT", now) == 300
    assert parse_retry_after("Mon, 24 Feb 2025 09:00:00 GMT", now) == 0  # in the past
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
    assert parse_retry_after(None, now) is None
    # a server cannot block its host for a century, nor crash the poll with a huge number
    assert parse_retry_after("3000000000", now) == parse_retry_after("999999999999", now) \
        == parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now) == 24 * 3600
    assert parse_retry_after("\u00b2", now) is None  # a digit to str.isdigit, not to float


async def test_gzip_responses_are_decompressed(feed_server: FeedServer, fetcher: Fetcher) -> None:
    url = feed_server.set_feed("feed.xml", ITEMS)
    result = await fetcher.fetch(url)  # the server gzips when asked; aiohttp asks
    assert result.ok and (result.body or b"").startswith(b"<?xml")


class Concurrency:
    """Counts requests in flight at the server, overall and per Host header. The first
    requests are held until `first_wave` are in flight at once (at most 10 s), so how many
    arrive together does not depend on how fast a loaded machine sends them."""

    def __init__(self, first_wave: int) -> None:
        self.first_wave = first_wave
        self.released = False
        self.lock = threading.Lock()
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.done: Counter[str] = Counter()
        self.done_at_arrival: dict[str, list[int]] = {}

    async def handler(self, request: web.Request) -> web.Response:
        host = request.host.split(":")[0]
        with self.lock:
            self.done_at_arrival.setdefault(host, []).append(sum(self.done.values()))
            for key in (host, "all"):
                self.now[key] += 1
                self.peak[key] = max(self.peak[key], self.now[key])
            self.released = self.released or self.now["all"] >= self.first_wave
        deadline = time.monotonic() + 10
        while not self.released and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        with self.lock:
            for key in (host, "all"):
                self.now[key] -= 1
            self.done[host] += 1
        return web.Response(body=b"<rss version='2.0'><channel><title>t</title></channel></rss>")


async def test_per_host_limit_holds_at_the_server(feed_server: FeedServer) -> None:
    counter = Concurrency(first_wave=6)
    feed_server.set_handler("slow", counter.handler)
    fetcher = Fetcher(timeout=20, concurrency=50, per_host=3)
    try:
        urls = [f"http://{host}:{feed_server.port}/slow?n={i}"
                for host in ("127.0.0.1", "localhost") for i in range(6)]
        results = await asyncio.gather(*(fetcher.fetch(u) for u in urls))
    finally:
        await fetcher.aclose()
    assert all(r.ok for r in results)
    assert counter.peak["127.0.0.1"] == 3 and counter.peak["localhost"] == 3
    assert counter.peak["all"] == 6  # the hosts do not share a limit


async def test_global_limit_holds_at_the_server(feed_server: FeedServer) -> None:
    counter = Concurrency(first_wave=2)
    feed_server.set_handler("slow", counter.handler)
    fetcher = Fetcher(timeout=20, concurrency=2, per_host=10)
    try:
        urls = [f"http://{host}:{feed_server.port}/slow?n={i}"
                for host in ("127.0.0.1", "localhost") for i in range(3)]
        results = await asyncio.gather(*(fetcher.fetch(u) for u in urls))
    finally:
        await fetcher.aclose()
    assert all(r.ok for r in results)
    assert counter.peak["all"] == 2


async def test_unreachable_and_invalid_urls_are_results(fetcher: Fetcher) -> None:
    refused = await fetcher.fetch("http://127.0.0.1:9/feed.xml")
    assert refused.status == 0 and (refused.error or "").startswith("cannot connect")
    for url in ("http://[::1/feed", "ftp://example.org/feed", "not a url"):
        result = await fetcher.fetch(url)
        assert result.status == 0 and result.error and not result.ok


async def test_file_urls_are_read_with_the_size_cap(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(b"<rss version='2.0'><channel><title>t</title></channel></rss>")
    fetcher = Fetcher(max_bytes=1024)
    ok = await fetcher.fetch(feed.as_uri())
    assert ok.ok and ok.status == 200 and ok.body == feed.read_bytes()
    big = tmp_path / "big.xml"
    big.write_bytes(b"x" * 2048)
    assert "larger than 1024 bytes" in ((await fetcher.fetch(big.as_uri())).error or "")
    missing = await fetcher.fetch((tmp_path / "nope.xml").as_uri())
    assert "cannot read" in (missing.error or "")
    endless = await fetcher.fetch("file:///dev/zero")  # size 0 on disk, endless to read
    assert "larger than 1024 bytes" in (endless.error or "")


async def test_a_busy_host_does_not_hold_global_slots(feed_server: FeedServer) -> None:
    """Feeds queued for one host must not starve other hosts of the global limit."""
    counter = Concurrency(first_wave=2)
    feed_server.set_handler("slow", counter.handler)
    fetcher = Fetcher(timeout=20, concurrency=2, per_host=1)
    try:
        urls = [f"http://127.0.0.1:{feed_server.port}/slow?n={i}" for i in range(4)]
        urls.append(f"http://localhost:{feed_server.port}/slow")
        results = await asyncio.gather(*(fetcher.fetch(u) for u in urls))
    finally:
        await fetcher.aclose()
    assert all(r.ok for r in results)
    assert counter.done_at_arrival["localhost"] == [0]  # served beside the first request
    assert counter.peak["127.0.0.1"] == 1


# --- politeness across polls, through the pipeline and a real store (issue 14.15) ---

class CountingExecutor(ThreadPoolExecutor):
    """The parse executor, counting the documents it is given."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.parsed = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.parsed += fn is parse_feed
        return super().submit(fn, *args, **kwargs)


class Poller:
    """One feed polled by the real pipeline over a SQLite state file."""

    def __init__(self, url: str, store: SqliteStore, pipeline: Pipeline) -> None:
        self.url, self.store, self.pipeline = url, store, pipeline

    async def poll(self) -> PollSummary:
        state = (await self.store.feed_states([self.url]))[self.url]
        [feed] = self.pipeline.config.feeds
        return await self.pipeline.poll(feed, state)


@pytest.fixture
async def poller_for(write_config: ConfigWriter) -> AsyncIterator[Callable[[str], Any]]:
    resources: list[Any] = []

    async def make(url: str) -> Poller:
        config = write_config(f'[watcher]\nstate = "state.db"\n\n[[feeds]]\nurl = "{url}"\n')
        store = SqliteStore(config.state_location())
        await store.open()
        fetcher, executor = Fetcher(timeout=10), CountingExecutor()
        resources.extend([store, fetcher, executor])
        await store.sync_feeds([url], datetime.now(UTC), 0)
        pipeline = Pipeline(config, store, fetcher, executor)
        await pipeline.start()
        return Poller(url, store, pipeline)

    yield make
    for thing in resources:
        if isinstance(thing, ThreadPoolExecutor):
            thing.shutdown()
        elif isinstance(thing, Fetcher):
            await thing.aclose()
        else:
            await thing.close()


async def test_an_unchanged_body_is_not_parsed_again(feed_server: FeedServer,
                                                     poller_for: Callable[[str], Any]) -> None:
    """A server without validators sends the whole body each time: same bytes, no parse."""
    body = [rss([Item("Story 1", "https://news.example/1", "g-1")])]

    async def no_validators(request: web.Request) -> web.Response:
        return web.Response(body=body[0], content_type="application/rss+xml")

    poller: Poller = await poller_for(feed_server.set_handler("feed.xml", no_validators))
    executor = poller.pipeline.parse_executor
    assert isinstance(executor, CountingExecutor)
    first = await poller.poll()
    assert first.entries == 1 and first.new == 1 and executor.parsed == 1
    second = await poller.poll()
    assert second.status == 200 and second.error is None
    assert executor.parsed == 1 and second.entries == 0  # fetched, but not parsed again
    assert [h.status for h in feed_server.requests("feed.xml")] == [200, 200]
    body[0] = rss([Item("Story 2", "https://news.example/2", "g-2"),
                   Item("Story 1", "https://news.example/1", "g-1")])
    third = await poller.poll()
    assert executor.parsed == 2 and third.entries == 2 and third.new == 1


@pytest.mark.parametrize(("status", "moves"), [(301, True), (308, True), (302, False)])
async def test_a_permanent_redirect_is_used_on_the_next_poll(
        status: int, moves: bool, feed_server: FeedServer,
        poller_for: Callable[[str], Any]) -> None:
    new = feed_server.set_feed("new.xml", [Item("Story 1", "https://news.example/1", "g-1")])
    old = feed_server.set_handler("old.xml", redirect(status, "/new.xml"))
    poller: Poller = await poller_for(old)
    assert (await poller.poll()).error is None
    state = (await poller.store.feed_states([old]))[old]
    assert state.fetch_url == (new if moves else old)
    assert (await poller.poll()).error is None
    assert len(feed_server.requests("old.xml")) == (1 if moves else 2)
    assert len(feed_server.requests("new.xml")) == 2
    second = feed_server.requests("new.xml")[1]
    assert second.status == 304 and second.if_none_match  # validators kept across the move
