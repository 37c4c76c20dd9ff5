"""Text normalisation shared by matching and dedupe (pure).

Two forms of a text are used:

- `normalise(text)`: the readable matching form. HTML removed, Unicode NFKC, case-folded,
  accents folded and every script transliterated to Latin letters (anyascii), punctuation
  removed, whitespace collapsed. "Курской области!" -> "kurskoy oblasti".
- `match_form(text)`: `normalise` plus `fold_variants`, which folds the usual spelling
  variants of transliteration (kh/h, y/i, ya/ia, zh/dzh/j, shch/sch, x/ks, ii/i) so that
  "Khinshteyn", "Hinshtein" and "Хинштейн" meet. The matcher compares match forms only.

The heavy lifting is done by C-level string operations (`str.translate` with a table built
once from anyascii), so a typical headline is normalised in a few microseconds.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import NamedTuple

from anyascii import anyascii

_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-f]+|[a-z][a-z0-9]*);", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_MULTI_I = re.compile(r"i{2,}")
# A word of the original text: letters, digits, combining marks and in-word apostrophes.
_WORD = re.compile(r"[\w'’ʼ‘`´\u0300-\u036f\u0483-\u0489]+")
_APOSTROPHES = "'’ʼ‘`´ʹʻʽ"
_TABLE_END = 0x3000  # characters below this are translated by table; the rest by anyascii

STOPWORDS: frozenset[str] = frozenset(
    # English
    "a an the of in on at to for from by with and or as is are was were be been via into"
    " its it this that"
    # Russian and Ukrainian, in match form
    " v vo na i iz s so k ko po o ob ot do za dlia u pri ta z zi vid pro".split()
)


class Token(NamedTuple):
    """A word in match form and where it sits in the original text."""

    word: str
    start: int
    end: int


def _table_entry(char: str) -> str | None:
    """What one character becomes: ASCII letters/digits, '' (dropped) or ' ' (separator)."""
    if char in _APOSTROPHES:
        return None
    category = unicodedata.category(char)
    if category[0] not in "LMN":
        return " "
    ascii_form = _NON_ALNUM.sub(" ", anyascii(char).lower())
    if category[0] in "LM":
        return ascii_form.replace(" ", "") or None
    return ascii_form or " "


def _build_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for code in range(_TABLE_END):
        char = chr(code)
        if char.isascii() and (char.isalnum() and char.islower() or char.isdigit()):
            continue
        table[code] = _table_entry(char)
    table[ord("ё")] = "e"  # Russian writes е for ё as often as not
    return table


_TABLE = _build_table()
_Y_TO_I = str.maketrans("y", "i")


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment: tags, scripts and styles removed, entities decoded."""
    text = html.unescape(_TAG.sub(" ", markup))
    return _SPACE.sub(" ", text).strip()


def _to_ascii_words(text: str) -> str:
    """NFKC, case-fold, transliterate; non-words become spaces (not yet collapsed)."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_TABLE)
    if not text.isascii():
        text = anyascii(text).lower()
        text = text.translate(_TABLE)
    return text


def normalise(text: str) -> str:
    """Matching form: no HTML, NFKC, case-folded, Latin letters (any script), no punctuation."""
    if "<" in text or "&" in text:
        text = html_to_text(text)
    return " ".join(_to_ascii_words(text).split())


def fold_variants(normalised: str) -> str:
    """Fold transliteration spelling variants of an already normalised text."""
    text = (
        normalised.replace("shch", "sch")
        .replace("kh", "h")
        .replace("dzh", "j")
        .replace("zh", "j")
        .replace("dj", "j")
        .replace("x", "ks")
        .translate(_Y_TO_I)
    )
    return _MULTI_I.sub("i", text) if "ii" in text else text


def match_form(text: str) -> str:
    """The form the matcher compares: `normalise` then `fold_variants`."""
    return fold_variants(normalise(text))


def _mask_markup(text: str) -> str:
    """Blank out tags and entities with spaces, keeping every other character's offset."""
    def blank(match: re.Match[str]) -> str:
        return " " * len(match.group())

    return _ENTITY.sub(blank, _TAG.sub(blank, text))


def _trim_apostrophes(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start] in _APOSTROPHES:
        start += 1
    while end > start and text[end - 1] in _APOSTROPHES:
        end -= 1
    return start, end


def tokenize(text: str) -> list[Token]:
    """Words of `text` in match form, each with its character span in the original text."""
    if "<" in text or "&" in text:
        text = _mask_markup(text)
    tokens: list[Token] = []
    for found in _WORD.finditer(text):
        start, end = _trim_apostrophes(text, found.start(), found.end())
        for word in fold_variants(_to_ascii_words(found.group())).split():
            tokens.append(Token(word, start, end))
    return tokens
