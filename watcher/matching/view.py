"""An entry as the topics see it: its fields in match form and where phrases match there.

This module holds `_EntryView` (an entry's fields turned into match form once and shared by
all topics; the words' stems and spans made when first needed; each phrase's best window per
field cached; the Hits that show where a phrase matched), `_FieldWords` (a field's words,
indexed by key) and `best_window` (an alternative's best window of words in a field: each
phrase word's best score among the field's words, from watcher.matching.words, then the best
one-to-one pairing of a window, `_assign`, less GAP_PENALTY per unmatched word between
matched ones).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from msgspec import Struct

from watcher.matching.phrase import _Phrase, _Words
from watcher.matching.text import STOPWORDS, mask_markup, match_text, tokenize, word_spans
from watcher.matching.words import (
    _KEY_LENGTH,
    STEM_SCORE,
    _case_form,
    _exact_score,
    word_score,
    word_stems,
)
from watcher.model import Entry, Field, Hit

if TYPE_CHECKING:
    import numpy as np  # only concept topics use it (start-up cost)

GAP_PENALTY = 2.0
_Result = tuple[float, int, int]  # score, first and last word of the best window
_NO_MATCH: _Result = (0.0, -1, -1)


def _assign(alt: _Words, found: list[tuple[int, int, float]], words: list[str]) -> _Result:
    """Best one-to-one pairing of phrase words with window words (greedy by score)."""
    used_positions: set[int] = set()
    used_tokens: set[int] = set()
    total = 0.0
    for position, token, score in sorted(found, key=lambda item: -item[2]):
        if position not in used_positions and token not in used_tokens:
            used_positions.add(position)
            used_tokens.add(token)
            total += alt.weights[token] * score
    low, high = min(used_positions), max(used_positions)
    gaps = sum(
        1 for i in range(low, high + 1) if i not in used_positions and words[i] not in STOPWORDS
    )
    return total / alt.total - GAP_PENALTY * gaps, low, high


class _FieldWords(Struct, frozen=True):
    """A field's words in match form, indexed for the phrases that look for them."""

    words: list[str]
    index: dict[str, list[int]]  # key -> positions (a word shorter than a key is its own key)
    ranks: list[int]  # ranks[i]: how many words before word i are not stop words
    stem: Callable[[int], frozenset[str]] | None = None  # the stems of the word at a position
    written: Callable[[int], str] | None = None  # the word at a position as written, casefolded

    @classmethod
    def of(
        cls,
        words: list[str],
        stem: Callable[[int], frozenset[str]] | None = None,
        written: Callable[[int], str] | None = None,
    ) -> _FieldWords:
        index: dict[str, list[int]] = {}
        ranks: list[int] = []
        rank = 0
        for position, word in enumerate(words):
            index.setdefault(word[:_KEY_LENGTH], []).append(position)
            ranks.append(rank)
            rank += word not in STOPWORDS
        return cls(words, index, ranks, stem, written)


def best_window(alt: _Words, field: _FieldWords) -> _Result:
    """(score, first word, last word) of the alternative's best window in the field."""
    found: list[tuple[int, int, float]] = []
    words, stem = field.words, field.stem
    score_of = _exact_score if alt.exact else word_score
    for token_index, token in enumerate(alt.tokens):
        original = alt.originals[token_index]
        for key_index, key in enumerate(alt.lookup[token_index]):
            for position in field.index.get(key, ()):
                if key_index and (
                    field.written is None  # a case ending's key (_lookup_keys)
                    or not _case_form(original, field.written(position))
                ):
                    continue
                score = score_of(token, words[position])
                # word forms: only for words the spelling rules do not already count
                if (
                    score < 90.0
                    and original
                    and stem is not None
                    and not word_stems(original).isdisjoint(stem(position))
                ):
                    score = STEM_SCORE
                if score > 0.0:
                    found.append((position, token_index, score))
    if not found:
        return _NO_MATCH
    if len(alt.tokens) == 1:
        position, _, score = max(found, key=lambda item: item[2])
        return score, position, position
    found.sort()
    best = _NO_MATCH
    ranks = field.ranks
    for first, (start, _, _) in enumerate(found):
        limit = ranks[start] + alt.window  # the window counts words that are not stop words
        inside = [item for item in found[first:] if ranks[item[0]] < limit]
        candidate = _assign(alt, inside, field.words)
        if candidate[0] > best[0]:
            best = candidate
    return best


_Best = tuple[float, int, int, "_Words | None"]  # a _Result and the alternative that reached it
_NO_BEST: _Best = (0.0, -1, -1, None)


class _EntryView:
    """An entry's fields in match form, computed once and shared by all topics."""

    def __init__(self, entry: Entry, vector: np.ndarray | None = None) -> None:
        self.entry = entry
        self.vector = vector  # the entry's embedding (set by the Matcher when needed)
        self._words: dict[Field, _FieldWords] = {}
        self._scores: dict[tuple[int, Field], _Result] = {}
        self._best: dict[tuple[int, Field], _Best] = {}
        self._spans: dict[Field, list[tuple[int, int]] | None] = {}
        self._stems: dict[tuple[Field, int], frozenset[str]] = {}

    def words(self, field: Field) -> _FieldWords:
        if field not in self._words:
            text = match_text(self.entry.field_text(field))
            self._words[field] = _FieldWords.of(
                text.split(), partial(self._stem, field), partial(self._written, field)
            )
        return self._words[field]

    def _stem(self, field: Field, position: int) -> frozenset[str]:
        """The stems of the field's word at `position` (none when words do not align)."""
        key = (field, position)
        found = self._stems.get(key)
        if found is None:
            written = self._written(field, position)
            found = word_stems(written) if written else frozenset()
            self._stems[key] = found
        return found

    def _written(self, field: Field, position: int) -> str:
        """The field's word at `position` as written, casefolded ("" when words do not align)."""
        spans = self.spans(field)
        if spans is None:
            return ""
        start, end = spans[position]
        return self._masked(field)[start:end].casefold()

    def _masked(self, field: Field) -> str:
        text = self.entry.field_text(field)
        return mask_markup(text) if "<" in text or "&" in text else text

    def best(self, phrase: _Phrase, field: Field) -> _Best:
        """The phrase's best window in the field, whatever its score, and its alternative."""
        found = self._best.get((id(phrase), field))
        if found is not None:
            return found
        words = self.words(field)
        best = _NO_BEST
        present = words.index.keys()
        for alt in phrase.alternatives:
            if present.isdisjoint(alt.keys):  # none of its words can be there
                continue
            key = (id(alt), field)  # identical alternatives of other phrases share a score
            result = self._scores.get(key)
            if result is None:
                result = self._scores[key] = best_window(alt, words)
            if result[0] > best[0]:
                best = (result[0], result[1], result[2], alt)
        self._best[id(phrase), field] = best
        return best

    def score(self, phrase: _Phrase, field: Field) -> _Best:
        """The phrase's best window in the field, or _NO_BEST when below its threshold."""
        found = self.best(phrase, field)
        return found if found[0] >= phrase.threshold and found[1] >= 0 else _NO_BEST

    def matches(self, phrase: _Phrase, fields: Sequence[Field]) -> bool:
        for field in fields:
            found = self.best(phrase, field)
            if found[1] >= 0 and found[0] >= phrase.threshold:
                return True
        return False

    def spans(self, field: Field) -> list[tuple[int, int]] | None:
        """Character spans of the field's words in the original text, if they align."""
        if field not in self._spans:
            spans = word_spans(mask_markup(self.entry.field_text(field)))
            self._spans[field] = spans if len(spans) == len(self.words(field).words) else None
        return self._spans[field]

    def hits(
        self, phrase: _Phrase, fields: Sequence[Field], *, any_score: bool = False
    ) -> list[Hit]:
        """One Hit per field the phrase matches (any score with `any_score`): the alternative
        that matched, the words it matched and its score."""
        found: list[Hit] = []
        for field in fields:
            score, low, high, alt = (self.best if any_score else self.score)(phrase, field)
            if low < 0 or alt is None:
                continue
            original = self.entry.field_text(field)
            spans = self.spans(field)
            if spans is None:  # rare: words that do not align with the original's, see tokenize
                tokens = tokenize(original)
                words = [token.word for token in tokens]
                spans = [(token.start, token.end) for token in tokens]
                score, low, high = best_window(alt, _FieldWords.of(words))
                if low < 0:
                    continue
            start, end = spans[low][0], spans[high][1]
            found.append(Hit(alt.text, field, original[start:end], start, end, round(score, 1)))
        return found
