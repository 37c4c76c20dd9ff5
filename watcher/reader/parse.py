"""Parse stage: feed bytes -> normalised Entry objects (pure; runs in a worker process).

feedparser reads (strict XML, then a lenient parser for broken feeds). Around it: the body
goes in as a stream (a bytes argument naming a file would be opened); DTD entities are
bounded (`_safe_replace_doctype`); the charset is chosen as mature readers do
(`_fix_charset`); fields become bounded plain text without scripts, in linear time.
"""

from __future__ import annotations

import calendar
import codecs
import functools
import hashlib
import io
import itertools
import math
import pyexpat
import re
import unicodedata
import xml.sax
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from watcher.html import plain_text
from watcher.model import Entry
from watcher.redact import mask_url

MAX_SUMMARY_CHARS = 4000
MAX_TITLE_CHARS = 1000
MAX_ENTRIES = 10_000  # entries read from one document: the newest (see _keep_newest)
_EARLIEST = datetime(1995, 1, 1, tzinfo=UTC)  # before RSS existed: a placeholder date
_FUTURE_SLACK = timedelta(days=2)
_TRACKING_PREFIXES = ("utm_", "at_", "mc_", "pk_", "hsa_")
_TRACKING_KEYS = frozenset({  # not "cid": sites use it for content ids
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "ocid",
    "cmpid", "_ga", "_hsenc", "_hsmi", "mkt_tok", "ncid", "sr_share", "smid", "ito", "xtor",
    "ref_src", "rss", "feed", "from_rss"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class FeedParseError(Exception):
    """The body is not a usable feed; the message says why."""


class ParseMemoryError(FeedParseError):
    """Parsing the document ran out of memory (in a parse worker: its memory limit)."""


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    title: str
    entries: list[Entry]
    warning: str | None  # feedparser's complaint about a feed it could still read


# --- links ---

def canonical_link(link: str | None) -> str | None:
    """A link's identity: lower-cased scheme and host; no default port, fragment, trackers."""
    if not link:
        return None
    try:
        parts = urlsplit(link.strip())
        port = parts.port
    except ValueError:
        return link.strip() or None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    if port and _DEFAULT_PORTS.get(scheme) != port:
        host = f"{host}:{port}"
    path = parts.path or "/"
    if not host and path.startswith("//"):
        path = "/" + path.lstrip("/")  # would read back as a host
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not _is_tracking(k)]
    return urlunsplit((scheme, host, path, urlencode(sorted(query)), "")).strip()


def _is_tracking(key: str) -> bool:
    low = key.lower()
    return low in _TRACKING_KEYS or low.startswith(_TRACKING_PREFIXES)


def link_identities(entries: list[Entry]) -> list[Entry]:
    """Entries whose canonical link cannot identify them lose it (it is then neither
    looked up nor stored): a site's front page, and a link the document gives to several
    items with different titles. Otherwise every later item would be dropped as seen."""
    titles: dict[str, set[str]] = {}
    for entry in entries:
        if entry.canonical_link:
            titles.setdefault(entry.canonical_link, set()).add(entry.title)
    shared = {link for link, names in titles.items() if len(names) > 1}
    return [replace(e, canonical_link=None) if e.canonical_link and (
        e.canonical_link in shared or _front_page(e.canonical_link)) else e for e in entries]


def _front_page(link: str) -> bool:
    parts = urlsplit(link)
    return parts.path in ("", "/") and not parts.query


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


def _entry_key(guid: str | None, link: str | None, title: str, summary: str) -> str:
    return guid or link or "sha1:" + hashlib.sha1(f"{title}\n{summary}".encode()).hexdigest()


def _absolute(link: str, feed_url: str) -> str | None:
    """A link made absolute against the feed's URL (feedparser is not asked to: it would
    resolve every URI of every element, a fifth of the parse time)."""
    if not link:
        return None
    if "://" in link[:12] or link.startswith(("mailto:", "urn:", "tag:")):
        return link
    return urljoin(feed_url, link)


def language_code(value: object) -> str:
    """A declared language ("en-US", "ru_RU", "de") as its ISO 639-1 code; "" if none."""
    code = str(value or "").strip().lower().replace("_", "-").split("-")[0]
    return code if len(code) == 2 and code.isalpha() else ""


def to_entry(raw: Any, feed_url: str, feed_name: str, now: datetime,
             language: str = "") -> Entry:
    """One feedparser entry as an Entry (`language`: the feed's declared one)."""
    title = plain_text(raw.get("title") or "", MAX_TITLE_CHARS)
    link = _absolute((raw.get("link") or "").strip(), feed_url)
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


def _distinct(candidates: Iterable[Entry]) -> list[Entry]:
    """The document's entries, each once, with keys that tell its items apart.

    A guid or link that the document gives to items with different titles is no identity
    (front-page links, one guid for every item): those items are keyed by their content, so
    none is dropped as "seen"; the very same item repeated is kept once."""
    built = [e for e in candidates if e.title or e.summary or e.link]  # skip empty <item/>s
    titles: dict[str, set[str]] = {}
    for entry in built:
        titles.setdefault(entry.key, set()).add(entry.title)
    seen: set[str] = set()
    entries: list[Entry] = []
    for entry in built:
        if len(titles[entry.key]) > 1:
            entry = replace(entry, key=_entry_key(None, None, entry.title, entry.summary))
        if entry.key not in seen:
            seen.add(entry.key)
            entries.append(entry)
    return entries


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


# --- character sets ---

_LATIN_DEFAULTS = frozenset({"iso8859-1", "ascii", "cp1252"})  # what servers say by default
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']""")
_CHARSET_PARAM = re.compile(r""";\s*charset\s*=\s*["']?([^"';\s]*)["']?""", re.IGNORECASE)
_DETECT_BYTES = 64 * 1024


def _fits(body: bytes, label: str | None) -> str | None:
    """The name of the codec `label` names, if there is one and it decodes the body."""
    try:
        codec = codecs.lookup((label or "").strip()).name
        body.decode(codec)
    except (LookupError, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return codec


def _fix_charset(body: bytes, content_type: str | None) -> tuple[bytes, str | None]:
    """The body and a Content-Type naming the charset to read it with.

    feedparser alone reads an ISO-8859-1 server default over a correct XML declaration,
    undeclared UTF-8 as ISO-8859-1, and UTF-8 with one bad byte as cp1252 (all mojibake).
    Here: a specific HTTP charset that fits, else the document's declaration if it fits,
    else UTF-8 (repaired if nearly so), else a detected non-Latin encoding, else cp1252.
    """
    if body[:2] in (b"\xff\xfe", b"\xfe\xff") or body[:3] == b"\xef\xbb\xbf" or (
            b"\x00" in body[:4]):
        return body, content_type  # BOM or UTF-16/32: feedparser reads those right
    found = _CHARSET_PARAM.search(content_type or "")
    http = _fits(body, found.group(1)) if found else None
    declared = _XML_ENCODING.match(body[:512])
    decl = _fits(body, declared.group(1).decode("ascii")) if declared else None
    if http and http not in _LATIN_DEFAULTS:
        codec = http  # an explicit, specific charset that fits
    elif decl:
        codec = decl
    elif body.isascii() or _fits(body, "utf-8"):
        codec = "utf-8"
    elif (repaired := _repair_utf8(body)) is not None:
        body, codec = repaired, "utf-8"
    else:
        codec = _detect_non_latin(body) or "iso8859-1"
    if codec == "iso8859-1" and _fits(body, "cp1252"):
        codec = "cp1252"  # as browsers do: 0x80-0x9F are quotes and dashes, not controls
    mime = _CHARSET_PARAM.sub("", content_type or "").strip() or "application/xml"
    return body, f"{mime}; charset={codec}"


def _repair_utf8(body: bytes) -> bytes | None:
    """UTF-8 with a few broken sequences, with U+FFFD in their place; None if not UTF-8."""
    text = body.decode("utf-8", "replace")
    bad = text.count("\ufffd") - body.count(b"\xef\xbf\xbd")
    multibyte = sum(1 for char in text if ord(char) > 0x7F) - bad
    return text.encode("utf-8") if multibyte >= bad else None


def _detect_non_latin(body: bytes) -> str | None:
    """An undeclared legacy encoding of a non-Latin script (Cyrillic, CJK, Hebrew...).

    Latin-script guesses are ignored: Western encodings cannot be told apart reliably, and
    windows-1252 is the better bet for them.
    """
    try:
        import charset_normalizer
    except ImportError:  # optional: without it, such feeds read as windows-1252
        return None
    best = charset_normalizer.from_bytes(body[:_DETECT_BYTES]).best()
    if best is None or best.encoding in ("utf_8", "ascii"):
        return None
    letters = [c for c in str(best) if ord(c) > 0x7F and c.isalpha()]
    latin = sum(1 for c in letters if unicodedata.name(c, "").startswith("LATIN"))
    return best.encoding if len(letters) >= 8 and latin * 2 < len(letters) else None


# --- DTD entities ---

_ENTITY_BUDGET = 1024 * 1024  # bytes all entity references in a document may expand to
_ELEMENT = re.compile(rb"<[A-Za-z_]")


class _RootReached(Exception):
    pass


def _stop(*_: object) -> None:
    raise _RootReached


def _safe_replace_doctype(data: bytes) -> tuple[str | None, bytes, dict[str, str]]:
    """feedparser's DOCTYPE step (strip the DOCTYPE, keep "safe" entities), hardened.

    feedparser's regular expressions miss declarations on one line (left for expat to
    expand) and keep text of any length (a 100 KB entity used 1000 times made a 100 MB
    title). Here expat reads the prolog; only small internal entities within an expansion
    budget are kept. A prolog expat cannot read is left as is: the strict parser fails on
    it too, and the lenient parser gets no entities.
    """
    start, root = data.find(b"<!DOCTYPE"), _ELEMENT.search(data)
    if start < 0 or (root is not None and root.start() < start):  # none, or in the content
        return None, data, {}
    version = "rss091n" if b"netscape" in data[start:data.find(b">", start)].lower() else None
    declared: list[tuple[str, str | None, bool]] = []
    span: list[int] = []
    parser = pyexpat.ParserCreate()
    parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_UNLESS_STANDALONE)
    parser.StartDoctypeDeclHandler = lambda *_: span.append(parser.CurrentByteIndex)
    parser.EndDoctypeDeclHandler = lambda: span.append(parser.CurrentByteIndex)
    parser.EntityDeclHandler = lambda name, is_param, value, *_: declared.append(
        (name, value, bool(is_param)))
    parser.StartElementHandler = _stop
    try:
        parser.Parse(data, True)
    except _RootReached:
        pass
    except (pyexpat.ExpatError, ValueError, RecursionError):
        return version, data, {}
    begin = data.rfind(b"<!DOCTYPE", 0, span[0] + 1) if len(span) == 2 else -1
    end = data.find(b">", span[-1]) + 1 if span else 0
    if begin < 0 or end <= 0:
        return version, data, {}
    safe: dict[str, str] = {}
    budget = _ENTITY_BUDGET
    for name, value, is_param in declared:
        if is_param or value is None or len(value) > 200 or re.search(r'[&<%"]', value):
            continue  # a parameter, external, long or nested entity
        cost = data.count(f"&{name};".encode()) * len(value.encode())
        if cost <= budget and name not in safe:
            budget, safe[name] = budget - cost, value
    doctype = "".join(f'<!ENTITY {k} "{v}">\n' for k, v in safe.items())
    replacement = f"<!DOCTYPE feed [\n{doctype}]>".encode() if safe else b""
    return version, data[:begin] + replacement + data[end:], safe

