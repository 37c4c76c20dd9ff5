"""Full text for thin feeds: real saved article pages served on 127.0.0.1 (issue 10)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import multiprocessing
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor

import pytest
from aiohttp import web
from conftest import DATA
from feedserver import FeedServer, Item

from watcher.matching.match import Matcher
from watcher.model import Entry, Phrase, TopicRule
from watcher.reader.fetch import Fetcher
from watcher.reader.fulltext import extract_text, fetch_fulltext

ARTICLES = DATA / "articles"
LOCAL = (ipaddress.ip_network("127.0.0.0/8"),)  # the test servers: allowed explicitly
HTML = "text/html; charset=utf-8"
WAPO_SUMMARY = ("The assault on Tunisia’s most renowned museum, in which gunmen killed at least "
                "19 people, could heighten tensions in a nation that has become deeply divided.")


def page(name: str) -> bytes:
    return (ARTICLES / name).read_bytes()


def entry(link: str | None, n: int = 1, summary: str = "A thin feed's teaser.") -> Entry:
    return Entry(key=f"k{n}", guid=f"g{n}", title=f"Story {n}", link=link, canonical_link=link,
                 summary=summary, published=None, feed_url="http://127.0.0.1/wire.xml",
                 feed_name="Wire")


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    f = Fetcher(timeout=5.0, max_bytes=2_000_000, concurrency=8, per_host=8,
                fulltext_allow=LOCAL)
    try:
        yield f
    finally:
        await f.aclose()


def reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.reason for r in caplog.records if r.name == "watcher.fulltext"]  # type: ignore[attr-defined]


async def test_article_main_text_becomes_content_and_matches(
        feed_server: FeedServer, fetcher: Fetcher) -> None:
    url = feed_server.set_feed("world/tunisia-museum", page("wapo-1.html"), HTML)
    thin = entry(url, summary=WAPO_SUMMARY)
    [full] = await fetch_fulltext(fetcher, [thin], None)
    assert "stormed the Bardo National Museum" in full.content
    assert "Heba Habib contributed to this report" in full.content
    assert full.title == thin.title and full.summary == thin.summary
    topic = TopicRule("bardo", any=(Phrase("Bardo National Museum"),),
                      fields=("title", "summary", "content"))
    assert Matcher([topic]).match(thin) == []  # the feed's text alone does not say it
    [match] = Matcher([topic]).match(full)
    assert [h.field for h in match.hits] == ["content"]
    assert feed_server.requests("world/tunisia-museum")[0].user_agent.startswith("watcher/")


async def test_sidebars_and_navigation_are_not_the_article(feed_server: FeedServer,
                                                          fetcher: Fetcher) -> None:
    url = feed_server.set_feed("news/obama-guns", page("bbc-1.html"), HTML)
    [full] = await fetch_fulltext(fetcher, [entry(url)], None)
    assert "a gunman opened fire at a cinema in the US state of Louisiana" in full.content
    assert "Hulk Hogan" not in full.content  # a "Top stories" headline beside the article
    hogan = TopicRule("wwe", any=(Phrase("Hulk Hogan"),), fields=("title", "summary", "content"))
    assert Matcher([hogan]).match(full) == []


async def test_charset_from_the_page_when_the_server_gives_none(feed_server: FeedServer,
                                                                fetcher: Fetcher) -> None:
    url = feed_server.set_feed("pixels/renseignement", page("lemonde-1.html"), "text/html")
    [full] = await fetch_fulltext(fetcher, [entry(url)], None)
    assert "Les députés ont, sans surprise, adopté à une large majorité" in full.content


async def test_extraction_runs_in_a_process_pool(feed_server: FeedServer,
                                                 fetcher: Fetcher) -> None:
    url = feed_server.set_feed("world/tunisia-museum", page("wapo-1.html"), HTML)
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        [full] = await fetch_fulltext(fetcher, [entry(url)], pool)
    finally:
        pool.shutdown(wait=True)
    assert "Bardo National Museum" in full.content


def test_extract_text_is_plain_bounded_text() -> None:
    text = extract_text(page("wapo-1.html"), HTML)
    assert text is not None and "\n" not in text and "<" not in text and len(text) > 5000


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(1.0)
    return web.Response(text="<html><body><p>late</p></body></html>", content_type="text/html")


@pytest.mark.parametrize(("kind", "expected"), [
    ("404", "HTTP 404"),
    ("pdf", "application/pdf, not HTML"),
    ("consent", "no article text found"),
    ("huge", "larger than"),
    ("slow", "0.5 s"),  # the fetcher's timeout
    ("refused", "cannot connect"),
    ("file", "not http(s)"),
    ("none", "no http(s) link"),
])
async def test_a_page_that_fails_falls_back_to_the_feed_text_with_a_reason(
        kind: str, expected: str, feed_server: FeedServer,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="watcher.fulltext")
    consent = (b"<html><body><div class='consent'><p>We use cookies. Accept all?</p>"
               b"<button>Accept</button></div></body></html>")
    url = {
        "404": feed_server.url("gone"),
        "pdf": feed_server.set_feed("report.pdf", b"%PDF-1.4 ...", "application/pdf"),
        "consent": feed_server.set_feed("consent", consent, HTML),
        "huge": feed_server.set_feed("huge", b"<p>" + b"x" * 300_000 + b"</p>", HTML),
        "slow": feed_server.set_handler("slow", slow),
        "refused": "http://127.0.0.1:9/article",
        "file": "file:///etc/passwd",
        "none": None,
    }[kind]
    # only the slow page runs into the timeout (a loaded machine may take longer than 0.5 s
    # for the others, which must fail for their own reason)
    fetcher = Fetcher(timeout=0.5 if kind == "slow" else 10, max_bytes=100_000,
                      fulltext_allow=LOCAL)
    try:
        [out] = await fetch_fulltext(fetcher, [entry(url, summary=WAPO_SUMMARY)], None)
    finally:
        await fetcher.aclose()
    assert out.content == WAPO_SUMMARY  # the feed text stands in for the article
    [reason] = reasons(caplog)
    assert expected in reason
    [record] = [r for r in caplog.records if r.name == "watcher.fulltext"]
    assert record.feed == "http://127.0.0.1/wire.xml"  # type: ignore[attr-defined]
    assert record.url == (url or "-")  # type: ignore[attr-defined]


class Gauge:
    """Counts requests in flight on the feed server (its handlers share one thread)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.now = self.peak = self.total = self.finished = 0

    async def __call__(self, request: web.Request) -> web.Response:
        self.now += 1
        self.total += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(self.delay)
            return web.Response(body=page("wapo-1.html"), content_type="text/html")
        finally:
            self.now -= 1
            self.finished += 1


async def test_pages_are_fetched_a_few_at_a_time(feed_server: FeedServer,
                                                 fetcher: Fetcher) -> None:
    gauge = Gauge(0.1)
    urls = [feed_server.set_handler(f"a/{i}", gauge) for i in range(8)]
    out = await fetch_fulltext(fetcher, [entry(u, i) for i, u in enumerate(urls)], None,
                               concurrency=2)
    assert gauge.total == 8 and gauge.peak == 2
    assert [e.key for e in out] == [f"k{i}" for i in range(8)]  # order kept
    assert all("Bardo" in e.content for e in out)


async def test_the_hosts_politeness_limit_applies(feed_server: FeedServer) -> None:
    gauge = Gauge(0.1)
    urls = [feed_server.set_handler(f"b/{i}", gauge) for i in range(4)]
    polite = Fetcher(per_host=1, fulltext_allow=LOCAL)
    try:
        await fetch_fulltext(polite, [entry(u, i) for i, u in enumerate(urls)], None)
    finally:
        await polite.aclose()
    assert gauge.peak == 1


async def test_a_burst_of_new_entries_is_capped(feed_server: FeedServer, fetcher: Fetcher,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="watcher.fulltext")
    gauge = Gauge(0.0)
    urls = [feed_server.set_handler(f"c/{i}", gauge) for i in range(5)]
    out = await fetch_fulltext(fetcher, [entry(u, i) for i, u in enumerate(urls)], None,
                               max_pages=2)
    assert gauge.total == 2
    assert [("Bardo" in e.content) for e in out] == [True, True, False, False, False]
    assert out[4].content == out[4].summary
    assert reasons(caplog) == ["more than 2 new entries"]


async def test_other_feeds_are_polled_while_articles_are_slow(feed_server: FeedServer) -> None:
    gauge = Gauge(5.0)
    urls = [feed_server.set_handler(f"d/{i}", gauge) for i in range(10)]
    feed_url = feed_server.set_feed("other.xml", [Item("Elsewhere", "https://e.example/1")])
    shared = Fetcher(concurrency=4, per_host=8, fulltext_allow=LOCAL)  # a small global budget
    try:
        articles = asyncio.create_task(fetch_fulltext(
            shared, [entry(u, i) for i, u in enumerate(urls)], None, concurrency=2))
        while gauge.now < 2:  # the article fetches are under way
            await asyncio.sleep(0.01)
        result = await shared.fetch(feed_url)
        # the feed was fetched while both articles still hung: it did not wait for a slot
        assert result.ok and gauge.finished == 0 and not articles.done()
        articles.cancel()
    finally:
        await shared.aclose()



async def test_extraction_over_the_pool_deadline_falls_back(
        feed_server: FeedServer, fetcher: Fetcher, caplog: pytest.LogCaptureFixture) -> None:
    """Extraction in the parse pool runs under its deadline; past it, the feed text stands."""
    from watcher.reader.parsepool import ParsePool

    caplog.set_level(logging.WARNING, logger="watcher.fulltext")
    url = feed_server.set_feed("world/tunisia-museum", page("wapo-1.html"), HTML)
    pool = ParsePool(workers=1, deadline=0.05)  # less than importing trafilatura takes
    try:
        [out] = await fetch_fulltext(fetcher, [entry(url, summary=WAPO_SUMMARY)], pool)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    assert out.content == WAPO_SUMMARY
    assert reasons(caplog) == ["text extraction took longer than 0.05 s"]
