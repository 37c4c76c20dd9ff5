"""Hostile and broken feeds served by a real local server: each ends in a clear result.

Every case goes through the real fetch stage (aiohttp against tests/feedserver.py) and the
parse stage, and must end in a FetchResult error or a FeedParseError a user can act on, or
in a lenient parse where that is what a mature reader does: never a crash, a hang or
unbounded memory. The last test runs a whole round with many of them at once.
"""

from __future__ import annotations

import asyncio
import gzip
import re
import threading
import tracemalloc
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiohttp import web
from conftest import ConfigWriter
from feedserver import FeedServer, Item
from servers import WebhookReceiver

from watcher.daemon import run_once
from watcher.reader.fetch import Fetcher, FetchResult
from watcher.reader.parse import FeedParseError, ParsedFeed, parse_feed
from watcher.store import SqliteStore

FEEDS = Path(__file__).parent / "data" / "feeds"
MB = 1024 * 1024
NOW = datetime.now(UTC).replace(microsecond=0)
RSS_HEAD = b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'


async def fetch(url: str, **limits: float) -> FetchResult:
    fetcher = Fetcher(timeout=limits.pop("timeout", 10), **limits)  # type: ignore[arg-type]
    try:
        return await fetcher.fetch(url)
    finally:
        await fetcher.aclose()


async def fetch_and_parse(url: str) -> ParsedFeed:
    result = await fetch(url)
    assert result.ok, result.error
    return parse_feed(result.body or b"", url, content_type=result.content_type)


def serve(server: FeedServer, path: str, body: bytes, status: int = 200,
          **headers: str) -> str:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, headers=headers)
    return server.set_handler(path, handler)


def gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


@dataclass
class Stream:
    """A handler streaming a body lazily; records how much it sent and why it stopped."""

    total: int = 50 * MB
    chunk: int = 64 * 1024
    delay: float = 0.0  # between chunks: > 0 makes a trickle
    declare_length: bool = False
    sent: int = 0
    client_left: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        if self.declare_length:
            response.content_length = self.total
        try:
            await response.prepare(request)
            await response.write(RSS_HEAD)
            while self.sent < self.total:
                if gone(request):
                    raise ConnectionResetError
                await response.write(b" " * self.chunk)  # whitespace: still a valid feed
                self.sent += self.chunk
                if self.delay:
                    await asyncio.sleep(self.delay)
        except (ConnectionError, RuntimeError):
            self.client_left = True
        finally:
            self.done.set()
        return response


# --- size, time and redirect limits ---

@pytest.mark.timeout(60)
@pytest.mark.parametrize("declare_length", [False, True], ids=["chunked", "content-length"])
async def test_50_mb_response_stops_at_the_cap(declare_length: bool,
                                               feed_server: FeedServer) -> None:
    stream = Stream(declare_length=declare_length)
    url = feed_server.set_handler("huge.xml", stream)
    result = await fetch(url, max_bytes=MB)
    assert result.error == "response larger than 1 MB (the [watcher] max_bytes limit); " \
                           "stopped reading"
    assert result.body is None
    assert await asyncio.to_thread(stream.done.wait, 30)
    assert stream.client_left and stream.sent < 50 * MB  # the server saw us hang up


@pytest.mark.timeout(60)
async def test_gzip_bomb_stops_at_the_cap_on_decompressed_bytes(feed_server: FeedServer) -> None:
    bomb = gzip.compress(RSS_HEAD + b" " * (10 * MB), compresslevel=9)
    assert len(bomb) < 20 * 1024  # declared small: Content-Length is the compressed size
    url = serve(feed_server, "bomb.xml", bomb, **{"Content-Encoding": "gzip",
                                                 "Content-Type": "application/rss+xml"})
    tracemalloc.start()
    try:
        result = await fetch(url, max_bytes=MB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.error is not None and result.error.startswith("response larger than 1 MB")
    assert peak < 6 * MB  # never inflated whole (10 MB)


@pytest.mark.timeout(30)
async def test_trickling_server_is_cut_by_the_total_timeout(feed_server: FeedServer) -> None:
    stream = Stream(total=10 * MB, chunk=1, delay=0.05)
    url = feed_server.set_handler("trickle.xml", stream)
    result = await fetch(url, timeout=1.5)
    assert result.status == 0 and result.error == (
        "no complete response within 1.5 s (the [watcher] timeout): the server is too slow "
        "or stalled")
    assert await asyncio.to_thread(stream.done.wait, 20) and stream.client_left


@pytest.mark.timeout(30)
async def test_server_that_never_answers_is_cut_by_the_timeout(feed_server: FeedServer) -> None:
    async def silent(request: web.Request) -> web.Response:
        for _ in range(300):
            if gone(request):
                break
            await asyncio.sleep(0.05)
        return web.Response(status=204)

    result = await fetch(feed_server.set_handler("silent.xml", silent), timeout=1)
    assert (result.error or "").startswith("no complete response within 1 s")


async def test_redirect_loop(feed_server: FeedServer) -> None:
    async def loop_a(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/loop-b"})

    async def loop_b(request: web.Request) -> web.Response:
        return web.Response(status=301, headers={"Location": "/loop-a"})

    feed_server.set_handler("loop-b", loop_b)
    result = await fetch(feed_server.set_handler("loop-a", loop_a))
    assert result.status == 0 and not result.ok
    assert (result.error or "").startswith("more than 5 redirects, a redirect loop?")
    assert len(feed_server.hits) <= 7


# --- not a feed ---

async def test_html_page_names_the_feed_it_advertises(feed_server: FeedServer) -> None:
    page = (b'<!DOCTYPE html>\n<html><head><title>News</title><link rel="alternate" '
            b'type="application/rss+xml" title="RSS" href="/rss/news.xml"></head>'
            b"<body><p>Hello</p></body></html>")
    url = serve(feed_server, "news", page, **{"Content-Type": "text/html; charset=utf-8"})
    result = await fetch(url)
    with pytest.raises(FeedParseError) as caught:
        parse_feed(result.body or b"", url, content_type=result.content_type)
    assert str(caught.value) == (
        "not an RSS/Atom feed: the server sent an HTML page; the page names its feed: "
        f"{feed_server.url('rss/news.xml')} (use that URL)")


async def test_html_page_without_a_feed_link(feed_server: FeedServer) -> None:
    url = serve(feed_server, "page", b"<html><body>Nothing here</body></html>",
                **{"Content-Type": "text/html"})
    result = await fetch(url)
    with pytest.raises(FeedParseError, match="HTML page; use the site's feed URL instead"):
        parse_feed(result.body or b"", url, content_type=result.content_type)


async def test_empty_200(feed_server: FeedServer) -> None:
    url = serve(feed_server, "empty.xml", b"", **{"Content-Type": "application/rss+xml"})
    result = await fetch(url)
    assert result.ok and result.body == b""
    with pytest.raises(FeedParseError, match=r"^empty response: the server sent no feed"):
        parse_feed(result.body or b"", url, content_type=result.content_type)


@pytest.mark.parametrize(("body", "message"), [
    (b"<?xml version='1.0'?><rss version='2.0'><channel><title>x</titl",
     "malformed feed, nothing readable: XML error at line 1"),
    (b"<?xml version='1.0'?><urlset><url>x</url></urlset>",
     "not an RSS/Atom feed: the document's root element is <urlset>"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not an RSS/Atom feed: the body is not XML"),
    (b'{"items": []}', "not an RSS/Atom feed: the body is not XML (it starts with"),
])
async def test_broken_documents_get_clear_errors(body: bytes, message: str,
                                                 feed_server: FeedServer) -> None:
    url = serve(feed_server, "broken.xml", body)
    result = await fetch(url)
    with pytest.raises(FeedParseError) as caught:
        parse_feed(result.body or b"", url, content_type=result.content_type)
    assert str(caught.value).startswith(message)


async def test_malformed_but_readable_feed_is_read_leniently(feed_server: FeedServer) -> None:
    body = RSS_HEAD + (b"<item><title>AT&T & Verizon <b>merge</title><link>https://news.example/"
                       b"a?x=1&y=2</link></item><item><title>Second</title></item>")
    parsed = await fetch_and_parse(serve(feed_server, "sloppy.xml", body))
    assert [e.title for e in parsed.entries] == ["AT&T & Verizon merge", "Second"]
    assert parsed.warning and parsed.warning.startswith("XML error at line 1")


# --- encodings ---

REAL_ENCODED = {  # file -> (an entry title as published, how a careless server labels it)
    "ibash-org-ru-1": ("Цитата #17703", "text/html; charset=iso-8859-1"),
    "golem-1": ("Zhuque-1: Erste private chinesische Satellitenmission fehlgeschlagen",
                "application/rss+xml; charset=utf-8"),
    "heraldsun-1": ("The First Item", "text/xml"),
    "uol-1": ("Ibope: Bolsonaro perde de Haddad, Ciro e Alckmin em simulações de 2º turno",
              "application/rss+xml; charset=utf-8"),
}


@pytest.mark.parametrize("declaration", ["wrong server charset", "no declaration at all"])
@pytest.mark.parametrize("name", sorted(REAL_ENCODED))
async def test_real_legacy_encoded_feeds_read_as_unicode(name: str, declaration: str,
                                                         feed_server: FeedServer) -> None:
    title, careless = REAL_ENCODED[name]
    body = (FEEDS / f"{name}.xml").read_bytes()
    if declaration == "no declaration at all":
        body, careless = re.sub(rb"^\s*<\?xml[^>]*\?>", b"", body), "application/xml"
    parsed = await fetch_and_parse(serve(feed_server, f"{name}.xml", body,
                                         **{"Content-Type": careless}))
    titles = [e.title for e in parsed.entries]
    assert title in titles
    assert not any(re.search("[ÃÐÑÂ][\x80-\xbf]|\ufffd", t) for t in titles)  # no mojibake


async def test_invalid_utf8_bytes_are_replaced_not_misread(feed_server: FeedServer) -> None:
    body = bytearray((FEEDS / "bbc-russian-1.xml").read_bytes())
    first_title = body.index("«Рабыни божьи»".encode())
    body[first_title + 3] = 0xFF  # break the second byte of "Р" in the first title
    body[-200] = 0xC3  # and a stray lead byte near the end
    parsed = await fetch_and_parse(serve(feed_server, "broken-utf8.xml", bytes(body), **{
        "Content-Type": "application/rss+xml; charset=utf-8"}))
    assert parsed.title == "BBC Russian — Россия"
    assert parsed.entries[0].title.startswith("«\ufffd\ufffdабыни божьи»")
    assert parsed.entries[1].title == parse_feed((FEEDS / "bbc-russian-1.xml").read_bytes(),
                                                 "x").entries[1].title


# --- entities ---

LAUGHS = b"".join(b'<!ENTITY lol%d "%s">\n' % (i, b"&lol%d;" % (i - 1) * 10) for i in range(1, 10))
ENTITY_ATTACKS = {
    "billion laughs": b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY lol0 "lol">\n' + LAUGHS
    + b']>\n<rss version="2.0"><channel><title>&lol9;</title><item><title>a &lol9;</title>'
      b"<description>&lol9;</description></item></channel></rss>",
    "billion laughs on one line": b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY lol0 "lol">'
    + LAUGHS.replace(b"\n", b"") + b']><rss version="2.0"><channel><title>&lol9;</title>'
      b"<item><title>a &lol9;</title></item></channel></rss>",
    "quadratic blow-up": b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a "' + b"x" * 100_000
    + b'">\n]>\n<rss version="2.0"><channel><title>t</title><item><title>' + b"&a;" * 2000
    + b"</title></item></channel></rss>",
    "quadratic blow-up on one line": b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "'
    + b"x" * 100_000 + b'">]><rss version="2.0"><channel><title>t</title><item><title>'
    + b"&a;" * 2000 + b"</title></item></channel></rss>",
    "entity hidden in a comment": b'<?xml version="1.0"?>\n<!--\n<!ENTITY a "' + b"x" * 100_000
    + b'">\n-->\n<!DOCTYPE rss [\n]>\n<rss version="2.0"><channel><title>t</title><item><title>'
    + b"&a;" * 2000 + b"</title></item></channel></rss>",
    "parameter entity": b'<!DOCTYPE rss [<!ENTITY % p "<!ENTITY big \'' + b"y" * 100_000
    + b"'>\"> %p;]><rss version=\"2.0\"><channel><item><title>" + b"&big;" * 2000
    + b"</title></item></channel></rss>",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("attack", sorted(ENTITY_ATTACKS))
async def test_entity_expansion_is_bounded(attack: str, feed_server: FeedServer) -> None:
    url = serve(feed_server, "laughs.xml", ENTITY_ATTACKS[attack])
    result = await fetch(url)
    tracemalloc.start()
    try:
        parsed = parse_feed(result.body or b"", url, content_type=result.content_type)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * MB
    text = parsed.title + "".join(e.title + e.summary for e in parsed.entries)
    assert len(text) < 100_000 and "lollollol" not in text and "xxxxxxxxxx" * 1000 not in text


@pytest.mark.parametrize("where", ["multi-line DTD", "one-line DTD", "parameter entity",
                                   "external DTD"])
async def test_external_entities_are_never_loaded(where: str, feed_server: FeedServer) -> None:
    dtd_url = feed_server.url("evil.dtd")
    serve(feed_server, "evil.dtd", b'<!ENTITY leak SYSTEM "file:///etc/passwd">')
    decl = {
        "multi-line DTD": b'<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>\n',
        "one-line DTD": b'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        "parameter entity": b'<!DOCTYPE rss [<!ENTITY % p SYSTEM "' + dtd_url.encode()
        + b'"> %p;]>',
        "external DTD": b'<!DOCTYPE rss SYSTEM "' + dtd_url.encode() + b'">',
    }[where]
    body = (b'<?xml version="1.0"?>' + decl + b'<rss version="2.0"><channel><title>t</title>'
            b"<item><title>x &xxe;&leak; y</title><description>&xxe;&leak;</description>"
            b"</item></channel></rss>")
    parsed = await fetch_and_parse(serve(feed_server, "xxe.xml", body))
    text = parsed.title + "".join(e.title + e.summary for e in parsed.entries)
    assert "root:" not in text and "/bin/" not in text
    assert parsed.entries[0].title.startswith("x ")
    assert feed_server.requests("evil.dtd") == []


# --- size and odd content ---

@pytest.mark.timeout(120)
async def test_feed_with_10000_entries(feed_server: FeedServer) -> None:
    items = [Item(f"Story {i}", f"https://news.example/s/{i}", f"g-{i}", "Text.",
                  NOW - timedelta(minutes=i)) for i in range(10_000)]
    parsed = await fetch_and_parse(feed_server.set_feed("big.xml", items))
    assert len(parsed.entries) == 10_000 and len({e.key for e in parsed.entries}) == 10_000
    assert parsed.entries[-1].published == NOW - timedelta(minutes=9999)


async def test_missing_and_absurd_dates_give_no_date(feed_server: FeedServer) -> None:
    dates = ["", "<pubDate>Mon, 01 Jan 1900 00:00:00 GMT</pubDate>",
             "<pubDate>Fri, 01 Jan 3000 00:00:00 GMT</pubDate>", "<pubDate>31/02/2024</pubDate>",
             "<pubDate>Mon, 99 Foo 20245 99:99:99 XYZ</pubDate>",
             "<pubDate>9999-12-31T23:59:59Z</pubDate>", "<pubDate>0000-00-00</pubDate>",
             f"<pubDate>{format_datetime(NOW, usegmt=True)}</pubDate>"]
    body = RSS_HEAD + b"".join(f"<item><title>i{n}</title>{d}</item>".encode()
                               for n, d in enumerate(dates)) + b"</channel></rss>"
    parsed = await fetch_and_parse(serve(feed_server, "dates.xml", body))
    assert [e.published for e in parsed.entries] == [None] * 7 + [NOW]


async def test_scripts_and_styles_never_reach_summaries(feed_server: FeedServer) -> None:
    summaries = [
        "&lt;p&gt;Kursk&lt;script&gt;steal(document.cookie)&lt;/script&gt;&lt;/p&gt;",
        "<![CDATA[<p>Kursk</p><script type='text/javascript'>steal()</script>"
        "<style>body{display:none}</style><SCRIPT>steal()</SCRIPT>]]>",
        "&amp;lt;script&amp;gt;steal()&amp;lt;/script&amp;gt;Kursk",  # escaped twice
        "<![CDATA[Kursk <script>steal()]]>",  # never closed
    ]
    body = RSS_HEAD + b"".join(f"<item><title>t{n}</title><description>{s}</description>"
                               f"</item>".encode() for n, s in enumerate(summaries))
    parsed = await fetch_and_parse(serve(feed_server, "scripts.xml", body + b"</channel></rss>"))
    for entry in parsed.entries:
        assert "Kursk" in entry.summary
        assert "<script" not in entry.summary.lower() and "steal" not in entry.summary
        assert "display:none" not in entry.summary and "<" not in entry.summary


# --- a whole round with hostile feeds among good ones ---

def round_config(good: str, hostile: list[str], webhook: WebhookReceiver) -> str:
    feeds = "".join(f'[[feeds]]\nurl = "{u}"\nname = "Feed {i}"\n\n'
                    for i, u in enumerate([*hostile, good]))
    return f"""
[watcher]
state = "state.db"
first_poll = "alert"
timeout = "2s"
max_bytes = {MB}

{feeds}
[[topics]]
name = "kursk-evacuation"
any = ["Kursk residents evacuated", "Kursk evacuation"]
channels = ["ops-hook"]

[[channels]]
name = "ops-hook"
type = "webhook"
url = "{webhook.url}"
"""


@pytest.mark.timeout(60)
async def test_other_feeds_in_the_round_still_poll_and_alert(
        feed_server: FeedServer, webhook: WebhookReceiver, write_config: ConfigWriter) -> None:
    good = feed_server.set_feed("good.xml", [Item(
        "Kursk residents evacuated through Belarus", "https://news.example/kursk", "k-1",
        "Residents of the Kursk region are returning home.", NOW - timedelta(minutes=5))])
    bomb = gzip.compress(RSS_HEAD + b" " * (10 * MB))

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "3600"})

    async def loop(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.path})

    expected = {  # url -> what its recorded error says
        feed_server.set_handler("trickle.xml", Stream(total=10 * MB, chunk=1, delay=0.05)):
            "no complete response within 2 s",
        feed_server.set_handler("huge.xml", Stream()): "response larger than 1 MB",
        serve(feed_server, "bomb.xml", bomb, **{"Content-Encoding": "gzip"}):
            "response larger than 1 MB",
        feed_server.set_handler("loop.xml", loop): "more than 5 redirects",
        serve(feed_server, "page.html", b"<html><body>hi</body></html>",
              **{"Content-Type": "text/html"}): "not an RSS/Atom feed: the server sent an HTML",
        serve(feed_server, "empty.xml", b""): "empty response",
        serve(feed_server, "broken.xml", b"<rss version='2.0'><channel><title>x</titl"):
            "malformed feed",
        serve(feed_server, "gone.xml", b"", status=410): "HTTP 410 Gone",
        feed_server.set_handler("busy.xml", busy): "HTTP 429",
        serve(feed_server, "laughs.xml", ENTITY_ATTACKS["billion laughs"]): "",  # read leniently
    }
    config = write_config(round_config(good, list(expected), webhook))
    await run_once(config)

    assert [r.json["entry"]["title"] for r in webhook.requests] == [
        "Kursk residents evacuated through Belarus"]
    store = SqliteStore(config.state_location())
    await store.open()
    try:
        states = await store.feed_states([*expected, good])
    finally:
        await store.close()
    for url, error in expected.items():
        state = states[url]
        if error:
            assert state.error_count == 1 and error in (state.last_error or ""), url
        else:
            assert state.error_count == 0 and state.last_error is None, url
    assert states[good].error_count == 0 and states[good].last_status == 200
    gone_state = states[feed_server.url("gone.xml")]
    assert gone_state.disabled_reason and "410" in gone_state.disabled_reason
    busy_state = states[feed_server.url("busy.xml")]
    assert busy_state.next_poll_at is not None
    wait = (busy_state.next_poll_at - datetime.now(UTC)).total_seconds()
    assert 3000 < wait < 4000  # Retry-After: 3600, with the pipeline's ±10 % jitter
