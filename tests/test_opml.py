"""OPML import and export against the formats real readers write (issue 10)."""

from __future__ import annotations

import socket
import textwrap
import tomllib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import DATA

from watcher.config import FeedSettings, load_config
from watcher.reader.opml import (
    OpmlError,
    OpmlFeed,
    export_opml,
    merge_into_feeds_file,
    read_opml,
    url_key,
)

SAMPLES = DATA / "opml"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def by_url(feeds: list[OpmlFeed]) -> dict[str, OpmlFeed]:
    return {f.url: f for f in feeds}


def test_miniflux_categories_become_tags_and_crawler_means_fulltext() -> None:
    read = read_opml(sample("miniflux.opml"))
    feeds = by_url(read.feeds)
    assert feeds["https://hnrss.org/frontpage"] == OpmlFeed(
        "https://hnrss.org/frontpage", "Hacker News: Front Page", ("All",), False)
    mt = feeds["https://www.themoscowtimes.com/rss/news"]
    assert mt.tags == ("Russia",) and mt.fulltext
    assert feeds["https://kyivindependent.com/news-archive/rss/"].tags == ("Ukraine",)
    assert read.skipped == [("https://www.pravda.com.ua/eng/rss/view_news/",
                             "disabled in the reader it came from")]


def test_freshrss_namespaced_outlines_and_scrapers() -> None:
    read = read_opml(sample("freshrss.opml"))
    feeds = by_url(read.feeds)
    assert feeds["https://meduza.io/rss/en/all"].fulltext  # frss:cssFullContent
    assert feeds["https://meduza.io/rss/en/all"].title == "Meduza — English"
    lemonde = "https://www.lemonde.fr/international/rss_full.xml?utm_source=rss&utm_medium=freshrss"
    assert feeds[lemonde].title == "Le Monde & l’international"
    assert feeds[lemonde].tags == ("Europe",)
    assert [url for url, _ in read.skipped] == ["https://www.example.net/newsroom.html"]
    assert "HTML+XPath" in read.skipped[0][1]


def test_newsboat_opml1_is_flat_with_titles_that_may_be_empty() -> None:
    feeds = read_opml(sample("newsboat-opml1.opml")).feeds
    assert [(f.title, f.tags) for f in feeds] == [
        ("The Moscow Times - Independent News from Russia", ()),
        ("The Kyiv Independent", ()), ("", ())]


def test_newsboat_opml2_category_tags_title_override_and_hidden_marker() -> None:
    feeds = read_opml(sample("newsboat-opml2.opml")).feeds
    assert [f.tags for f in feeds] == [("russia", "news"), ("ukraine", "news", "tag/with slash"),
                                       ("business",)]
    assert feeds[2].title == "BBC Business"  # the "~BBC Business" tag is a title


def test_feedly_lists_a_feed_per_category_we_keep_it_once_with_both_tags() -> None:
    feeds = read_opml(sample("feedly.opml")).feeds
    assert len(feeds) == 3
    bbc = by_url(feeds)["http://feeds.bbci.co.uk/news/world/rss.xml"]
    assert bbc.tags == ("World", "Russia/Ukraine")
    assert by_url(feeds)["https://www.aljazeera.com/xml/rss/all.xml"].title.endswith(
        "from Al Jazeera")  # Feedly's trailing space trimmed


def test_messy_export_is_read_as_far_as_it_makes_sense() -> None:
    read = read_opml(sample("messy.opml"))
    feeds = by_url(read.feeds)
    reuters = "https://www.reutersagency.com/feed/?best-topics=political-general&post_type=best"
    assert feeds[reuters].tags == ("Inoreader style", "world", "wires")
    upper = feeds["https://Feeds.Example.ORG:443/upper.xml"]
    assert upper.title == "Upper case" and upper.tags == ("dupes",)  # its duplicate merged
    assert "http://blog.example.org/atom.xml" in feeds  # feed://
    assert feeds["https://notitle.example.org/rss"].title == ""
    assert "https://www.example.org/about" not in feeds  # type="link" is a web page
    assert len(read.feeds) == 4
    assert {reason for _, reason in read.skipped} == {"not an http(s) URL"}


@pytest.mark.parametrize("data", [
    b"<html><body><p>not opml</p></body></html>",
    b"\x00\x01 binary",
    b"",
])
def test_what_is_not_opml_is_an_error(data: bytes) -> None:
    with pytest.raises(OpmlError):
        read_opml(data)


def test_broken_markup_is_recovered_when_lxml_is_there() -> None:
    pytest.importorskip("lxml")
    data = (b'<opml version="2.0"><body><outline text="News">'
            b'<outline text="A" xmlUrl="https://a.example/rss"></outline>'
            b'<outline text="B" xmlUrl="https://b.example/rss">'  # never closed
            b"</body></opml>")
    assert [f.url for f in read_opml(data).feeds] == ["https://a.example/rss",
                                                "https://b.example/rss"]


def test_broken_markup_with_its_own_entities_is_an_error_not_a_crash() -> None:
    pytest.importorskip("lxml")
    data = (b'<!DOCTYPE opml [<!ENTITY t "Tech">]><opml version="2.0"><body>'
            b'<outline text="&t;" xmlUrl="https://tech.example/feed"></body></opml>')
    with pytest.raises(OpmlError, match="not well-formed"):
        read_opml(data)


def test_entities_are_not_expanded_from_outside() -> None:
    data = (b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<opml version="2.0"><body><outline text="&x;" xmlUrl="https://a.example/r"/>'
            b"</body></opml>")
    try:
        feeds = read_opml(data).feeds
    except OpmlError:
        return
    assert "root:" not in feeds[0].title


@pytest.mark.parametrize(("a", "b"), [
    ("https://Example.ORG/feed", "https://example.org/feed"),
    ("https://example.org:443/feed#x", "https://example.org/feed"),
    ("http://example.org:80", "http://example.org/"),
])
def test_url_key_equates_what_is_the_same_feed(a: str, b: str) -> None:
    assert url_key(a) == url_key(b)


def test_url_key_keeps_what_may_differ() -> None:
    assert url_key("https://example.org/feed?a=1") != url_key("https://example.org/feed?a=2")
    assert url_key("http://example.org/feed") != url_key("https://example.org/feed")


# ---------------------------------------------------------------- merging


def main_config(tmp_path: Path, feeds: str = "") -> Path:
    path = tmp_path / "watcher.toml"
    path.write_text(textwrap.dedent(f"""
        include = ["feeds.d/*.toml"]
        [watcher]
        state = "state.db"
        {feeds}
        """), encoding="utf-8")
    return path


def test_import_writes_a_feeds_file_the_config_includes(tmp_path: Path) -> None:
    config_path = main_config(tmp_path, '[[feeds]]\nurl = "https://www.themoscowtimes.com/rss/news"')
    config = load_config(config_path)
    target = tmp_path / "feeds.d" / "imported.toml"
    added, skipped = merge_into_feeds_file(target, read_opml(sample("miniflux.opml")).feeds,
                                           [f.url for f in config.feeds])
    assert [f.url for f in added] == ["https://hnrss.org/frontpage",
                                      "https://meduza.io/rss/en/all",
                                      "https://kyivindependent.com/news-archive/rss/"]
    assert [(f.url, why) for f, why in skipped] == [
        ("https://www.themoscowtimes.com/rss/news", "already configured")]
    reloaded = load_config(config_path)
    assert target in reloaded.files
    meduza = next(f for f in reloaded.feeds if f.url == "https://meduza.io/rss/en/all")
    assert (meduza.name, meduza.tags, meduza.fulltext) == ("Meduza — English", ("Russia",), True)


def test_importing_again_adds_nothing_and_keeps_the_file(tmp_path: Path) -> None:
    target = tmp_path / "feeds.d" / "imported.toml"
    feeds = read_opml(sample("feedly.opml")).feeds
    merge_into_feeds_file(target, feeds, [])
    before = target.read_text(encoding="utf-8")
    added, skipped = merge_into_feeds_file(target, feeds, [])
    assert added == [] and len(skipped) == 3
    assert target.read_text(encoding="utf-8") == before
    added, _ = merge_into_feeds_file(target, read_opml(sample("newsboat-opml2.opml")).feeds, [])
    assert [f.url for f in added] == ["https://kyivindependent.com/news-archive/rss/",
                                      "http://feeds.bbci.co.uk/news/business/rss.xml?edition=int"]
    assert target.read_text(encoding="utf-8").startswith(before)  # appended, comments kept
    assert [p.name for p in target.parent.iterdir()] == ["imported.toml"]  # no temp files


def test_names_and_tags_are_escaped_for_toml(tmp_path: Path) -> None:
    target = tmp_path / "imported.toml"
    tricky = OpmlFeed('https://a.example/rss?x="1"&y=\\2', 'Quote " back\\slash\nnew line\x7f',
                      ("tag, with comma", "Ünïcödé", "x]y"), True)
    merge_into_feeds_file(target, [tricky], [])
    [table] = tomllib.loads(target.read_text(encoding="utf-8"))["feeds"]
    assert table == {"url": tricky.url, "name": tricky.title, "tags": list(tricky.tags),
                     "fulltext": True}


def test_a_broken_feeds_file_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "imported.toml"
    target.write_text("[[feeds]\nurl = ", encoding="utf-8")
    with pytest.raises(OpmlError, match="not valid TOML"):
        merge_into_feeds_file(target, [OpmlFeed("https://a.example/rss")], [])
    assert target.read_text(encoding="utf-8") == "[[feeds]\nurl = "


# ---------------------------------------------------------------- export


FEEDS = [
    FeedSettings(url="https://www.themoscowtimes.com/rss/news", name="The Moscow Times",
                 tags=("russia", "news"), fulltext=True),
    FeedSettings(url="https://kyivindependent.com/news-archive/rss/?a=1&b=2",
                 name='Kyiv "Independent" <news>', tags=("ukraine", "news", "a,b")),
    FeedSettings(url="https://lwn.net/headlines/newrss"),
    FeedSettings(url="file:///var/lib/feeds/local.xml", name="Local"),
]


def test_export_is_opml_2_with_tags_as_categories() -> None:
    data = export_opml(FEEDS, now=datetime(2025, 6, 3, 8, 0, tzinfo=UTC))
    root = ET.fromstring(data)
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/dateCreated") == "Tue, 03 Jun 2025 08:00:00 GMT"
    outlines = list(root.iter("outline"))
    assert all(o.get("text") for o in outlines)  # required by the spec on every outline
    feeds = {o.get("xmlUrl"): o for o in outlines if o.get("xmlUrl")}
    assert set(feeds) == {f.url for f in FEEDS[:3]}  # file: feeds cannot be shared
    assert feeds[FEEDS[1].url].get("category") == "ukraine,news,a_b"
    assert feeds[FEEDS[1].url].get("title") == 'Kyiv "Independent" <news>'
    assert [o.get("text") for o in root.find("body") or []] == ["russia", "ukraine",
                                                                "https://lwn.net/headlines/newrss"]


def test_export_then_import_gives_the_same_feeds() -> None:
    back = by_url(read_opml(export_opml(FEEDS)).feeds)
    assert back[FEEDS[0].url] == OpmlFeed(FEEDS[0].url, "The Moscow Times", ("russia", "news"),
                                          True)
    assert back[FEEDS[1].url].tags == ("ukraine", "news", "a_b")
    assert back[FEEDS[2].url] == OpmlFeed(FEEDS[2].url)


HOSTILE_LIST = b"""<?xml version="1.0"?>
<opml version="2.0"><head><title>shared list</title></head><body>
<outline text="News" title="News">
  <outline type="rss" text="Meduza" xmlUrl="https://meduza.io/rss/en/all"/>
  <outline type="rss" text="cloud" xmlUrl="http://169.254.169.254/latest/meta-data/iam/"/>
  <outline type="rss" text="docker" xmlUrl="http://127.0.0.1:2375/containers/json"/>
  <outline type="rss" text="mapped" xmlUrl="http://[::ffff:10.0.0.5]/feed"/>
  <outline type="rss" text="ci" xmlUrl="https://jenkins.internal/rssAll"/>
  <outline type="rss" text="nas" xmlUrl="http://nas/feed"/>
  <outline type="rss" text="local" xmlUrl="http://LOCALHOST./feed"/>
  <outline type="rss" text="hex" xmlUrl="http://0x7f.0.0.1:2375/containers/json"/>
  <outline type="rss" text="short" xmlUrl="http://127.1/feed"/>
  <outline type="rss" text="octal" xmlUrl="http://0177.0.0.1/feed"/>
  <outline type="rss" text="rebound" xmlUrl="https://feeds.rebound.example/rss"/>
  <outline type="rss" text="nat64" xmlUrl="http://[64:ff9b::a9fe:a9fe]/latest/meta-data/"/>
  <outline type="rss" text="sitelocal" xmlUrl="http://[fec0::1]/feed"/>
</outline></body></opml>"""


def test_a_shared_list_cannot_add_feeds_on_private_hosts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`watcher feeds import` skips (and names) feeds on loopback, private, link-local and
    intranet hosts, IP addresses in legacy forms and names resolving to private addresses,
    since a configured feed's own host is trusted; --allow-private adds them."""
    from watcher.cli import main

    real = socket.getaddrinfo

    def list_authors_dns(host: str, *args: object, **kwargs: object) -> object:
        if host == "feeds.rebound.example":  # a public-looking name the list's author runs
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 0))]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", list_authors_dns)
    config_path = main_config(tmp_path)
    opml_file = tmp_path / "shared.opml"
    opml_file.write_bytes(HOSTILE_LIST)
    assert main(["feeds", "import", "--config", str(config_path), str(opml_file)]) == 0
    out = capsys.readouterr().out
    assert [f.url for f in load_config(config_path).feeds] == ["https://meduza.io/rss/en/all"]
    skipped = [line for line in out.splitlines() if line.startswith("  skipped ")]
    assert len(skipped) == 12 and all("--allow-private" in line for line in skipped)
    for private in ("169.254.169.254", "127.0.0.1:2375", "10.0.0.5", "jenkins.internal",
                    "http://nas/feed", "LOCALHOST./feed", "0x7f.0.0.1", "127.1/feed",
                    "0177.0.0.1", "resolves to 10.1.2.3", "64:ff9b::a9fe:a9fe", "fec0::1"):
        assert any(private in line for line in skipped), private
    assert main(["feeds", "import", "--config", str(config_path), "--allow-private",
                 str(opml_file)]) == 0
    assert len(load_config(config_path).feeds) == 13
