"""Parse stage: feed bytes -> normalised Entry objects (pure; runs in a worker process)."""

from __future__ import annotations

import calendar
import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import feedparser

from watcher.model import Entry
from watcher.text import html_to_text

MAX_SUMMARY_CHARS = 4000
_EARLIEST = datetime(1995, 1, 1, tzinfo=UTC)  # before RSS existed: a placeholder date
_FUTURE_SLACK = timedelta(days=2)
_TRACKING_PREFIXES = ("utm_", "at_", "mc_", "pk_", "hsa_")
_TRACKING_KEYS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "ocid",
    "cmpid", "_ga", "_hsenc", "_hsmi", "mkt_tok", "ncid", "cid", "sr_share", "smid", "ito",
    "xtor", "ref_src", "rss", "feed", "from_rss",
})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class FeedParseError(Exception):
    """The body is not a usable feed; the message says why."""


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    title: str
    entries: list[Entry]
    warning: str | None  # feedparser's complaint about a feed it could still read


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
    if port and _DEFAULT_PORTS.get(scheme) != port:
        host = f"{host}:{port}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not _is_tracking(k)]
    return urlunsplit((scheme, host, parts.path or "/", urlencode(sorted(query)), ""))


def _is_tracking(key: str) -> bool:
    low = key.lower()
    return low in _TRACKING_KEYS or low.startswith(_TRACKING_PREFIXES)


def _date(entry: Any, now: datetime) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                value = datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)
            except (OverflowError, ValueError, OSError):
                continue
            if _EARLIEST <= value <= now + _FUTURE_SLACK:
                return value
    return None


def _summary(entry: Any) -> str:
    raw = entry.get("summary") or ""
    if not raw and entry.get("content"):
        raw = entry["content"][0].get("value", "")
    return html_to_text(raw)[:MAX_SUMMARY_CHARS]


def _entry_key(guid: str | None, link: str | None, title: str, summary: str) -> str:
    if guid:
        return guid
    if link:
        return link
    return "sha1:" + hashlib.sha1(f"{title}\n{summary}".encode()).hexdigest()


def to_entry(raw: Any, feed_url: str, feed_name: str, now: datetime) -> Entry:
    """One feedparser entry as an Entry."""
    title = html_to_text(raw.get("title") or "")
    link = (raw.get("link") or "").strip() or None
    guid = (raw.get("id") or "").strip() or None
    summary = _summary(raw)
    canon = canonical_link(link)
    return Entry(
        key=_entry_key(guid, canon, title, summary), guid=guid, title=title, link=link,
        canonical_link=canon, summary=summary, published=_date(raw, now),
        feed_url=feed_url, feed_name=feed_name,
    )


def parse_feed(body: bytes, feed_url: str, feed_name: str = "",
               content_type: str | None = None) -> ParsedFeed:
    """Parse a feed document; raise FeedParseError when it is not one."""
    if not body.strip():
        raise FeedParseError("empty response: no feed document")
    headers = {"content-location": feed_url}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(body, response_headers=headers, sanitize_html=True,
                              resolve_relative_uris=True)
    problem = parsed.get("bozo_exception")
    if not parsed.entries and not parsed.get("version"):
        reason = f" ({problem})" if problem else ""
        raise FeedParseError(f"not an RSS/Atom feed{reason}")
    if not parsed.entries and problem and not isinstance(problem, feedparser.NonXMLContentType):
        raise FeedParseError(f"malformed feed, nothing readable: {problem}")
    title = html_to_text(parsed.feed.get("title") or "")
    now = datetime.now(UTC)
    seen: set[str] = set()
    entries: list[Entry] = []
    for raw in parsed.entries:
        entry = to_entry(raw, feed_url, feed_name or title or feed_url, now)
        if entry.key in seen:  # some feeds repeat one guid for many items: tell them apart
            alt = _entry_key(None, entry.canonical_link, entry.title, entry.summary)
            if f"{entry.key}#{alt}" in seen:
                continue
            entry = replace(entry, key=f"{entry.key}#{alt}")
        seen.add(entry.key)
        entries.append(entry)
    return ParsedFeed(title=title, entries=entries, warning=_warning(problem, content_type))


def _warning(problem: BaseException | None, content_type: str | None) -> str | None:
    """feedparser's complaint, minus the missing Content-Type of files and bare servers."""
    if problem is None:
        return None
    if isinstance(problem, feedparser.NonXMLContentType) and not content_type:
        return None
    return str(problem)

