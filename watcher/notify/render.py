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

The pieces every format shares are in watcher.notify.render_common, the Slack and Discord
messages in watcher.notify.render_chat; email and JSON are rendered here, and every name
callers import from this module stays importable from it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any, NamedTuple

from watcher.model import AlertMessage, Hit, Outlet
from watcher.notify.render_chat import DISCORD_LIMIT, discord_payload, slack_payload
from watcher.notify.render_common import (
    SUBJECT_CHARS,
    chat_link,
    email_subject,
    feed_label,
    fmt_score,
    headline,
    iso_z,
    no_mentions,
    one_line,
    outlet_label,
    outlets,
    readable_time,
    safe_url,
    shown_name,
    stories,
    topics_of,
)
from watcher.redact import mask_url

# What callers and tests import from here, wherever it is defined.
__all__ = [
    "DISCORD_LIMIT",
    "SUBJECT_CHARS",
    "RenderedEmail",
    "chat_link",
    "discord_payload",
    "email_html",
    "email_subject",
    "email_text",
    "feed_label",
    "headline",
    "iso_z",
    "json_payload",
    "mark",
    "no_mentions",
    "one_line",
    "outlets",
    "readable_time",
    "render_email",
    "safe_url",
    "slack_payload",
    "stories",
    "webhook_payload",
]

SUMMARY_CHARS = 500
CONTEXT_CHARS = 60


class RenderedEmail(NamedTuple):
    subject: str
    text: str
    html: str


# ---------------------------------------------------------------- matched words (email)


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


def webhook_payload(fmt: str, messages: Sequence[AlertMessage],
                    delivery_id: str) -> dict[str, Any]:
    if fmt == "slack":
        return slack_payload(messages)
    if fmt == "discord":
        return discord_payload(messages)
    if fmt == "json":
        return json_payload(messages, delivery_id)
    raise ValueError(f"unknown webhook format {fmt!r}")
