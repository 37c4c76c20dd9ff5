"""Slack and Discord webhook messages (`format = "slack"` and `"discord"` of a webhook).

Feed text is escaped for each one's markup (`_slack_escape`, `_discord_escape`), goes through
`no_mentions` and its links through `chat_link` (watcher.notify.render_common), so nothing a
feed says can notify anyone or break out of a link; Slack gets one section block per story (40
at most), Discord one "content" under `DISCORD_LIMIT` characters with mentions never parsed.
watcher.notify.render's `webhook_payload` chooses between these and JSON.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from watcher.model import AlertMessage
from watcher.notify.render_common import (
    chat_link,
    email_subject,
    feed_label,
    fmt_score,
    headline,
    no_mentions,
    one_line,
    outlets,
    readable_time,
    stories,
    topics_of,
)

DISCORD_LIMIT = 2000
_DISCORD_SPECIAL = re.compile(r"([\\*_~`|>#\[\]<@])")


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
