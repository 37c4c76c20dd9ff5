"""Server-side request forgery through full text and redirects (issue 13.2), real servers.

Entry links come from feed content: they may only reach public addresses, unless
`[watcher] fulltext_allow` names the network. The loopback servers here stand in for an
intranet or a cloud metadata service; a refused one must see no request at all.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import DATA, ConfigWriter
from feedserver import FeedServer, Item, rss

from watcher.daemon import run_once
from watcher.model import Entry
from watcher.reader import fetch as fetch_module
from watcher.reader.fetch import AddressGuard, Fetcher
from watcher.reader.fulltext import fetch_fulltext

ARTICLE = (DATA / "articles" / "wapo-1.html").read_bytes()  # a real article page
HTML = "text/html; charset=utf-8"
SUMMARY = "Kursk residents evacuated, the feed's teaser says."


class LoopbackServer(FeedServer):
    """A FeedServer on another loopback address (127.0.0.2): a second 'private' host."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def entry(link: str) -> Entry:
    return Entry(key="k1", guid="g1", title="Kursk", link=link, canonical_link=link,
                 summary=SUMMARY, published=None, feed_url="file:///feeds/wire.xml",
                 feed_name="Wire")


def redirect_to(target: str) -> web.RequestHandler:  # type: ignore[name-defined]
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": target})
    return handler


def fulltext_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.reason for r in caplog.records  # type: ignore[attr-defined]
            if r.name == "watcher.fulltext"]


async def test_entry_link_to_loopback_is_never_requested(
        feed_server: FeedServer, write_config: ConfigWriter, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A file:// feed (trusted) whose entry points at a loopback server: no request, the
    entry is matched on its feed text, and the reason is logged."""
    caplog.set_level(logging.WARNING, logger="watcher.fulltext")
    article = feed_server.set_feed("latest/meta-data/", ARTICLE, HTML)
    feed = tmp_path / "wire.xml"
    feed.write_bytes(rss([Item("Kursk residents evacuated", article, "g-1", SUMMARY)]))
    config = write_config(f"""
        [watcher]
        state = "state.db"
        first_poll = "alert"

        [[feeds]]
        url = "{feed.as_uri()}"
        name = "Wire"
        fulltext = true

        [[topics]]
        name = "kursk"
        any = ["Kursk residents evacuated"]
        fields = ["title", "summary", "content"]
        channels = ["out"]

        [[channels]]
        name = "out"
        type = "file"
        path = "alerts.jsonl"
        """)
    await run_once(config)
    assert feed_server.hits == []  # the loopback server saw nothing
    [alert] = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert alert["entry"]["title"] == "Kursk residents evacuated"  # matched on the feed text
    [reason] = fulltext_reasons(caplog)
    assert reason.startswith("fetching the page failed: refused to connect to 127.0.0.1:")
    assert "127.0.0.1 is a loopback address" in reason and "fulltext_allow" in reason


async def test_allowed_network_gets_the_request(feed_server: FeedServer,
                                                write_config: ConfigWriter) -> None:
    config = write_config('[watcher]\nfulltext_allow = ["127.0.0.0/8"]\n')
    article = feed_server.set_feed("news/kursk", ARTICLE, HTML)
    fetcher = Fetcher(timeout=5, fulltext_allow=config.watcher.fulltext_allow)
    try:
        [out] = await fetch_fulltext(fetcher, [entry(article)], None)
    finally:
        await fetcher.aclose()
    assert len(feed_server.requests("news/kursk")) == 1
    assert "stormed the Bardo National Museum" in out.content


async def test_redirect_from_an_allowed_server_to_a_refused_address_is_refused(
        feed_server: FeedServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="watcher.fulltext")
    with LoopbackServer("127.0.0.2") as other:
        target = other.set_feed("secret", ARTICLE, HTML)
        link = feed_server.set_handler("go", redirect_to(target))
        fetcher = Fetcher(timeout=5, fulltext_allow=[ipaddress.ip_network("127.0.0.1/32")])
        try:
            [out] = await fetch_fulltext(fetcher, [entry(link)], None)
        finally:
            await fetcher.aclose()
        assert len(feed_server.requests("go")) == 1  # the allowed hop was made
        assert other.hits == []  # the refused one never was
    assert out.content == SUMMARY
    [reason] = fulltext_reasons(caplog)
    assert "refused to connect to 127.0.0.2" in reason and "127.0.0.2 is a loopback" in reason


async def test_names_are_checked_after_resolution(feed_server: FeedServer) -> None:
    """'localhost' is no IP literal: the refusal comes from the address it resolves to."""
    article = feed_server.set_feed("a", ARTICLE, HTML)
    fetcher = Fetcher(timeout=5)
    try:
        result = await fetcher.fetch_link(article.replace("127.0.0.1", "localhost"))
        mapped = await fetcher.fetch_link(article.replace("127.0.0.1", "[::ffff:127.0.0.1]"))
    finally:
        await fetcher.aclose()
    assert feed_server.hits == []
    assert (result.error or "").startswith("refused to connect to localhost:")
    assert "loopback address" in (result.error or "") and result.status == 0
    assert "127.0.0.1 is a loopback address" in (mapped.error or "")  # IPv4-mapped


async def test_a_configured_loopback_feed_reaches_its_own_address_and_allowed_networks(
        feed_server: FeedServer) -> None:
    """An intranet feed is fetched; a redirect from it to another private address is
    refused unless `fulltext_allow` names that network."""
    with LoopbackServer("127.0.0.2") as other:
        final = other.set_feed("feed.xml", [Item("Kursk", "https://news.example/a", "a")])
        direct = feed_server.set_feed("own.xml", [Item("Kursk", "https://news.example/b", "b")])
        url = feed_server.set_handler("feed.xml", redirect_to(final))
        fetcher = Fetcher(timeout=5)
        try:
            own = await fetcher.fetch(direct)
            refused = await fetcher.fetch(url)
            fetcher.fulltext_allow = [ipaddress.ip_network("127.0.0.2/32")]  # a reload
            allowed = await fetcher.fetch(url)
        finally:
            await fetcher.aclose()
        assert own.ok
        assert not refused.ok and "127.0.0.2 is a loopback address" in (refused.error or "")
        assert allowed.ok and len(other.hits) == 1


def answers(monkeypatch: pytest.MonkeyPatch, host: str, *rounds: list[str]) -> list[int]:
    """Make `host` resolve to each list of addresses in turn (the last one stays): a feed's
    own DNS server, which its owner controls. Returns the count of lookups made."""
    real = socket.getaddrinfo
    calls = [0]

    def getaddrinfo(name: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if name != host:
            return real(name, port, *args, **kwargs)
        addresses = rounds[min(calls[0], len(rounds) - 1)]
        calls[0] += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


@pytest.mark.parametrize("first", [["127.0.0.2"], ["93.184.215.14"],
                                   ["127.0.0.2", "93.184.215.14"]])
async def test_a_feeds_dns_cannot_open_the_guard(
        feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch, first: list[str]) -> None:
    """A feed's name answers private (or public, or both) when watcher decides how to fetch
    it, then 127.0.0.1 when it connects: the loopback server must see no request."""
    feed_server.set_feed("secret", [Item("internal", "https://news.example/s", "s")])
    lookups = answers(monkeypatch, "rebind.test", first, ["127.0.0.1"])
    fetcher = Fetcher(timeout=5)
    try:
        result = await fetcher.fetch(f"http://rebind.test:{feed_server.port}/secret")
    finally:
        await fetcher.aclose()
    assert lookups[0] >= 2  # the decision, then the connection
    assert feed_server.hits == [] and not result.ok
    assert "127.0.0.1 is a loopback address" in (result.error or "")


async def test_a_name_once_public_is_never_pinned_to_a_private_address(
        feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A feed's name answers public, and once watcher's cached verdict has expired, only
    127.0.0.1 (rebinding between polls): it is not taken for an intranet feed."""
    feed_server.set_feed("secret", [Item("internal", "https://news.example/s", "s")])
    answers(monkeypatch, "rebind.test", ["93.184.215.14"], ["93.184.215.14"], ["127.0.0.1"])
    monkeypatch.setattr(fetch_module, "TRUST_TTL", 0.0)  # every poll decides afresh
    fetcher = Fetcher(timeout=1)
    try:
        await fetcher.fetch(f"http://rebind.test:{feed_server.port}/secret")  # public: fails
        result = await fetcher.fetch(f"http://rebind.test:{feed_server.port}/secret")
    finally:
        await fetcher.aclose()
    # refused by the guard, or sent to the public address aiohttp's DNS cache still holds
    assert feed_server.hits == [] and not result.ok


@pytest.mark.parametrize("address", ["169.254.169.254", "fe80::1", "64:ff9b::a9fe:a9fe",
                                     "2002:a9fe:a9fe::1"])  # NAT64 and 6to4 forms too
async def test_a_name_resolving_to_a_link_local_address_is_never_pinned(
        monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    """A cloud's metadata service (169.254.169.254) is never an intranet feed's address;
    a LAN name's private address beside its link-local one still is."""
    answers(monkeypatch, "metadata.test", [address])
    fetcher = Fetcher(timeout=1)
    try:
        assert await fetcher._private_addresses("metadata.test") == frozenset()
        monkeypatch.undo()
        answers(monkeypatch, "nas.test", ["192.168.1.20", address])
        assert await fetcher._private_addresses("nas.test") == {
            ipaddress.ip_address("192.168.1.20")}
    finally:
        await fetcher.aclose()


async def test_a_name_seen_public_is_trusted_as_intranet_again_a_day_later(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A feed's host really moved into the intranet is not refused forever."""
    answers(monkeypatch, "moved.test", ["93.184.215.14"], ["10.1.2.3"])
    monkeypatch.setattr(fetch_module, "TRUST_TTL", 0.0)
    fetcher = Fetcher(timeout=1)
    try:
        assert await fetcher._private_addresses("moved.test") == frozenset()
        assert await fetcher._private_addresses("moved.test") == frozenset()  # within a day
        monkeypatch.setattr(fetch_module, "PUBLIC_MEMORY", 0.0)  # a day has passed
        assert await fetcher._private_addresses("moved.test") == {
            ipaddress.ip_address("10.1.2.3")}
    finally:
        await fetcher.aclose()


async def test_a_trusted_intranet_name_cannot_redirect_elsewhere_in_private_space(
        feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name resolving to a private address is fetched there, but a (permanent) redirect
    from it to another private address, such as a metadata service, is refused and the
    feed's URL is not moved."""
    with LoopbackServer("127.0.0.2") as metadata:
        metadata.set_feed("latest/meta-data", [Item("creds", "https://news.example/m", "m")])
        target = metadata.url("latest/meta-data")

        async def moved(request: web.Request) -> web.Response:
            return web.Response(status=301, headers={"Location": target})

        feed_server.set_handler("feed.xml", moved)
        answers(monkeypatch, "intranet.test", ["127.0.0.1"])
        fetcher = Fetcher(timeout=5)
        try:
            result = await fetcher.fetch(f"http://intranet.test:{feed_server.port}/feed.xml")
        finally:
            await fetcher.aclose()
        assert len(feed_server.hits) == 1 and metadata.hits == []
        assert not result.ok and result.moved_to is None
        assert "127.0.0.2 is a loopback address" in (result.error or "")


async def test_a_feed_fetched_as_public_cannot_be_redirected_to_a_private_address(
        feed_server: FeedServer) -> None:
    """What a feed on a public host gets (guarded=True, as the host decides below)."""
    with LoopbackServer("127.0.0.2") as other:
        final = other.set_feed("feed.xml", [Item("Kursk", "https://news.example/a", "a")])
        url = feed_server.set_handler("feed.xml", redirect_to(final))
        fetcher = Fetcher(timeout=5, fulltext_allow=[ipaddress.ip_network("127.0.0.1/32")])
        try:
            result = await fetcher.fetch(url, guarded=True)
        finally:
            await fetcher.aclose()
        assert other.hits == [] and not result.ok
        assert (result.error or "").startswith("refused to connect to 127.0.0.2")


@pytest.mark.parametrize(("host", "reaches"), [
    ("127.0.0.1", {"127.0.0.1"}), ("10.1.2.3", {"10.1.2.3"}), ("::1", {"::1"}),
    ("::ffff:10.1.2.3", {"10.1.2.3"}), ("169.254.169.254", {"169.254.169.254"}),
    ("93.184.216.34", set()), ("2606:4700::1111", set()),
])
async def test_which_private_addresses_a_configured_host_reaches(
        host: str, reaches: set[str]) -> None:
    fetcher = Fetcher()
    try:  # no connection is made
        assert {str(ip) for ip in await fetcher._private_addresses(host)} == reaches
    finally:
        await fetcher.aclose()


async def test_localhost_reaches_only_its_loopback_addresses() -> None:
    fetcher = Fetcher()
    try:
        found = await fetcher._private_addresses("localhost")
    finally:
        await fetcher.aclose()
    assert found and all(ip.is_loopback for ip in found)


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1%eth0", "link-local"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("fd00::1", "private"), ("fec0::1", "site-local"), ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("240.0.0.1", "reserved"), ("100.64.0.1", "non-global"),
    ("2002:7f00:1::", "loopback"), ("64:ff9b::a9fe:a9fe", "link-local"),  # 6to4, NAT64
    ("93.184.216.34", None), ("2606:4700::1111", None), ("64:ff9b::5db8:d822", None),
])
def test_guard_refuses_every_non_public_kind(address: str, kind: str | None) -> None:
    why = AddressGuard().refusal(address)
    assert (why is None) if kind is None else (f"a {kind} address" in (why or ""))


def test_allowed_networks_open_only_themselves() -> None:
    guard = AddressGuard([ipaddress.ip_network("10.1.0.0/16")])
    assert guard.refusal("10.1.200.7") is None
    assert "private" in (guard.refusal("10.2.0.1") or "")
    assert "loopback" in (guard.refusal("127.0.0.1") or "")
