"""HTML to plain text, shared by the reader (feed fields) and matching (entry text).

One scanner finds <script>/<style> elements in linear time; an element nothing closes
swallows the rest of the text, as in a browser.
"""

from __future__ import annotations

import html
import re

_TAG = re.compile(r"<[^<>]+>")  # a tag cannot span another "<": linear on hostile input
_RAW_OPEN = re.compile(r"<(script|style)\b", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-f]+|[a-z][a-z0-9]*);", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
# C0 and C1 controls, DEL and line separators: never text in a feed field, and an ESC, BEL
# or CR from a feed printed by `watcher test` or `watcher status` would drive the terminal
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_KNOWN_TAG = re.compile(r"</?(?:a|p|br|div|span|img|b|i|u|em|strong|script|style|iframe|ul|ol|"
                        r"li|h[1-6]|table|tr|td|blockquote|figure|font|noscript)\b[^<>]{0,500}>",
                        re.IGNORECASE)
RAW_CHARS = 64 * 1024  # markup looked at per feed field: plenty for 4000 characters of text


def raw_blocks(markup: str) -> list[tuple[int, int]]:
    """Spans of <script>/<style> elements in one linear pass (an unclosed one: to the end)."""
    spans: list[tuple[int, int]] = []
    lower = markup.lower()
    pos = 0
    while (opener := _RAW_OPEN.search(markup, pos)) is not None:
        closer = lower.find(f"</{opener.group(1).lower()}", opener.end())
        end = lower.find(">", closer) if closer >= 0 else -1
        if end < 0:
            spans.append((opener.start(), len(markup)))
            break
        spans.append((opener.start(), end + 1))
        pos = end + 1
    return spans


def blank_raw_blocks(markup: str) -> str:
    """Scripts and styles replaced by as many spaces (offsets kept)."""
    if "<" not in markup:
        return markup
    spans = raw_blocks(markup)
    if not spans:
        return markup
    parts, pos = [], 0
    for start, end in spans:
        parts += [markup[pos:start], " " * (end - start)]
        pos = end
    parts.append(markup[pos:])
    return "".join(parts)


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment: tags, scripts and styles removed, entities decoded."""
    text = html.unescape(_TAG.sub(" ", blank_raw_blocks(markup)))
    return _SPACE.sub(" ", without_controls(text)).strip()


def without_controls(text: str) -> str:
    """The text with each control character but tab and newline as a space (no terminal
    escapes, no carriage return overwriting a line)."""
    return _CONTROL.sub(" ", text)


def mask_markup(text: str) -> str:
    """Blank out tags, entities, scripts and styles with spaces, keeping every other
    character's offset."""

    def blank(match: re.Match[str]) -> str:
        return " " * len(match.group())

    return _ENTITY.sub(blank, _TAG.sub(blank, blank_raw_blocks(text)))


def plain_text(markup: str, limit: int) -> str:
    """Bounded plain text of a feed field: no tags, no script/style content, entities decoded.

    Linear time (a '<' nothing closes is escaped first). Double-escaped HTML, common in the
    wild, gets another pass."""
    text = markup[:RAW_CHARS]
    for _ in range(3):
        text = blank_raw_blocks(text)
        last = text.rfind(">")
        if "<" in text[last + 1:]:  # a '<' nothing closes: text, not a tag
            text = text[:last + 1] + text[last + 1:].replace("<", "&lt;")
        text = html_to_text(text)
        if not _KNOWN_TAG.search(text):
            break
    text = _RAW_OPEN.sub(r"\1", text)  # markup escaped three times over: defuse what is left
    return text[:limit].rstrip()
