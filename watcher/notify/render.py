"""Pure rendering of alerts: email (subject, text, HTML) and webhook payloads.

Everything that came from a feed is treated as untrusted text: HTML output escapes it
(matched words are wrapped in <mark> after escaping), links are only emitted for
http(s) URLs, Slack/Discord text is escaped for their markup and mentions are disabled.

Chat text (Slack, Discord, every Apprise service) also goes through `no_mentions`, which
puts a zero-width space after each `@` and `<` that could start a mention (`@everyone`,
`@here`, `@room`, `<@id>`, `<@&id>`, `<#id>`, `<!channel>`), and its links through
`chat_link`, which percent-encodes every character that could end a link early or open
markup (`> ) | < ( @` quotes, spaces) and drops a `user@` part.

A feed's URL may hold credentials (`https://user:pw@host/feed?private_token=...`) and
alerts go to third parties: wherever a feed URL is shown, as the feed's URL or as a name
that quotes one, it is masked (`redact.mask_url`); the entry keeps the real URL, which is
what is fetched and what the store keys on.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

from watcher.model import AlertMessage, Entry, Hit, Outlet
from watcher.redact import mask_text, mask_url

SUMMARY_CHARS = 500
CONTEXT_CHARS = 60
SUBJECT_CHARS = 160
DISCORD_LIMIT = 2000
_SPACE = re.compile(r"\s+")
_DISCORD_SPECIAL = re.compile(r"([\\*_~`|>#\[\]<@])")
ZWSP = "\u200b"
_MENTION = re.compile(r"@(?=[\w&!#])|<(?=[@#!/:&])")
_HOSTPORT = re.compile(r"(?:[\w.\-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")
_LINK_SAFE = "/:?#[]!$&'*+,;=%~"  # kept as is; everything else outside [A-Za-z0-9_.-] encoded


class RenderedEmail(NamedTuple):
    subject: str
    text: str
    html: str


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


def locate(text: str, hit: Hit) -> tuple[int, int] | None:
    """Where the hit's words are in `text`: its offsets when they agree, else a search."""
    if 0 <= hit.start < hit.end <= len(text) and text[hit.start:hit.end] == hit.text:
        return hit.start, hit.end
    if hit.text and (i := text.find(hit.text)) >= 0:
        return i, i + len(hit.text)
    return None


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


def mark(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` HTML-escaped, with the spans (clipped to the text) wrapped in <mark>."""
    spans = [(max(0, s), min(len(text), e)) for s, e in spans]
    out, pos = [], 0
    for start, end in _merge([(s, e) for s, e in spans if s < e]):
        out.append(html.escape(text[pos:start]))
        out.append(f"<mark>{html.escape(text[start:end])}</mark>")
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def field_spans(message: AlertMessage, field: str, text: str) -> list[tuple[int, int]]:
    found = (locate(text, h) for h in message.hits if h.field == field)
    return [span for span in found if span is not None]


def _context(text: str, span: tuple[int, int]) -> tuple[str, str, str]:
    """(before, words, after) around a span, trimmed to CONTEXT_CHARS each side."""
    start, end = span
    before, after = text[max(0, start - CONTEXT_CHARS):start], text[end:end + CONTEXT_CHARS]
    if start > CONTEXT_CHARS:
        before = "…" + before.lstrip()
    if end + CONTEXT_CHARS < len(text):
        after = after.rstrip() + "…"
    return before, text[start:end], after


def _explanation(message: AlertMessage, hit: Hit) -> tuple[str, str, str]:
    text = message.entry.field_text(hit.field)
    span = locate(text, hit)
    return _context(text, span) if span else ("", hit.text, "")


def _summary(message: AlertMessage) -> tuple[str, list[tuple[int, int]]]:
    """The summary as shown (cut to SUMMARY_CHARS) and the matched spans inside it."""
    full = message.entry.summary
    shown = one_line(full, SUMMARY_CHARS) if len(full) > SUMMARY_CHARS else full
    keep = len(shown.rstrip("…"))
    return shown, [(s, min(e, keep)) for s, e in field_spans(message, "summary", full) if s < keep]


# ---------------------------------------------------------------- email


def email_subject(messages: Sequence[AlertMessage]) -> str:
    items = stories(messages)
    if len(items) == 1:
        m = items[0]
        note = f"{headline(m)}: " if headline(m) else ""
        return one_line(f"[watcher] {m.topic}: {note}{m.entry.title or '(untitled)'}",
                        SUBJECT_CHARS)
    return one_line(f"[watcher] {', '.join(topics_of(items))}: {len(items)} new stories",
                    SUBJECT_CHARS)


def _story_text(m: AlertMessage) -> list[str]:
    e = m.entry
    lines = [one_line(e.title) or "(untitled)", e.link or "(no link)",
             f"Feed: {feed_label(e)} | Published: {readable_time(e.published)}",
             f"Topic: {m.topic} | Score: {fmt_score(m.score)} | Matched: "
             + ", ".join(f'"{p}"' for p in m.matched)]
    if note := headline(m):
        lines.insert(1, note)
    if m.hits:
        lines.append("Why it matched:")
        for hit in m.hits:
            before, words, after = _explanation(m, hit)
            lines.append(f'  - "{hit.phrase}" ~ {one_line(f"{before}[{words}]{after}")} '
                         f"(in {hit.field}, score {fmt_score(hit.score)})")
    if e.summary:
        lines += ["", _summary(m)[0]]
    if others := outlets(m):
        lines += ["", "Also reported by:"]
        lines += [f"  - {outlet_label(o)}: {one_line(o.title)}"
                  + (f" <{o.link}>" if o.link else "")
                  for o in others]
    return lines


def email_text(messages: Sequence[AlertMessage]) -> str:
    items = stories(messages)
    if len(items) == 1:
        return "\n".join(_story_text(items[0])) + "\n"
    parts = [f"{len(items)} new stories ({', '.join(topics_of(items))}), newest first.", ""]
    for i, m in enumerate(items, 1):
        block = _story_text(m)
        parts += [f"{i}. {block[0]}", *(f"   {line}" if line else "" for line in block[1:]), ""]
    return "\n".join(parts)


def _link(url: str | None, label_html: str) -> str:
    href = safe_url(url)
    return f'<a href="{html.escape(href)}">{label_html}</a>' if href else label_html


def _story_html(m: AlertMessage) -> str:
    e = m.entry
    title = e.title or "(untitled)"
    title_html = mark(title, field_spans(m, "title", title))
    esc = html.escape
    note = headline(m)
    parts = ([f"<p><b>{esc(note)}</b></p>"] if note else []) + [
             f'<h2 style="margin:0 0 4px">{_link(e.link, title_html)}</h2>',
             f'<p style="margin:0;color:#555">{esc(e.link or "(no link)")}</p>',
             f"<p>Feed: <b>{esc(feed_label(e))}</b> | Published: "
             f"{esc(readable_time(e.published))}<br>Topic: <b>{esc(m.topic)}</b> | Score: "
             f"<b>{fmt_score(m.score)}</b> | Matched: "
             + ", ".join(f"&ldquo;{esc(p)}&rdquo;" for p in m.matched) + "</p>"]
    if m.hits:
        rows = []
        for hit in m.hits:
            before, words, after = _explanation(m, hit)
            rows.append(f"<li>&ldquo;{esc(hit.phrase)}&rdquo; ~ {esc(before)}<mark>"
                        f"{esc(words)}</mark>{esc(after)} <i>(in {esc(hit.field)}, score "
                        f"{fmt_score(hit.score)})</i></li>")
        parts.append("<p>Why it matched:</p><ul>" + "".join(rows) + "</ul>")
    if e.summary:
        shown, spans = _summary(m)
        parts.append(f'<blockquote style="color:#333">{mark(shown, spans)}</blockquote>')
    if others := outlets(m):
        rows = [f"<li>{esc(outlet_label(o))}: {_link(o.link, esc(one_line(o.title)))}</li>"
                for o in others]
        parts.append("<p>Also reported by:</p><ul>" + "".join(rows) + "</ul>")
    return "\n".join(parts)


def email_html(messages: Sequence[AlertMessage]) -> str:
    items = stories(messages)
    head = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
            f"{html.escape(email_subject(items))}</title></head>\n<body style=\"font-family:"
            f'sans-serif\">\n')
    if len(items) == 1:
        body = _story_html(items[0])
    else:
        intro = (f"<p>{len(items)} new stories ({html.escape(', '.join(topics_of(items)))}),"
                 " newest first.</p>")
        body = intro + "\n<hr>\n".join(f"<div>{_story_html(m)}</div>" for m in items)
    return head + body + "\n</body></html>\n"


def render_email(messages: Sequence[AlertMessage]) -> RenderedEmail:
    return RenderedEmail(email_subject(messages), email_text(messages), email_html(messages))


# ---------------------------------------------------------------- webhook payloads


def alert_object(m: AlertMessage) -> dict[str, Any]:
    """One alert as in DESIGN.md ("version" aside), plus the "explanation" extension;
    the feed's URL masked (see the module docstring)."""
    e = m.entry
    feed = {"name": shown_name(e.feed_name), "url": mask_url(e.feed_url)}
    return {
        "alert_id": m.alert_id,
        "topic": m.topic,
        "entry": {"title": e.title, "link": e.link, "published": iso_z(e.published),
                  "summary": e.summary, "feed": feed},
        "score": round(m.score, 2),
        "matched": m.matched,
        "kind": m.kind,
        "also_reported_by": [_outlet_object(o) for o in outlets(m)],
        "explanation": [{"phrase": h.phrase, "field": h.field, "text": h.text,
                         "score": round(h.score, 2)} for h in m.hits],
    }


def _outlet_object(o: Outlet) -> dict[str, Any]:
    found: dict[str, Any] = {"feed": o.feed, "title": o.title, "link": o.link}
    if o.language:
        found["language"] = o.language
    if o.seen_at is not None:
        found["seen_at"] = iso_z(o.seen_at)
    return found


def json_payload(messages: Sequence[AlertMessage], delivery_id: str) -> dict[str, Any]:
    """One alert: the DESIGN.md object. Several: {"version", "digest": true, "alerts": [...]}."""
    items = stories(messages)
    if len(items) == 1:
        return {"version": 1, **alert_object(items[0])}
    topics = topics_of(items)
    return {"version": 1, "digest": True, "digest_id": delivery_id,
            "topic": topics[0] if len(topics) == 1 else None, "topics": topics,
            "count": len(items), "alerts": [alert_object(m) for m in items]}


def _slack_escape(text: str) -> str:
    return no_mentions(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def _slack_link(url: str | None, label: str) -> str:
    href = chat_link(url)
    if not href:
        return _slack_escape(label)
    return f"<{href}|{_slack_escape(label)}>"


def _slack_story(m: AlertMessage, summary_chars: int) -> str:
    e = m.entry
    lines = [f"*{_slack_escape(headline(m))}*"] if headline(m) else []
    lines += [f"*{_slack_link(e.link, one_line(e.title, 200) or '(untitled)')}*",
             _slack_escape(f"{m.topic} | score {fmt_score(m.score)} | matched: "
                           f"{', '.join(m.matched)}"),
             _slack_escape(f"{feed_label(e)} | {readable_time(e.published)}")]
    if e.summary and summary_chars:
        lines.append("> " + _slack_escape(one_line(e.summary, summary_chars)))
    if others := outlets(m):
        lines.append("Also reported by: " + ", ".join(_slack_link(o.link, o.feed)
                                                      for o in others[:10]))
    return "\n".join(lines)[:2900]


def slack_payload(messages: Sequence[AlertMessage]) -> dict[str, Any]:
    """Slack incoming-webhook message: "text" (fallback) and one section block per story."""
    items = stories(messages)
    shown = items[:40]
    summary_chars = 300 if len(items) == 1 else 150
    blocks: list[dict[str, Any]] = []
    if len(items) > 1:
        header = f"*{len(items)} new stories* ({_slack_escape(', '.join(topics_of(items)))})"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": header}})
    blocks += [{"type": "section", "text": {"type": "mrkdwn",
                                            "text": _slack_story(m, summary_chars)}}
               for m in shown]
    if len(items) > len(shown):
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"…and {len(items) - len(shown)} more"}]})
    return {"text": _slack_escape(email_subject(items)), "blocks": blocks}


def _discord_escape(text: str) -> str:
    return no_mentions(_DISCORD_SPECIAL.sub(r"\\\1", text))


def _discord_story(m: AlertMessage, summary_chars: int) -> str:
    e = m.entry
    lines = [f"**{_discord_escape(headline(m))}**"] if headline(m) else []
    lines.append(f"**{_discord_escape(one_line(e.title, 200) or '(untitled)')}**")
    if href := chat_link(e.link):
        lines.append(f"<{href}>")
    lines.append(_discord_escape(
        f"{m.topic} | score {fmt_score(m.score)} | matched: {', '.join(m.matched)} | "
        f"{feed_label(e)} | {readable_time(e.published)}"))
    if e.summary and summary_chars:
        lines.append("> " + _discord_escape(one_line(e.summary, summary_chars)))
    if others := outlets(m):
        lines.append("Also reported by: " + _discord_escape(", ".join(o.feed for o in others)))
    return "\n".join(lines)


def discord_payload(messages: Sequence[AlertMessage]) -> dict[str, Any]:
    """Discord webhook message: "content" under 2000 chars, no mentions ever parsed."""
    items = stories(messages)
    if len(items) == 1:
        content = f"**\\[watcher\\] {_discord_escape(items[0].topic)}**\n"
        content += _discord_story(items[0], 400)
    else:
        content = _discord_escape(f"[watcher] {len(items)} new stories "
                                  f"({', '.join(topics_of(items))})")
        for i, m in enumerate(items):
            block = "\n\n" + _discord_story(m, 0)
            more = f"\n\n…and {len(items) - i} more"
            if len(content) + len(block) + len(more) + 20 > DISCORD_LIMIT:
                content += more
                break
            content += block
    if len(content) > DISCORD_LIMIT:
        content = content[: DISCORD_LIMIT - 1].rstrip("\\") + "…"
    return {"content": content, "allowed_mentions": {"parse": []}}


def webhook_payload(fmt: str, messages: Sequence[AlertMessage],
                    delivery_id: str) -> dict[str, Any]:
    if fmt == "slack":
        return slack_payload(messages)
    if fmt == "discord":
        return discord_payload(messages)
    if fmt == "json":
        return json_payload(messages, delivery_id)
    raise ValueError(f"unknown webhook format {fmt!r}")
