"""Text normalisation shared by matching and dedupe (pure)."""

from __future__ import annotations

import html
import re
import unicodedata

from anyascii import anyascii

_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_NON_WORD = re.compile(r"[^\w]+")
_SPACE = re.compile(r"\s+")


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment: tags, scripts and styles removed, entities decoded."""
    text = html.unescape(_TAG.sub(" ", markup))
    return _SPACE.sub(" ", text).strip()


def normalise(text: str) -> str:
    """Matching form: NFKC, Latin letters (Cyrillic transliterated), case-folded, no punctuation."""
    text = unicodedata.normalize("NFKC", text)
    text = anyascii(text).casefold()
    return _SPACE.sub(" ", _NON_WORD.sub(" ", text)).strip()
