"""Parse stage: feed bytes -> normalised Entry objects (pure; runs in a worker process).

feedparser reads (strict XML, then a lenient parser for broken feeds). Around it: the body
goes in as a stream (a bytes argument naming a file would be opened); DTD entities are
bounded and the charset is chosen as mature readers do (`_safe_replace_doctype` and
`_fix_charset`, in watcher.reader.decoding); fields become bounded plain text without
scripts, in linear time; entries are keyed and canonical links made in
watcher.reader.identity (`canonical_link` and `link_identities` are imported from here too).
"""

from __future__ import annotations

import calendar
import functools
import io
import itertools
import math
import re
import xml.sax
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from msgspec import Struct

from watcher.html import plain_text, without_controls
from watcher.model import Entry
from watcher.reader.decoding import _fix_charset, _safe_replace_doctype
from watcher.reader.identity import _distinct, _entry_key, canonical_link, link_identities
from watcher.redact import mask_url

# What callers and tests import from here, wherever it is defined.
__all__ = [
    "MAX_SUMMARY_CHARS",
    "MAX_TITLE_CHARS",
    "FeedParseError",
    "ParseMemoryError",
    "ParsedFeed",
    "canonical_link",
    "link_identities",
    "parse_feed",
]

MAX_SUMMARY_CHARS = 4000
MAX_TITLE_CHARS = 1000
MAX_ENTRIES = 10_000  # entries read from one document: the newest (see _keep_newest)
_EARLIEST = datetime(1995, 1, 1, tzinfo=UTC)  # before RSS existed: a placeholder date
_FUTURE_SLACK = timedelta(days=2)


class FeedParseError(Exception):
    """The body is not a usable feed; the message says why."""


class ParseMemoryError(FeedParseError):
    """Parsing the document ran out of memory (in a parse worker: its memory limit)."""


class ParsedFeed(Struct, frozen=True):
    title: str
    entries: list[Entry]
    warning: str | None  # feedparser's complaint about a feed it could still read


# --- entries ---

def _date(entry: Any, now: datetime) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = dict.get(entry, key)  # not FeedParserDict.get: it warns about a fallback
        if parsed:
            try:
                value = datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)
            except (OverflowError, ValueError, OSError, TypeError):
                continue
            if _EARLIEST <= value <= now + _FUTURE_SLACK:
                return value
    return None


def _absolute(link: str, feed_url: str) -> str | None:
    """A link made absolute against the feed's URL (feedparser is not asked to: it would
    resolve every URI of every element, a fifth of the parse time)."""
    if not link:
        return None
    if "://" in link[:12] or link.startswith(("mailto:", "urn:", "tag:")):
        return link
    return urljoin(_link_base(feed_url), link)


@functools.lru_cache(maxsize=1024)
def _link_base(feed_url: str) -> str:
    """The feed's URL without what only its subscriber may know: a user and password, a
    query (often an access token) and a fragment. An item's relative link ("/news/1",
    "#top") resolved against the whole URL would carry them into every alert."""
    parts = urlsplit(feed_url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def language_code(value: object) -> str:
    """A declared language ("en-US", "ru_RU", "de") as its ISO 639-1 code; "" if none."""
    code = str(value or "").strip().lower().replace("_", "-").split("-")[0]
    return code if len(code) == 2 and code.isalpha() else ""


def to_entry(raw: Any, feed_url: str, feed_name: str, now: datetime,
             language: str = "") -> Entry:
    """One feedparser entry as an Entry (`language`: the feed's declared one)."""
    title = plain_text(raw.get("title") or "", MAX_TITLE_CHARS)
    link = _absolute(without_controls(raw.get("link") or "").strip(), feed_url)
    guid = (raw.get("id") or "").strip() or None
    summary = plain_text(raw.get("summary") or (raw.get("content") or [{}])[0].get("value", ""),
                         MAX_SUMMARY_CHARS)
    canon = canonical_link(link)
    return Entry(key=_entry_key(guid, canon, title, summary), guid=guid, title=title, link=link,
                 canonical_link=canon, summary=summary, published=_date(raw, now),
                 feed_url=feed_url, feed_name=feed_name,
                 language=language_code(raw.get("language")) or language)


# --- the document ---

@functools.cache
def _fp() -> Any:
    """feedparser, with watcher's DOCTYPE step; imported when first needed (the daemon's
    own process never parses: its workers do, and their forkserver preloads it)."""
    import feedparser
    import feedparser.api

    feedparser.api.replace_doctype = _safe_replace_doctype
    return feedparser


def _feedparser(body: bytes, headers: dict[str, str], *, strict: bool) -> Any:
    """feedparser on a stream (a str or bytes argument is opened as a path or URL if it can).

    `strict` (well-formed feeds): no sanitising or URI rewriting of HTML, which halves the
    cost; summaries become plain text (plain_text drops script and style) and no feed HTML
    is ever rendered."""
    try:
        parsed = _fp().parse(io.BytesIO(body), response_headers=headers,
                                  sanitize_html=not strict, resolve_relative_uris=not strict)
    except RecursionError:
        raise FeedParseError("feed too deeply nested to read") from None
    except MemoryError:
        raise ParseMemoryError("feed too large to read: parsing ran out of memory") from None
    except Exception as exc:  # feedparser's lenient parser on hostile markup
        raise FeedParseError(f"unreadable feed: {type(exc).__name__}: {exc}"[:300]) from None
    if isinstance(parsed.get("bozo_exception"), MemoryError):  # feedparser kept it quiet
        raise ParseMemoryError("feed too large to read: parsing ran out of memory")
    return parsed


def _stamp(raw: Any, earliest: float, latest: float) -> float | None:
    """An entry's date as a POSIX time, if it has a plausible one (as `_date` reads it)."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = dict.get(raw, key)
        if parsed:
            try:
                value = float(calendar.timegm(parsed))
            except (OverflowError, ValueError, TypeError):
                continue
            if earliest <= value <= latest:
                return value
    return None


def _or_oldest(stamp: float | None) -> float:
    return -math.inf if stamp is None else stamp


def _keep_newest(raws: list[Any], limit: int, now: datetime) -> tuple[list[Any], str]:
    """The newest `limit` entries, in document order, and how they were chosen.

    Dates running in order (either way): by position, from the newest end. Dates out of
    order: the newest by date (undated ones last). No dates: the first (feeds list the
    newest first, unless their dates say otherwise)."""
    stamps = [_stamp(r, _EARLIEST.timestamp(), (now + _FUTURE_SLACK).timestamp())
              for r in raws]
    dated = [s for s in stamps if s is not None]
    rising = all(a <= b for a, b in itertools.pairwise(dated))
    falling = all(a >= b for a, b in itertools.pairwise(dated))
    if not (rising or falling):
        ranked = sorted(range(len(raws)), reverse=True,  # stable: ties keep document order
                        key=lambda i: _or_oldest(stamps[i]))
        return [raws[i] for i in sorted(ranked[:limit])], "the newest by date"
    if rising and dated and dated[0] < dated[-1]:
        return raws[-limit:], "the last ones: the feed lists the oldest first"
    return raws[:limit], "the first ones: the feed lists the newest first" if dated else \
        "the first ones: the feed has no dates"


def parse_feed(body: bytes, feed_url: str, feed_name: str = "",
               content_type: str | None = None, *,
               max_entries: int = MAX_ENTRIES) -> ParsedFeed:
    """Parse a feed document; raise FeedParseError when it is not one.

    Of a document with more than `max_entries` entries, the newest are read."""
    if not body.strip():
        raise FeedParseError("empty response: the server sent no feed document (0 bytes)")
    body, effective_type = _fix_charset(body.lstrip(), content_type)  # "\n<?xml" is common
    headers: dict[str, str] = {}
    if effective_type:
        headers["content-type"] = effective_type
    parsed = _feedparser(body, headers, strict=True)
    if parsed.get("bozo_exception") and parsed.entries and not _harmless(
            parsed["bozo_exception"]):
        # Malformed XML was read by feedparser's lenient parser, whose raw text keeps
        # stray "&"s as entities ("AT&T;"); its sanitiser puts them right.
        parsed = _feedparser(body, headers, strict=False)
    problem = parsed.get("bozo_exception")
    if not parsed.entries and not parsed.get("version"):
        raise FeedParseError(_not_a_feed(body, feed_url, content_type, problem))
    if not parsed.entries and problem and not _harmless(problem):
        raise FeedParseError(f"malformed feed, nothing readable: {_describe(problem)}")
    title = plain_text(parsed.feed.get("title") or "", MAX_TITLE_CHARS)
    now = datetime.now(UTC)
    raws, chosen = parsed.entries, ""
    if len(raws) > max_entries:
        raws, chosen = _keep_newest(raws, max_entries, now)
    language = language_code(parsed.feed.get("language"))
    name = feed_name or title or mask_url(feed_url)  # alerts quote it: no credentials
    entries = _distinct(to_entry(raw, feed_url, name, now, language) for raw in raws)
    warning = _warning(problem, content_type)
    if chosen:
        warning = (f"{len(parsed.entries)} entries; only {max_entries} were read, {chosen}"
                   + (f"; {warning}" if warning else ""))
    return ParsedFeed(title=title, entries=entries, warning=warning)


def _harmless(problem: BaseException) -> bool:
    """A complaint that leaves an entry-less document a valid (empty) feed."""
    if isinstance(problem, xml.sax.SAXParseException):
        return problem.getMessage() == "undefined entity"  # &nbsp; and friends: read anyway
    return isinstance(problem, (_fp().NonXMLContentType, _fp().CharacterEncodingOverride))


def _describe(problem: BaseException) -> str:
    if isinstance(problem, xml.sax.SAXParseException):
        return (f"XML error at line {problem.getLineNumber()}, column "
                f"{problem.getColumnNumber()}: {problem.getMessage()}")
    return str(problem)


def _warning(problem: BaseException | None, content_type: str | None) -> str | None:
    """feedparser's complaint, minus the missing Content-Type of files and bare servers."""
    if isinstance(problem, _fp().NonXMLContentType):
        return (f"the server calls the feed {content_type.split(';')[0]!r}, not an XML type"
                if content_type else None)
    return _describe(problem) if problem else None


_HTML = re.compile(rb"<(?:!doctype\s+html|html|head|body)\b", re.IGNORECASE)
_LINK_TAG = re.compile(r"<link\b[^<>]{0,2000}>", re.IGNORECASE)
_ALTERNATE = re.compile(r"""\brel\s*=\s*["']?[^"'<>]*\balternate\b""", re.IGNORECASE)
_FEED_TYPE = re.compile(r"""\btype\s*=\s*["']?application/(?:rss|atom)\+xml""", re.IGNORECASE)
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]+)"|'([^']+)'|([^\s"'<>]+))""", re.IGNORECASE)
_ROOT = re.compile(rb"<([A-Za-z_][\w:.-]{0,60})")


def _not_a_feed(body: bytes, url: str, content_type: str | None,
                problem: BaseException | None) -> str:
    """Why this is no feed, and what the user can do about it."""
    head = body[:256 * 1024]
    if _HTML.search(head[:4096]) or (content_type or "").lower().startswith("text/html"):
        found = _advertised_feed(head.decode("utf-8", "replace"), url)
        hint = (f"the page names its feed: {found} (use that URL)" if found else
                "use the site's feed URL instead (look for an RSS or Atom link on the page)")
        return f"not an RSS/Atom feed: the server sent an HTML page; {hint}"
    reason = f": {_describe(problem)}" if problem else ""
    root = _ROOT.search(head) if head.lstrip()[:1] == b"<" else None
    if root is None:
        start = head.lstrip()[:40].decode("utf-8", "replace")
        return f"not an RSS/Atom feed: the body is not XML (it starts with {start!r}){reason}"
    if root.group(1).lower().split(b":")[-1] in (b"rss", b"feed", b"rdf"):
        return f"malformed feed, nothing readable{reason}"
    return (f"not an RSS/Atom feed: the document's root element is <{root.group(1).decode()}>,"
            f" not <rss>, <feed> or <rdf:RDF>{reason}")


def _advertised_feed(html: str, url: str) -> str | None:
    """The first <link rel="alternate" type="application/rss+xml|atom+xml" href> of a page."""
    for tag in _LINK_TAG.findall(html):
        if _ALTERNATE.search(tag) and _FEED_TYPE.search(tag) and (href := _HREF.search(tag)):
            return urljoin(url, "".join(g or "" for g in href.groups()).strip())
    return None
