"""The parse stage on real feeds, feedparser's conformance corpus, and fuzzed documents."""

from __future__ import annotations

import ast
import codecs
import itertools
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcher.html import plain_text
from watcher.reader.parse import (
    MAX_SUMMARY_CHARS,
    MAX_TITLE_CHARS,
    FeedParseError,
    ParsedFeed,
    canonical_link,
    parse_feed,
)

DATA = Path(__file__).parent / "data"
FEEDS = DATA / "feeds"
CORPUS = DATA / "feedparser-corpus"
REAL_FEEDS = sorted(FEEDS.glob("*.xml"))


def check_invariants(parsed: ParsedFeed) -> None:
    """What every parse result promises, whatever the input."""
    assert isinstance(parsed.title, str) and len(parsed.title) <= MAX_TITLE_CHARS
    keys = [e.key for e in parsed.entries]
    assert len(keys) == len(set(keys))
    for entry in parsed.entries:
        assert entry.key and isinstance(entry.key, str)
        assert entry.published is None or entry.published.utcoffset() == timedelta(0)
        assert len(entry.summary) <= MAX_SUMMARY_CHARS and len(entry.title) <= MAX_TITLE_CHARS
        assert "<script" not in entry.summary.lower()
        assert entry.canonical_link == canonical_link(entry.link)
        assert canonical_link(entry.canonical_link) == entry.canonical_link


# --- real feeds ---

def test_the_real_feed_set_is_complete() -> None:
    assert len(REAL_FEEDS) == 52


@pytest.mark.parametrize("path", REAL_FEEDS, ids=lambda p: p.stem)
def test_every_real_feed_parses(path: Path) -> None:
    parsed = parse_feed(path.read_bytes(), f"https://example.org/{path.name}")
    assert parsed.entries and parsed.title
    check_invariants(parsed)
    assert all(e.title or e.summary for e in parsed.entries)


def test_real_feeds_keep_their_dates() -> None:
    parsed = parse_feed((FEEDS / "bbc-2.xml").read_bytes(), "https://feeds.bbci.co.uk/news/rss.xml")
    dated = [e.published for e in parsed.entries if e.published]
    assert len(dated) == len(parsed.entries)
    assert all(datetime(2021, 9, 1, tzinfo=UTC) < d < datetime(2021, 10, 18, tzinfo=UTC)
               for d in dated)


def test_one_feed_polled_four_times_shows_seen_entries_and_updated_titles() -> None:
    """bbc-5 -> bbc-4 -> bbc-3 -> bbc-2: the same BBC feed, oldest snapshot first."""
    snapshots = [parse_feed((FEEDS / f"bbc-{n}.xml").read_bytes(),
                            "https://feeds.bbci.co.uk/news/rss.xml") for n in (5, 4, 3, 2)]
    updated_total = 0
    for before, after in itertools.pairwise(snapshots):
        old = {e.key: e for e in before.entries}
        new = {e.key: e for e in after.entries}
        seen = old.keys() & new.keys()
        assert seen, "entries reappear in the next poll under the same key"
        assert new.keys() - old.keys(), "and new entries turn up"
        assert all(new[k].link == old[k].link for k in seen)
        updated_total += sum(1 for k in seen if new[k].title != old[k].title)
    assert updated_total >= 5  # some reappear with a new title: updates, not new stories


def test_duplicate_guids_in_a_real_feed_get_distinct_keys() -> None:
    parsed = parse_feed((FEEDS / "braingle-1.xml").read_bytes(), "https://www.braingle.com/rss")
    check_invariants(parsed)


def _rss(items: list[tuple[str, str, str]]) -> bytes:
    body = "".join(f"<item><title>{escape(t)}</title><guid>{escape(g)}</guid>"
                   f"<link>{escape(link)}</link></item>" for t, g, link in items)
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>{body}'
            "</channel></rss>").encode()


def test_items_sharing_guid_and_link_are_all_kept_and_a_repeat_once() -> None:
    front = "https://example.org/"
    items = [("Floods in Kursk", "g", front), ("Evacuation ordered", "g", front),
             ("Buses leave Sudzha", "g", front), ("Buses leave Sudzha", "g", front),
             ("Own item", "g2", "https://example.org/a")]
    parsed = parse_feed(_rss(items), "https://example.org/rss")
    check_invariants(parsed)
    assert [e.title for e in parsed.entries] == [
        "Floods in Kursk", "Evacuation ordered", "Buses leave Sudzha", "Own item"]
    assert parsed.entries[-1].key == "g2"  # a guid of one item stays its identity


def test_an_untitled_unnamed_feed_is_named_by_its_masked_url() -> None:
    """The name goes into alerts and the desk; the URL stays as configured, for fetching
    and as the store's key."""
    url = ("https://alice:Pa55w0rd-alice@intranet.example/feed/Q8x7Z2k9L4m1N6b3V5c0"
           "?private_token=glpat-Xy12Ab34Cd56Ef78Gh90&lang=en")
    body = _rss([("Floods in Kursk", "g1", "https://example.org/a")]).replace(
        b"<title>x</title>", b"")
    [entry] = parse_feed(body, url).entries
    assert entry.feed_url == url
    assert entry.feed_name == ("https://***:***@intranet.example/feed/***"
                               "?private_token=***&lang=en")
    [named] = parse_feed(body, url, "Intranet").entries
    assert named.feed_name == "Intranet"
    [titled] = parse_feed(_rss([("Floods in Kursk", "g1", "https://example.org/a")]), url).entries
    assert titled.feed_name == "x"


def test_relative_links_never_carry_the_feeds_password_or_token() -> None:
    """An item's link goes to every alert recipient; the feed URL's credentials and query
    are the subscriber's, not the link's."""
    url = ("https://alice:Pa55w0rd@intranet.example:8443/private/rss"
           "?private_token=glpat-Xy12Ab34#latest")
    body = _rss([("Floods in Kursk", "g1", "/news/1"), ("Kursk floods again", "g2", "#top"),
                 ("Floods near Sumy", "g3", "2026/12/floods.html"),
                 ("Sumy", "g4", "https://bob:own@elsewhere.example/a?x=1")])
    links = [entry.link for entry in parse_feed(body, url).entries]
    assert links == ["https://intranet.example:8443/news/1",
                     "https://intranet.example:8443/private/rss#top",
                     "https://intranet.example:8443/private/2026/12/floods.html",
                     "https://bob:own@elsewhere.example/a?x=1"]  # the feed's own, as given


EXPECTED_TITLES = {  # (file, an entry title as the publisher wrote it)
    "ibash-org-ru-1": "Цитата #17703",
    "golem-1": "Zhuque-1: Erste private chinesische Satellitenmission fehlgeschlagen",
    "uol-1": "Ibope: Bolsonaro perde de Haddad, Ciro e Alckmin em simulações de 2º turno",
    "heraldsun-1": "The First Item",
}
SERVER_CHARSETS = [None, "text/xml", "application/rss+xml; charset=utf-8",
                   "text/html; charset=iso-8859-1", "application/xml; charset=us-ascii"]


@pytest.mark.parametrize("content_type", SERVER_CHARSETS)
@pytest.mark.parametrize("declaration", ["kept", "removed"])
@pytest.mark.parametrize("name", sorted(EXPECTED_TITLES))
def test_legacy_encodings_come_out_as_unicode_whatever_the_server_says(
        name: str, declaration: str, content_type: str | None) -> None:
    body = (FEEDS / f"{name}.xml").read_bytes()
    if declaration == "removed":
        body = re.sub(rb"^\s*<\?xml[^>]*\?>", b"", body)
    parsed = parse_feed(body, "https://example.org/feed", content_type=content_type)
    assert EXPECTED_TITLES[name] in [e.title for e in parsed.entries]
    assert not any("\ufffd" in e.title or "Ã" in e.title for e in parsed.entries)


def test_golem_umlauts_survive() -> None:
    parsed = parse_feed((FEEDS / "golem-1.xml").read_bytes(), "https://golem.de/rss")
    assert any("ü" in e.summary for e in parsed.entries)


def test_undeclared_utf8_is_not_read_as_latin1() -> None:
    """dailymail-1 has no XML declaration; feedparser alone reads it as ISO-8859-1."""
    parsed = parse_feed((FEEDS / "dailymail-1.xml").read_bytes(), "https://dailymail.co.uk/")
    assert not any("Â" in e.title for e in parsed.entries)


def test_utf8_feed_with_a_latin1_server_default_is_read_as_utf8() -> None:
    body = (FEEDS / "bbc-russian-1.xml").read_bytes()
    parsed = parse_feed(body, "https://bbc.com/russian",
                        content_type="text/xml; charset=ISO-8859-1")
    assert parsed.title == "BBC Russian — Россия"


@pytest.mark.parametrize("path", sorted((CORPUS / "illformed" / "chardet").glob("*.xml")),
                         ids=lambda p: p.stem)
def test_undeclared_non_latin_encodings_are_detected(path: Path) -> None:
    codec = {"big5": "big5", "eucjp": "euc_jp", "euckr": "euc_kr", "gb2312": "gb2312",
             "koi8r": "koi8_r", "shiftjis": "shift_jis", "tis620": "tis_620",
             "windows1255": "cp1255"}[path.stem]
    text = path.read_bytes().decode(codec, "replace")
    want = re.search(r"<(title|description|summary)>(.*?)</\1>", text, re.S)
    assert want is not None
    parsed = parse_feed(path.read_bytes(), "https://example.org/feed")
    found = [parsed.title] + [t for e in parsed.entries for t in (e.title, e.summary)]
    assert plain_text(want.group(2), MAX_SUMMARY_CHARS)[:20] in " ".join(found)


def test_a_body_that_is_a_local_path_is_not_opened(tmp_path: Path) -> None:
    """feedparser opens a str/bytes argument as a file if it can; we pass a stream."""
    secret = tmp_path / "secret.xml"
    secret.write_text('<rss version="2.0"><channel><title>local secret</title>'
                      "<item><title>private</title></item></channel></rss>")
    with pytest.raises(FeedParseError, match="not an RSS/Atom feed"):
        parse_feed(str(secret).encode(), "https://example.org/feed")


@pytest.mark.timeout(30)
def test_a_body_naming_an_endless_device_is_not_read() -> None:
    with pytest.raises(FeedParseError):
        parse_feed(b"/dev/zero", "https://example.org/feed")


# --- text ---

def test_plain_text_drops_scripts_styles_and_tags() -> None:
    markup = ('<p>Kursk <b>evacuation</b></p><script>alert("x")</script><STYLE>p{color:red}'
              '</STYLE> &amp; more<script src="x">')
    assert plain_text(markup, 100) == "Kursk evacuation & more"


def test_plain_text_reads_double_escaped_html() -> None:
    markup = "&lt;p&gt;Residents &lt;b&gt;evacuated&lt;/b&gt;&lt;script&gt;bad()&lt;/script&gt;"
    assert plain_text(markup, 100) == "Residents evacuated"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("markup", ["<" * 200_000, "<script" * 30_000, "<a " * 70_000,
                                    "&lt;" * 100_000, "<style x" * 25_000])
def test_plain_text_is_linear_on_unclosed_markup(markup: str) -> None:
    text = plain_text(markup, MAX_SUMMARY_CHARS)
    assert "<script" not in text.lower() and len(text) <= MAX_SUMMARY_CHARS


# --- links ---

@pytest.mark.parametrize(("link", "canonical"), [
    ("HTTPS://News.Example.COM/World/Story", "https://news.example.com/World/Story"),
    ("https://news.example/a#comments", "https://news.example/a"),
    ("https://news.example/a?utm_source=rss&utm_medium=feed&id=7", "https://news.example/a?id=7"),
    ("https://news.example/a?fbclid=X&gclid=Y&UTM_Campaign=z", "https://news.example/a"),
    ("https://news.example:443/a", "https://news.example/a"),
    ("http://news.example:80/a", "http://news.example/a"),
    ("http://news.example:8080/a", "http://news.example:8080/a"),
    ("https://news.example/a?b=2&a=1", "https://news.example/a?a=1&b=2"),
    ("https://news.example", "https://news.example/"),
    ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ("https://news.example/article.php?cid=12&id=4", "https://news.example/article.php?cid=12&id=4"),
])
def test_canonical_link(link: str, canonical: str) -> None:
    assert canonical_link(link) == canonical
    assert canonical_link(canonical) == canonical


def test_canonical_link_ignores_parameter_order_and_keeps_path_case() -> None:
    assert canonical_link("https://x.example/A/b?z=1&a=2") == \
        canonical_link("https://X.example/A/b?a=2&z=1#top")
    assert canonical_link("https://x.example/A") != canonical_link("https://x.example/a")


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.text(max_size=80),
    st.builds(lambda scheme, host, port, path, query, frag: f"{scheme}://{host}{port}{path}"
              f"{query}{frag}",
              st.sampled_from(["http", "HTTPS", "ftp", ""]),
              st.text(st.characters(codec="utf-8", exclude_characters="/?#"), max_size=15),
              st.sampled_from(["", ":80", ":443", ":8080", ":0", ":x", ":99999"]),
              st.text(max_size=20).map(lambda s: "/" + s),
              st.lists(st.tuples(st.sampled_from(["utm_source", "id", "a", "", "fbclid", "Q"]),
                                 st.text(max_size=8)), max_size=4).map(
                  lambda kv: "?" + "&".join(f"{k}={v}" for k, v in kv)),
              st.sampled_from(["", "#frag", "#"]))))
def test_canonical_link_is_idempotent(link: str) -> None:
    once = canonical_link(link)
    assert canonical_link(once) == once


# --- fuzzing the whole parse-normalise step ---

def parse_or_reject(body: bytes, content_type: str | None = None) -> ParsedFeed | None:
    try:
        parsed = parse_feed(body, "https://fuzz.example/feed.xml", content_type=content_type)
    except FeedParseError as exc:
        assert str(exc)
        return None
    check_invariants(parsed)
    return parsed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.sampled_from([None, "text/xml", "text/html",
                                                   "application/rss+xml; charset=utf-8"]))
def test_arbitrary_bytes_parse_or_raise_feed_parse_error(body: bytes, ctype: str | None) -> None:
    parse_or_reject(body, ctype)


MARKUP = st.sampled_from(["", "<p>", "</p>", "<b>x</b>", "<script>alert(1)</script>",
                          "<style>p{}</style>", "<script>", "&lt;script&gt;", "&amp;", "&nbsp;",
                          "<![CDATA[", "]]>", "<", ">", "&", "&#0;", "&#xD800;", "\x00", "\ufeff"])
FUZZ_TEXT = st.lists(st.one_of(st.text(max_size=15), MARKUP), max_size=6).map("".join)
DATES = st.one_of(
    st.datetimes(min_value=datetime(1800, 1, 1), max_value=datetime(3000, 12, 31),
                 timezones=st.just(UTC)).map(lambda d: format_datetime(d, usegmt=True)),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
        lambda d: d.isoformat() + "Z"),
    st.text(max_size=30))


@st.composite
def feed_documents(draw: st.DrawFn) -> bytes:
    atom = draw(st.booleans())
    raw = draw(st.booleans())  # raw: fields inserted unescaped (often malformed), else escaped

    def field(value: str) -> str:
        if raw:
            return value
        return f"<![CDATA[{value.replace(']]>', '')}]]>" if draw(st.booleans()) else escape(value)

    items = []
    for _ in range(draw(st.integers(0, 5))):
        title, summary, link = draw(FUZZ_TEXT), draw(FUZZ_TEXT), draw(
            st.one_of(st.text(max_size=40), st.just("https://Ex.example/a?utm_source=x#f")))
        guid, date = draw(st.one_of(st.none(), st.text(max_size=20))), draw(DATES)
        if atom:
            items.append(f"<entry><title type='html'>{field(title)}</title><link href="
                         f"'{escape(link, {chr(39): '&apos;'})}'/><summary type='html'>"
                         f"{field(summary)}</summary><updated>{field(date)}</updated>"
                         + (f"<id>{field(guid)}</id>" if guid is not None else "") + "</entry>")
        else:
            items.append(f"<item><title>{field(title)}</title><link>{field(link)}</link>"
                         f"<description>{field(summary)}</description><pubDate>{field(date)}"
                         "</pubDate>" + (f"<guid>{field(guid)}</guid>" if guid is not None else "")
                         + "</item>")
    encoding = draw(st.sampled_from(["utf-8", "iso-8859-1", "windows-1251", "utf-16"]))
    head = f'<?xml version="1.0" encoding="{encoding}"?>' if draw(st.booleans()) else ""
    title = field(draw(FUZZ_TEXT))
    if atom:
        doc = (f'{head}<feed xmlns="http://www.w3.org/2005/Atom"><title>{title}</title>'
               f'{"".join(items)}</feed>')
    else:
        doc = f'{head}<rss version="2.0"><channel><title>{title}</title>{"".join(items)}' \
              "</channel></rss>"
    return doc.encode(encoding, "xmlcharrefreplace" if encoding != "utf-16" else "surrogatepass")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feed_documents())
def test_structured_feeds_with_random_text_keep_the_invariants(body: bytes) -> None:
    parse_or_reject(body)


@pytest.mark.parametrize(("date", "expected"), [
    ("Mon, 24 Feb 2025 10:00:00 GMT", datetime(2025, 2, 24, 10, tzinfo=UTC)),
    ("2025-02-24T12:00:00+02:00", datetime(2025, 2, 24, 10, tzinfo=UTC)),
    ("Mon, 01 Jan 1900 00:00:00 GMT", None),
    ("Sat, 01 Jan 3000 00:00:00 GMT", None),
    ("yesterday-ish", None),
    ("", None),
])
def test_dates_are_aware_utc_or_none(date: str, expected: datetime | None) -> None:
    body = (f'<rss version="2.0"><channel><title>t</title><item><title>a</title>'
            f"<pubDate>{date}</pubDate></item></channel></rss>").encode()
    [entry] = parse_feed(body, "https://example.org/feed").entries
    assert entry.published == expected


# --- feedparser's own corpus ---

EXPECT = re.compile(r"^Expect:\s*(?:not bozo and |bozo and )?(feed|entries\[0\])"
                    r"(?:\['(\w+)'\]|\.(\w+))\s*==\s*(.+?)\s*$", re.M)
HEADER = re.compile(r"^Header:\s*Content-type:\s*(.+?)\s*$", re.M | re.I)
SKIP_CODEC = re.compile(r"^SkipUnless:\s*__import__\('codecs'\)\.lookup\('([^']+)'\)", re.M)
# Where we knowingly differ from feedparser's expectation, and why.
DEVIATIONS = {
    "encoding/bozo_linenoise.xml": "UTF-8 with a bad byte is repaired (U+FFFD), not read as cp1252",
    "entities/160.xml": "truncated document with no entries: 'malformed feed', not an empty feed",
    "entities/8217.xml": "same: truncated, no entries",
    "entities/9830.xml": "same: truncated, no entries",
    "wellformed/atom10/entry_id_no_normalization_4.xml": "feedparser resolves Atom ids "
    "against the feed URL we give it (scheme lower-cased)",
    "wellformed/atom10/entry_id_with_attributes.xml": "same: relative Atom id resolved",
    "wellformed/base/http_entry_id_base_content_location.xml": "needs the Content-Location "
    "header of feedparser's test server; we pass the feed URL",
    "wellformed/base/http_item_link_base_content_location.xml": "same: Content-Location",
    "wellformed/base/http_entry_id_base_docuri.xml": "an entry id is an identity, not a "
    "link: kept as published, not resolved against the document's URL",
    "wellformed/cdf/channel_href_map_link.xml": "CDF (1997) is not read as a feed",
    "wellformed/cdf/channel_title.xml": "CDF (1997) is not read as a feed",
}


def _ours(parsed: ParsedFeed, where: str, field: str) -> tuple[str | None, str] | None:
    """Our value for feedparser's field, and how to normalise feedparser's expected value.

    We drop entries with no title, summary or link (nothing to match): such an entry counts
    as empty text fields, and its id is not compared.
    """
    if where == "feed":
        return (parsed.title, "title") if field == "title" else None
    entry = parsed.entries[0] if parsed.entries else None
    if entry is None and field == "id":
        return None
    return {"title": (entry.title if entry else "", "title"),
            "description": (entry.summary if entry else "", "summary"),
            "summary": (entry.summary if entry else "", "summary"),
            "link": (entry.link if entry else None, "exact"),
            "id": (entry.guid if entry else None, "exact")}.get(field)


def test_feedparser_corpus() -> None:
    files = sorted(CORPUS.rglob("*.xml"))
    assert len(files) >= 500
    checked, problems = 0, []
    for path in files:
        name = path.relative_to(CORPUS).as_posix()
        text = path.read_bytes().decode("latin-1")
        header = HEADER.search(text)
        try:
            parsed = parse_feed(path.read_bytes(), f"http://127.0.0.1:8097/{name}",
                                content_type=header.group(1) if header else None)
        except FeedParseError as exc:  # fine for broken documents; never anything else
            if EXPECT.search(text) and name not in DEVIATIONS:
                problems.append(f"{name}: refused ({exc}) but feedparser reads it")
            continue
        check_invariants(parsed)
        expect, skip = EXPECT.search(text), SKIP_CODEC.search(text)
        if not expect or name in DEVIATIONS or (skip and not _known_codec(skip.group(1))):
            continue
        try:
            expected = ast.literal_eval(expect.group(4))
        except (ValueError, SyntaxError):
            continue
        ours = _ours(parsed, expect.group(1), expect.group(2) or expect.group(3))
        if ours is None or not isinstance(expected, str):
            continue
        value, how = ours
        want = {"title": plain_text(expected, MAX_TITLE_CHARS),
                "summary": plain_text(expected, MAX_SUMMARY_CHARS),
                "exact": expected.strip() or None}[how]
        checked += 1
        if value != want:
            problems.append(f"{name}: {value!r} != {want!r}")
    assert problems == []
    assert checked >= 400


def _known_codec(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


# --- documents over the entry cap (issue 14.3) ---

def capped_feed(order: list[int], dated: bool = True) -> bytes:
    """Entries numbered by age (0 = the newest, an hour apart), in this document order."""
    from feedserver import Item, rss

    now = datetime.now(UTC).replace(microsecond=0)
    return rss([Item(f"Story {age}", f"https://news.example/{age}", f"g-{age}", "Text.",
                     now - timedelta(hours=age) if dated else None) for age in order])


@pytest.mark.parametrize(("name", "order"), [
    ("newest first", list(range(150))),
    ("oldest first", list(range(149, -1, -1))),
    ("shuffled", [(i * 37) % 150 for i in range(150)]),
])
def test_over_the_cap_the_newest_entries_are_kept(name: str, order: list[int]) -> None:
    parsed = parse_feed(capped_feed(order), "https://news.example/feed", max_entries=100)
    kept = [int(e.title.split()[1]) for e in parsed.entries]
    assert sorted(kept) == list(range(100))  # the 100 newest, whatever the order
    assert kept == [age for age in order if age < 100]  # in document order
    assert parsed.warning and parsed.warning.startswith("150 entries; only 100 were read, ")


def test_oldest_first_feed_over_the_cap_says_so() -> None:
    parsed = parse_feed(capped_feed(list(range(149, -1, -1))), "x", max_entries=100)
    assert parsed.warning == ("150 entries; only 100 were read, the last ones: the feed lists"
                              " the oldest first")


@pytest.mark.parametrize(("dates", "expected"), [
    ("none", list(range(100))),  # no dates: the first N (feeds list the newest first)
    ("a few, oldest first", list(range(50, 150))),  # the dated ones show the order
])
def test_undated_entries_over_the_cap_go_by_position(dates: str, expected: list[int]) -> None:
    from feedserver import Item, rss

    now = datetime.now(UTC).replace(microsecond=0)
    items = [Item(f"Story {i}", f"https://news.example/{i}", f"g-{i}") for i in range(150)]
    if dates != "none":  # document position i; only two entries carry dates
        items[10].published = now - timedelta(days=3)
        items[140].published = now - timedelta(days=1)
    parsed = parse_feed(rss(items), "x", max_entries=100)
    assert [int(e.title.split()[1]) for e in parsed.entries] == expected
