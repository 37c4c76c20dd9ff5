"""What every alert format shares: plain text, safe links, times, the order of stories.

`one_line` collapses and cuts text; `safe_url` lets only plain http(s) links through, and for
chat text `no_mentions` and `chat_link` keep feed text from notifying anyone or breaking out
of link markup (see watcher.notify.render); `iso_z` and `readable_time` give times in UTC;
`stories` orders a delivery's alerts (each once, newest first); `feed_label`, `shown_name`,
`outlets`, `headline`, `outlet_label` and `topics_of` say what an alert is about, feed names
masked; `email_subject` is a delivery's title everywhere: the email's subject and HTML title,
Slack's fallback text, the Apprise title. Pure; the email, JSON, Slack, Discord and Apprise
renderings build on it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit, urlunsplit

from msgspec.structs import replace

from watcher.model import AlertMessage, Entry, Outlet
from watcher.redact import mask_text, mask_url

SUBJECT_CHARS = 160
_SPACE = re.compile(r"\s+")
ZWSP = "\u200b"
_MENTION = re.compile(r"@(?=[\w&!#])|<(?=[@#!/:&])")
_HOSTPORT = re.compile(r"(?:[\w.\-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")
_LINK_SAFE = "/:?#[]!$&'*+,;=%~"  # kept as is; everything else outside [A-Za-z0-9_.-] encoded


# ---------------------------------------------------------------- shared helpers


def one_line(text: str, limit: int | None = None) -> str:
    """Whitespace collapsed to single spaces; cut at a word boundary with '…' past `limit`."""
    text = _SPACE.sub(" ", text).strip()
    if limit is None or len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"


def safe_url(url: str | None) -> str | None:
    """The URL when it is a plain http(s) link, else None (no javascript:, data:, ...)."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return None
    return url


def no_mentions(text: str) -> str:
    """Chat text in which no `@name`, `<@id>`, `<#id>` or `<!here>` can notify anyone."""
    return _MENTION.sub(lambda m: m.group(0) + ZWSP, text)


def chat_link(url: str | None) -> str | None:
    """An http(s) link that cannot break out of `<url>`, `<url|label>` or `[label](url)`
    syntax nor carry a mention: unsafe characters percent-encoded, no `user@` part."""
    href = safe_url(url)
    if href is None:
        return None
    parts = urlsplit(href)
    hostport = parts.netloc.rpartition("@")[2]
    if not _HOSTPORT.fullmatch(hostport):
        return None
    return urlunsplit((parts.scheme, hostport, quote(parts.path, safe=_LINK_SAFE),
                       quote(parts.query, safe=_LINK_SAFE),
                       quote(parts.fragment, safe=_LINK_SAFE)))


def iso_z(when: datetime | None) -> str | None:
    """'2025-02-24T10:00:00Z' (UTC), or None."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def readable_time(when: datetime | None) -> str:
    """'2025-02-24 10:00 UTC', or 'unknown'."""
    if when is None:
        return "unknown"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt_score(score: float) -> str:
    return f"{score:.1f}"


def _sort_key(m: AlertMessage) -> tuple[float, float]:
    pub = m.entry.published or m.created_at
    created = m.created_at or pub
    return (pub.timestamp() if pub else float("-inf"),
            created.timestamp() if created else float("-inf"))


def stories(messages: Sequence[AlertMessage]) -> list[AlertMessage]:
    """Each alert once (by alert_id, first wins), newest first (undated last)."""
    unique = list({m.alert_id: m for m in reversed(messages)}.values())
    return sorted(unique, key=_sort_key, reverse=True)


def feed_label(e: Entry) -> str:
    """The entry's feed as alerts name it: its name, else its masked URL."""
    return shown_name(e.feed_name) if e.feed_name else mask_url(e.feed_url)


def shown_name(name: str) -> str:
    """A feed name with any URL in it masked (an unnamed, untitled feed's name is its URL:
    masked when parsed, but a store may hold names from before)."""
    return mask_text(name)


def outlets(message: AlertMessage) -> list[Outlet]:
    """The 'also reported by' outlets, each once, their feed names as `shown_name` has them."""
    seen: dict[tuple[str, str], Outlet] = {}
    for o in message.also_reported_by:
        o = replace(o, feed=shown_name(o.feed))
        seen.setdefault((o.feed, o.link or o.title), o)
    return list(seen.values())


def headline(m: AlertMessage) -> str:
    """What an update or surge alert says first ("Surge: 5 outlets in 1h"); "" for a story."""
    return one_line(m.note) if m.kind != "story" and m.note else ""


def outlet_label(o: Outlet) -> str:
    """An outlet's name with its language: "Meduza (ru)"."""
    return f"{o.feed} ({o.language})" if o.language else o.feed


def topics_of(items: Sequence[AlertMessage]) -> list[str]:
    """The distinct topics, sorted."""
    return sorted({m.topic for m in items})


# ---------------------------------------------------------------- subject line


def email_subject(messages: Sequence[AlertMessage]) -> str:
    items = stories(messages)
    if len(items) == 1:
        m = items[0]
        note = f"{headline(m)}: " if headline(m) else ""
        return one_line(f"[watcher] {m.topic}: {note}{m.entry.title or '(untitled)'}",
                        SUBJECT_CHARS)
    return one_line(f"[watcher] {', '.join(topics_of(items))}: {len(items)} new stories",
                    SUBJECT_CHARS)
