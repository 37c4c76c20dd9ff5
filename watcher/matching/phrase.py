"""Phrases compiled for matching: their alternatives, words, lookup keys and gates.

This module holds `_Phrase` (a topic's phrase as written: its "|" alternatives, plus each with
a place's name replaced by the words derived from it, from watcher.lang.PLACE_WORDS, and its
threshold) and `_Words` (one alternative: its match-form words less stop words, their
weights, the window they are looked for in, the index keys each word's matches can have and
the prefilter gate they imply), with the helpers that build them: `_phrase_words`,
`_phrase_originals`, `_lookup_keys` and the place words (`_places`, `_place_words`). Compiling
a phrase stems nothing; watcher.lang is imported when a phrase is first compiled.
"""

from __future__ import annotations

from functools import lru_cache

from msgspec import Struct

from watcher.matching.query import Gate, any_of
from watcher.matching.text import STOPWORDS, match_text, match_words
from watcher.matching.words import _KEY_LENGTH, WILDCARD, _key, _script
from watcher.model import Phrase


def _phrase_words(raw: str) -> list[str]:
    """The match-form words of one whitespace-separated piece of a phrase ("evacu*" kept)."""
    words = match_words(raw)
    if raw.endswith(WILDCARD) and words:
        if len(words[-1]) < _KEY_LENGTH:
            raise ValueError(f"{raw!r}: a wildcard needs at least {_KEY_LENGTH} letters before it")
        words[-1] += WILDCARD
    return words


def _phrase_originals(raw: str, count: int) -> list[str]:
    """For each of the `count` match-form words of `raw`, the word as written (stemmed when
    matching first needs it); "" for all when the words do not align."""
    from watcher import lang

    originals = lang.words(raw.rstrip(WILDCARD))
    return originals if len(originals) == count else [""] * count


_VOWELS = "aeiou"  # in match form ("y" is folded to "i"; я, ю, й begin with i)


def _lookup_keys(token: str, original: str) -> tuple[str, ...]:
    """The index keys under which a phrase word's matches can be found: its own, and for a
    four-letter word written in Cyrillic and ending in a vowel (with word forms) its first
    three letters followed by any vowel, or alone: the Russian and Ukrainian case endings
    ("Сумы": Сум, Сумах, Суми). Latin-script words are left alone: their languages seldom
    inflect so, and "Jane" would look at every "January" (the prefilter's cost)."""
    if (
        not original
        or len(token) != _KEY_LENGTH
        or token[-1] not in _VOWELS
        or _script(original) != "cyrillic"
    ):
        return (_key(token),)
    stem = token[:-1]
    return (token, stem, *(stem + vowel for vowel in _VOWELS if stem + vowel != token))


@lru_cache(maxsize=1)
def _places() -> dict[str, tuple[str, ...]]:
    """watcher.lang.PLACE_WORDS by the match form of each name of the place."""
    from watcher import lang

    return {
        match_text(name).strip(): words
        for names, words in lang.PLACE_WORDS.items()
        for name in names
    }


def _place_words(part: str) -> list[tuple[str, str]]:
    """Alternatives of a phrase part with a place's name replaced by each word derived from
    it ("Kursk residents" -> "курян* residents"), labelled "курян* (for Kursk) residents"."""
    pieces = part.split()
    derived: list[tuple[str, str]] = []
    for i, piece in enumerate(pieces):
        words = _places().get(match_text(piece).strip()) if not piece.endswith(WILDCARD) else None
        for word in words or ():
            text = " ".join([*pieces[:i], word, *pieces[i + 1 :]])
            label = " ".join([*pieces[:i], f"{word} (for {piece})", *pieces[i + 1 :]])
            derived.append((text, label))
    return derived


class _Words(Struct, frozen=True):
    """One alternative of a phrase, compiled."""

    text: str  # the alternative as written, whitespace collapsed (what explanations show)
    tokens: tuple[str, ...]
    weights: tuple[float, ...]
    total: float
    window: int
    keys: frozenset[str]  # index keys of the tokens
    exact: bool  # only equal words (in match form) count: no inflections, stems or typos
    originals: tuple[str, ...]  # per token: the word as written, stemmed when first needed
    # ("" when exact, a wildcard or unaligned: no word forms)
    lookup: tuple[tuple[str, ...], ...]  # per token: the index keys its matches can have

    @staticmethod
    @lru_cache(maxsize=4096)
    def compile(text: str, exact: bool = False, label: str = "") -> _Words | None:
        """The alternative's words; identical texts share one object (and its scores).
        `label`: what explanations show instead of the text."""
        pairs: list[tuple[str, str]] = []
        for raw in text.split():
            words = _phrase_words(raw)
            originals = [""] * len(words) if exact else _phrase_originals(raw, len(words))
            pairs += [
                (w, "" if w.endswith(WILDCARD) else o)
                for w, o in zip(words, originals, strict=True)
            ]
        if not pairs:
            return None
        kept = [pair for pair in pairs if pair[0] not in STOPWORDS] or pairs
        tokens = tuple(word for word, _ in kept)
        weights = tuple(float(len(token.rstrip(WILDCARD))) for token in tokens)
        window = 1 if len(tokens) == 1 else len(tokens) + max(1, len(tokens) // 2)
        lookup = tuple(_lookup_keys(token, original) for token, original in kept)
        keys = frozenset(key for keys in lookup for key in keys)
        return _Words(
            label or " ".join(text.split()),
            tokens,
            weights,
            sum(weights),
            window,
            keys,
            exact,
            tuple(original for _, original in kept),
            lookup,
        )

    def gate(self, threshold: float) -> Gate:
        """Which word keys must occur in an entry for this alternative to reach `threshold`."""
        slack = self.total * (1.0 - threshold / 100.0)
        pairs = sorted(zip(self.weights, self.lookup, strict=True), reverse=True)
        needed = [keys for weight, keys in pairs if weight > slack]
        if needed:  # each of these words alone carries more than the threshold can spare
            single = frozenset(keys[0] for keys in needed if len(keys) == 1)
            several = [keys for keys in needed if len(keys) > 1]
            if not several:
                return frozenset({single})
            # one word found under any of several keys: one term per key (the other such
            # words are left out, which keeps the condition necessary)
            return frozenset(single | {key} for key in several[0])
        chosen: set[str] = set()
        lost = 0.0
        for weight, keys in pairs:
            chosen.update(keys)
            lost += weight
            if lost > slack:  # losing all of these costs more than the threshold can spare
                return frozenset(frozenset({key}) for key in chosen)
        return None


class _Phrase(Struct, frozen=True):
    text: str  # as the user wrote it
    alternatives: tuple[_Words, ...]
    threshold: float

    @classmethod
    def compile(cls, phrase: Phrase, default_threshold: float) -> _Phrase:
        parts = [(part, "") for part in phrase.text.split("|")]
        if not phrase.exact:
            parts += [derived for part in phrase.text.split("|") for derived in _place_words(part)]
        compiled = (_Words.compile(part, phrase.exact, label) for part, label in parts)
        unique = {
            (words.tokens, words.lookup): words for words in reversed([c for c in compiled if c])
        }
        alternatives = tuple(reversed(unique.values()))  # the first of equal alternatives
        if not alternatives:
            raise ValueError(f"phrase {phrase.text!r} has no words to match")
        threshold = default_threshold if phrase.threshold is None else phrase.threshold
        return cls(phrase.text, alternatives, threshold)

    def gate(self) -> Gate:
        return any_of(alternative.gate(self.threshold) for alternative in self.alternatives)
