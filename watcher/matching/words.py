"""One text word against one phrase word: the spelling rules and the word forms.

This module holds how a single text word scores against a single word of a phrase, both in
match form: `word_score` (equal; an inflection, by its ending; a typo; or a wildcard's prefix),
`_exact_score` (for `exact = true` phrases), a word's index key (`_key`, its first `_KEY_LENGTH`
letters) and the word forms: `word_stems` and `stem_form` (watcher.lang's Snowball stemmers,
pymorphy3's Russian and Ukrainian lemmas first) and `_case_form` (a Cyrillic case form of a
place's name). The analysers and watcher.lang are imported on first use, never at import time
(start-up cost). Phrases are compiled in watcher.matching.phrase and their words looked for in
an entry's fields in watcher.matching.view.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from operator import itemgetter
from typing import Any

from rapidfuzz.distance import Indel, Prefix

from watcher.matching.text import match_text

WILDCARD = "*"  # "evacu*": any word that starts with "evacu"
_KEY_LENGTH = 4


def _stem_drop(length: int) -> int:
    """How many final letters of a phrase word an inflection may replace."""
    return 0 if length <= 5 else 1 if length <= 7 else 2 if length <= 9 else 3


@lru_cache(maxsize=1 << 16)
def word_score(phrase_word: str, word: str) -> float:
    """How well a text word matches a phrase word, 0..100 (both in match form)."""
    if phrase_word == word:
        return 100.0
    if phrase_word[-1] == WILDCARD:
        return 100.0 if word.startswith(phrase_word[:-1]) else 0.0
    length = len(phrase_word)
    if length < _KEY_LENGTH or not word.startswith(phrase_word[:_KEY_LENGTH]):
        return 0.0
    common = Prefix.similarity(phrase_word, word)
    added = len(word) - common
    if common >= length - _stem_drop(length) and added <= (2 if length == 4 else 4):
        return 90.0 + 10.0 * common / max(length, len(word))
    if length >= 5 and len(word) >= 5:
        typo = 100.0 * Indel.normalized_similarity(phrase_word, word)
        return max(0.0, 100.0 - 2.0 * (100.0 - typo))
    return 0.0


_key = itemgetter(slice(0, _KEY_LENGTH))  # a word's index key: its first four letters


def _exact_score(token: str, word: str) -> float:
    """An `exact` phrase's word: equal words only (a wildcard still matches its prefix)."""
    if token[-1] == WILDCARD:
        return 100.0 if word.startswith(token[:-1]) else 0.0
    return 100.0 if token == word else 0.0


# --- word forms -----------------------------------------------------------------------------
# Besides the spelling rules of word_score, a text word matches a phrase word when a stem of
# one equals a stem of the other, both taken in every language their script is written in
# (Latin: Snowball's en, de, fr, es, it, pt, nl; Cyrillic: pymorphy3's ru and uk lemmas, then
# Snowball's Russian rules) and compared in match form ("Rotes Kreuz" ~ "Roten Kreuzes",
# "вернуть" ~ "вернувшихся"). No language guess is needed, and a stem costs a dictionary
# lookup once per distinct word. Only words sharing the phrase word's first four letters and
# not already matched by the spelling rules are stemmed, so the prefilter's gate stays exact;
# a Cyrillic phrase word of four letters ending in a vowel also looks at words sharing its first
# three ("Сумы" ~ "Сумах", "Суджа" ~ "Суджи": a case ending replaces the vowel). `exact = true` on a
# phrase turns all of it off. Stems are made when matching first needs one, never when topics
# are compiled: the analysers (pymorphy3 loads ru and uk dictionaries in ~0.2 s) are built on
# the first Cyrillic word that needs a stem, so `watcher check` and Latin-only feeds never pay.
STEM_SCORE = 95.0  # a word whose stem equals the phrase word's (an inflection or derivation)
_STEM_LANGS = {"latin": ("en", "de", "fr", "es", "it", "pt", "nl"), "cyrillic": ("ru", "uk")}


def _script(word: str) -> str:
    return "cyrillic" if any("\u0400" <= char <= "\u04ff" for char in word) else "latin"


@lru_cache(maxsize=4)
def _analyser(language: str) -> Any:
    """pymorphy3's analyser for ru or uk, if installed."""
    try:
        import pymorphy3
    except ImportError:  # pragma: no cover - a dependency; Snowball/simplemma alone then
        return None
    return pymorphy3.MorphAnalyzer(lang=language)


@lru_cache(maxsize=4)
def _morph(language: str) -> Callable[[str], str] | None:
    """pymorphy3's lemmatiser for ru or uk (participles to their verb), if installed."""
    analyser = _analyser(language)
    if analyser is None:  # pragma: no cover - a dependency
        return None
    return lambda word: str(analyser.parse(word)[0].normal_form)


@lru_cache(maxsize=1 << 14)
def _noun_lemmas(word: str) -> frozenset[tuple[str, str]]:
    """(language, dictionary form) of each reading of `word` as a Russian or Ukrainian noun."""
    found: set[tuple[str, str]] = set()
    for language in ("ru", "uk"):
        analyser = _analyser(language)
        if analyser is not None:
            found.update(
                (language, str(parse.normal_form))
                for parse in analyser.parse(word)
                if parse.tag.POS == "NOUN"
            )
    return frozenset(found)


def _case_form(original: str, written: str) -> bool:
    """Whether the text word `written` is a case form of the phrase's name `original`: both
    Cyrillic and one noun in one language ("Сумах" of "Сумы"; not "сумо", "Sum" or, of
    "Мали", "мало")."""
    return _script(written) == "cyrillic" and not _noun_lemmas(original.casefold()).isdisjoint(
        _noun_lemmas(written)
    )


@lru_cache(maxsize=1 << 16)
def stem_form(word: str, language: str) -> str:
    """A word's stem in `language`, in match form ("" when it has none worth comparing).

    Russian and Ukrainian words are lemmatised first (pymorphy3: "вернувшихся" -> "вернуться",
    "повернутих" -> "повернутий") and the lemma stemmed by Snowball's Russian rules, which
    also serve Ukrainian lemmas ("вернуться", "вернуть" -> "вернут"; "повернути",
    "повернутий" -> "повернут"); other languages use watcher.lang's stemmer.
    """
    from watcher import lang

    word = word.casefold().replace("'", "").replace("’", "")
    morph = _morph(language) if language in ("ru", "uk") else None
    stem = lang.stem(morph(word), "ru") if morph is not None else lang.stem(word, language)
    stem = "".join(match_text(stem).split())
    return stem if len(stem) >= 3 else ""


@lru_cache(maxsize=1 << 16)
def word_stems(word: str) -> frozenset[str]:
    """A word's stems (match form) in each language its script is written in.

    No language guess: a Latin word is stemmed by the Latin-script stemmers, a Cyrillic word
    by the Russian and Ukrainian lemmatisers; phrase and text words alike, so they meet when
    any reading agrees."""
    return frozenset(filter(None, (stem_form(word, code) for code in _STEM_LANGS[_script(word)])))
