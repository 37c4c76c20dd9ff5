"""Text normalisation shared by matching and dedupe (pure).

Two forms of a text are used:

- `normalise(text)`: the readable matching form. HTML removed, Unicode NFKC, case-folded,
  accents folded and every script transliterated to Latin letters (anyascii), punctuation
  removed, in-word apostrophes dropped, whitespace collapsed.
  "Курської області!" -> "kurskoi oblasti".
- `match_form(text)`: `normalise` plus `fold_variants`, which folds the usual spelling
  variants of transliteration (kh/h, y/i, ya/ia, zh/dzh/j, shch/sch, x/ks, ii/i) so that
  "Khinshteyn", "Hinshtein" and "Хинштейн" meet. The matcher compares match forms only.

Speed matters (the matcher sees every entry, and every command compiles the topics at
start-up): ASCII text never leaves C-level `bytes` operations, and other scripts go through
one `str.translate` with a table made from anyascii (NFKC, case folding and transliteration
of each character). The table is precomputed on first use only for the scripts news is
mostly written in (Latin, Greek, Cyrillic, general punctuation: about 2 ms); any other
character of the Basic Multilingual Plane is converted the first time it is seen and kept
(`_RareTable`), and anyascii itself only sees characters beyond it.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import NamedTuple

from anyascii import anyascii

from watcher.html import html_to_text, mask_markup

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_APOSTROPHES = "'’ʼ‘`´ʹʻʽ"
# A word of the original text: from a letter or digit to a letter or digit, with combining
# marks and apostrophes allowed inside ("Kurs'k", "don’t").
_WORD = re.compile(r"[^\W_](?:[\w'’ʼ‘`´ʹʻʽ\u0300-\u036f\u0483-\u0489]*[^\W_])?")
# The list table computes these ranges up front and leaves the codes between them as they are
# (for `_RareTable`): Latin, IPA, Greek, Cyrillic; punctuation, currency, letterlike (№).
_EAGER = ((0x0000, 0x0530), (0x2000, 0x2150))
_VARIANTS = {b"shch": b"sch", b"dzh": b"j", b"kh": b"h", b"zh": b"j", b"dj": b"j", b"x": b"ks"}
_VARIANT = re.compile(rb"shch|dzh|kh|zh|dj|x|ii+")  # y -> i is done by the byte table

_STOPWORD_TEXT = (
    # English
    "a an the of in on at to for from by with and or as is are was were be been via into"
    " its it this that"
    # Russian and Ukrainian, in match form
    " v vo na i iz s so k ko po o ob ot do za dlia u pri ta z zi vid pro"
)
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())


class Token(NamedTuple):
    """A word in match form and where it sits in the original text."""

    word: str
    start: int
    end: int


def _table_entry(char: str) -> str | None:
    """What one character becomes: ASCII letters/digits, '' (dropped) or ' ' (separator).

    The entry is NFKC, case folding and anyascii applied to the character, so translating
    a text with the table is the same as normalising it character by character.
    """
    parts: list[str] = []
    for part in unicodedata.normalize("NFKC", char).casefold():
        if part in _APOSTROPHES:
            continue
        if unicodedata.category(part)[0] in "LMN":
            parts.append(_NON_ALNUM.sub("", anyascii(part).lower()))
        else:
            parts.append(" ")
    return "".join(parts) or None


class _RareTable(dict[int, str | None]):
    """The table for characters outside `_EAGER`, filled as they are met (`str.translate`
    looks each one up; a miss computes and keeps it). ASCII maps to itself."""

    def __missing__(self, code: int) -> str | None:
        value = chr(code) if code < 0x80 else _table_entry(chr(code))
        self[code] = value
        return value


_RARE = _RareTable()


@cache
def _table() -> list[str | None]:
    """The eager translation table (built on first use, about 2 ms; ASCII text never needs
    it): `_EAGER` ranges converted, the codes between them left as they are."""
    table: list[str | None] = [chr(code) for code in range(_EAGER[-1][1])]
    for start, end in _EAGER:
        table[start:end] = [_table_entry(chr(code)) for code in range(start, end)]
    table[ord("ё")] = "e"  # Russian writes е for ё as often as not
    return table


def _byte_table(fold: bool) -> bytes:
    """ASCII letters lower-cased, digits kept, everything else a space; y->i when folding."""
    table = bytearray(b" " * 256)
    for code in range(128):
        char = chr(code)
        if char.isalnum():
            table[code] = ord(char.lower())
    if fold:
        table[ord("y")] = table[ord("Y")] = ord("i")
    return bytes(table)


_PLAIN = _byte_table(fold=False)
_FOLD = _byte_table(fold=True)


def _ascii_bytes(text: str, table: bytes) -> bytes:
    """Lower-case ASCII letters and digits, any other character a space (not collapsed)."""
    if not text.isascii():
        text = text.translate(_table())
        if not text.isascii():  # a rarer script: the lazily filled table
            text = text.translate(_RARE)
            if not text.isascii():  # beyond the Basic Multilingual Plane
                text = anyascii(unicodedata.normalize("NFKC", text))
    return text.encode("ascii").translate(table, b"'`")


def _variant(found: re.Match[bytes]) -> bytes:
    return _VARIANTS.get(found.group(), b"i")


def _fold_bytes(data: bytes) -> bytes:
    return _VARIANT.sub(_variant, data)


def normalise(text: str) -> str:
    """Matching form: no HTML, NFKC, case-folded, Latin letters (any script), no punctuation."""
    if "<" in text or "&" in text:
        text = html_to_text(text)
    return b" ".join(_ascii_bytes(text, _PLAIN).split()).decode("ascii")


def fold_variants(normalised: str) -> str:
    """Fold transliteration spelling variants of an already normalised text."""
    return _fold_bytes(_ascii_bytes(normalised, _FOLD)).decode("ascii")


def match_form(text: str) -> str:
    """The form the matcher compares: `normalise` then `fold_variants`."""
    return fold_variants(normalise(text))


def match_bytes(text: str) -> bytes:
    """`match_text` as ASCII bytes (the matcher's prefilter needs no str)."""
    if "<" in text or "&" in text:
        text = mask_markup(text)
    return _fold_bytes(_ascii_bytes(text, _FOLD))


def match_text(text: str) -> str:
    """Match form with HTML blanked out and separators not collapsed (fast; for the matcher)."""
    return match_bytes(text).decode("ascii")


def match_words(text: str) -> list[str]:
    """The words of `text` in match form, in order; aligned with `word_spans`."""
    return match_text(text).split()


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of `text` (run `mask_markup` first if it has HTML)."""
    return [found.span() for found in _WORD.finditer(text)]


def tokenize(text: str) -> list[Token]:
    """Words of `text` in match form, each with its character span in the original text.

    Normally the words are exactly `match_words(text)`. When they cannot be aligned one to
    one (rare: scripts with marks that split words), each original word is converted on its
    own and every word it yields carries its span.
    """
    if "<" in text or "&" in text:
        text = mask_markup(text)
    words = match_words(text)
    spans = word_spans(text)
    if len(words) == len(spans):
        return [Token(word, start, end) for word, (start, end) in zip(words, spans, strict=True)]
    return [
        Token(word, start, end)
        for start, end in spans
        for word in match_words(text[start:end])
    ]
