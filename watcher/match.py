"""Topic matching (pure): which topics an entry matches, how well, and why.

How a phrase is matched (all comparisons are on `text.match_form`, so case, accents,
punctuation, HTML and the Cyrillic/Latin spelling of a word make no difference):

- Words. Two words score 100 when equal; 90-100 when one is an inflected form of the other
  (the text word starts with the phrase word's stem - the phrase word less up to 3 final
  letters for long words, none for words of 5 letters or fewer - and adds at most 4
  letters): "evacuation" ~ "evacuated", "Kursk" ~ "Курской", never "Kursk" ~ "курс".
  Otherwise words of 5+ letters that share their first four letters get a typo score from
  rapidfuzz's Indel similarity r, stretched as 100 - 2 * (100 - r), so one dropped or added
  letter in a 10-letter word still scores ~90 while "evaluation" ~ "evacuation" scores 80.
- Windows. A phrase of n words (stop words such as "of", "the", "в" are not required) is
  compared with every window of n + max(1, n // 2) consecutive words of the field (1 word
  for a one-word phrase), in any order; its score there is the mean of its words' best
  scores weighted by word length, less 2 points per unrelated word between the matched ones.
  The phrase's score in a field is its best window's; it matches at >= its threshold.
- Alternatives. "Red Cross | ICRC | Красный Крест" matches when any alternative matches.

Speed: every entry's fields are reduced to match form once; a topic is only evaluated when
the four-letter prefix of a word it cannot match without (see `_Topic.gate`) occurs in the
entry, which rejects most entry/topic pairs with one set intersection. The prefilter loses
nothing: a word only scores above 0 when it shares its first four letters (or all of a
shorter phrase word) with the phrase word.

Topic score: the best hit score, a title hit counting `title_weight` times and other fields
once, divided by max(1, title_weight) so it stays 0..100; with title_weight 1.5 a 90 in the
title (90) outranks a 100 in the summary (66.7).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter

from rapidfuzz.distance import Indel, Prefix

from watcher.model import FIELDS, Entry, Field, Hit, Match, Phrase, TopicRule
from watcher.query import And, Not, QueryNode, Term, parse_query, terms
from watcher.text import STOPWORDS, match_text, match_words, tokenize

GAP_PENALTY = 2.0
WILDCARD = "*"  # "evacu*": any word that starts with "evacu"
_KEY_LENGTH = 4
_Result = tuple[float, int, int]  # score, first and last word of the best window
_NO_MATCH: _Result = (0.0, -1, -1)
_MAX_TERMS = 64

# A prefilter condition in disjunctive normal form: the entry must contain every word key of
# at least one of the sets. None means "no condition" (evaluate the topic for every entry).
Gate = frozenset[frozenset[str]] | None


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


def _phrase_words(raw: str) -> list[str]:
    """The match-form words of one whitespace-separated piece of a phrase ("evacu*" kept)."""
    words = match_words(raw)
    if raw.endswith(WILDCARD) and words:
        if len(words[-1]) < _KEY_LENGTH:
            raise ValueError(f"{raw!r}: a wildcard needs at least {_KEY_LENGTH} letters before it")
        words[-1] += WILDCARD
    return words


@dataclass(frozen=True, slots=True)
class _Words:
    """One alternative of a phrase, compiled."""

    tokens: tuple[str, ...]
    weights: tuple[float, ...]
    total: float
    window: int

    @staticmethod
    @lru_cache(maxsize=4096)
    def compile(text: str) -> _Words | None:
        """The alternative's words; identical texts share one object (and its scores)."""
        words = [word for raw in text.split() for word in _phrase_words(raw)]
        if not words:
            return None
        tokens = tuple(word for word in words if word not in STOPWORDS) or tuple(words)
        weights = tuple(float(len(token.rstrip(WILDCARD))) for token in tokens)
        window = 1 if len(words) == 1 else len(words) + max(1, len(words) // 2)
        return _Words(tokens, weights, sum(weights), window)

    def gate(self, threshold: float) -> Gate:
        """Which word keys must occur in an entry for this alternative to reach `threshold`."""
        slack = self.total * (1.0 - threshold / 100.0)
        pairs = sorted(zip(self.weights, self.tokens, strict=True), reverse=True)
        needed = frozenset(_key(token) for weight, token in pairs if weight > slack)
        if needed:  # each of these words alone carries more than the threshold can spare
            return frozenset({needed})
        chosen: set[str] = set()
        lost = 0.0
        for weight, token in pairs:
            chosen.add(_key(token))
            lost += weight
            if lost > slack:  # losing all of these costs more than the threshold can spare
                return frozenset(frozenset({key}) for key in chosen)
        return None


@dataclass(frozen=True, slots=True)
class _Phrase:
    text: str  # as the user wrote it
    alternatives: tuple[_Words, ...]
    threshold: float

    @classmethod
    def compile(cls, phrase: Phrase, default_threshold: float) -> _Phrase:
        alternatives = tuple(
            compiled for part in phrase.text.split("|") if (compiled := _Words.compile(part))
        )
        if not alternatives:
            raise ValueError(f"phrase {phrase.text!r} has no words to match")
        threshold = default_threshold if phrase.threshold is None else phrase.threshold
        return cls(phrase.text, alternatives, threshold)

    def gate(self) -> Gate:
        return _any_of(alternative.gate(self.threshold) for alternative in self.alternatives)


def _any_of(gates: Iterable[Gate]) -> Gate:
    """The gate of a condition that holds when any of several does."""
    terms: set[frozenset[str]] = set()
    for gate in gates:
        if gate is None:
            return None
        terms |= gate
    return frozenset(terms)


def _selectivity(gate: frozenset[frozenset[str]]) -> tuple[int, int]:
    return len(gate), -min(len(term) for term in gate)


def _all_of(gates: Iterable[Gate]) -> Gate:
    """The gate of a condition that holds when all of several do (kept to _MAX_TERMS terms)."""
    known = sorted((gate for gate in gates if gate is not None), key=_selectivity)
    if not known:
        return None
    combined = known[0]
    for gate in known[1:]:
        if len(combined) * len(gate) > _MAX_TERMS:
            break
        combined = frozenset(a | b for a in combined for b in gate)
    return combined


@dataclass(frozen=True, slots=True)
class _Topic:
    rule: TopicRule
    all: tuple[_Phrase, ...]
    any: tuple[_Phrase, ...]
    none: tuple[_Phrase, ...]
    query: QueryNode | None
    terms: dict[int, _Phrase]  # id(Term) -> phrase
    gate: Gate

    @classmethod
    def compile(cls, rule: TopicRule) -> _Topic:
        def phrases(items: Sequence[Phrase]) -> tuple[_Phrase, ...]:
            return tuple(_Phrase.compile(item, rule.threshold) for item in items)

        query = parse_query(rule.query) if rule.query is not None else None
        term_phrases = {
            id(term): _Phrase.compile(Phrase(term.text), rule.threshold)
            for term, _ in (terms(query) if query is not None else ())
        }
        all_, any_ = phrases(rule.all), phrases(rule.any)
        conditions = [phrase.gate() for phrase in all_]
        if any_:
            conditions.append(_any_of(phrase.gate() for phrase in any_))
        if query is not None:
            conditions.append(_query_gate(query, term_phrases))
        return cls(rule, all_, any_, phrases(rule.none), query, term_phrases, _all_of(conditions))


def _query_gate(node: QueryNode, phrases: dict[int, _Phrase]) -> Gate:
    if isinstance(node, Term):
        return phrases[id(node)].gate()
    if isinstance(node, Not):
        return None
    if isinstance(node, And):
        return _all_of(_query_gate(child, phrases) for child in node.children)
    return _any_of(_query_gate(child, phrases) for child in node.children)


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


def best_window(alt: _Words, words: list[str], positions: Callable[[str], list[int]]) -> _Result:
    """(score, first word, last word) of the alternative's best window in `words`.

    `positions(key)` lists where words with that index key are.
    """
    found = [
        (position, token_index, score)
        for token_index, token in enumerate(alt.tokens)
        for position in positions(_key(token))
        if (score := word_score(token, words[position])) > 0.0
    ]
    if not found:
        return _NO_MATCH
    if len(alt.tokens) == 1:
        position, _, score = max(found, key=lambda item: item[2])
        return score, position, position
    found.sort()
    best = _NO_MATCH
    for first, (start, _, _) in enumerate(found):
        inside = [item for item in found[first:] if item[0] < start + alt.window]
        candidate = _assign(alt, inside, words)
        if candidate[0] > best[0]:
            best = candidate
    return best


def _positions_in(words: list[str]) -> Callable[[str], list[int]]:
    """A cached `positions(key)` for `words`."""
    cache: dict[str, list[int]] = {}

    def positions(key: str) -> list[int]:
        if key not in cache:
            if len(key) < _KEY_LENGTH:  # a short phrase word only ever matches itself
                cache[key] = [i for i, word in enumerate(words) if word == key]
            else:
                cache[key] = [i for i, word in enumerate(words) if word.startswith(key)]
        return cache[key]

    return positions


class _EntryView:
    """An entry's fields in match form, computed once and shared by all topics."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.texts: dict[Field, str] = {}
        self._words: dict[Field, tuple[list[str], Callable[[str], list[int]]]] = {}
        self._scores: dict[tuple[int, Field], _Result] = {}

    def text(self, field: Field) -> str:
        if field not in self.texts:
            self.texts[field] = match_text(self.entry.field_text(field))
        return self.texts[field]

    def words(self, field: Field) -> tuple[list[str], Callable[[str], list[int]]]:
        if field not in self._words:
            words = self.text(field).split()
            self._words[field] = (words, _positions_in(words))
        return self._words[field]

    def best(self, phrase: _Phrase, field: Field) -> _Result:
        best = _NO_MATCH
        for alt in phrase.alternatives:
            key = (id(alt), field)
            if key not in self._scores:
                self._scores[key] = best_window(alt, *self.words(field))
            if self._scores[key][0] > best[0]:
                best = self._scores[key]
        return best

    def matches(self, phrase: _Phrase, fields: Sequence[Field]) -> bool:
        return any(self.best(phrase, field)[0] >= phrase.threshold for field in fields)

    def hits(self, phrase: _Phrase, fields: Sequence[Field]) -> list[Hit]:
        found: list[Hit] = []
        for field in fields:
            score, low, high = self.best(phrase, field)
            if score < phrase.threshold:
                continue
            original = self.entry.field_text(field)
            tokens = tokenize(original)
            words = [token.word for token in tokens]
            if words != self.words(field)[0]:  # rare: see `tokenize`
                rescored = (best_window(alt, words, _positions_in(words)) for alt in phrase.alternatives)
                score, low, high = max(rescored, key=itemgetter(0))
            start, end = tokens[low].start, tokens[high].end
            found.append(Hit(phrase.text, field, original[start:end], start, end, round(score, 1)))
        return found


def _evaluate(node: QueryNode, topic: _Topic, view: _EntryView) -> bool:
    if isinstance(node, Term):
        return view.matches(topic.terms[id(node)], topic.rule.fields)
    if isinstance(node, Not):
        return not _evaluate(node.child, topic, view)
    if isinstance(node, And):
        return all(_evaluate(child, topic, view) for child in node.children)
    return any(_evaluate(child, topic, view) for child in node.children)


class Matcher:
    """Matches entries against a fixed set of topics, compiled once."""

    def __init__(self, topics: Sequence[TopicRule]) -> None:
        self._topics = [_Topic.compile(rule) for rule in topics]
        self._ungated = [i for i, topic in enumerate(self._topics) if topic.gate is None]
        self._by_key: dict[str, list[tuple[int, frozenset[str]]]] = {}
        for i, topic in enumerate(self._topics):
            for term in topic.gate or ():
                self._by_key.setdefault(min(term), []).append((i, term))
        self._keys = frozenset(key for t in self._topics for term in t.gate or () for key in term)
        self._fields = tuple(f for f in FIELDS if any(f in t.rule.fields for t in self._topics))

    def match(self, entry: Entry, topics: Collection[str] | None = None) -> list[Match]:
        """One Match per topic the entry matches (all topics, or only those named)."""
        view = _EntryView(entry)
        matches: list[Match] = []
        for i in self._candidates(view):
            topic = self._topics[i]
            if topics is None or topic.rule.name in topics:
                found = self._match_topic(topic, view)
                if found is not None:
                    matches.append(found)
        return matches

    def _candidates(self, view: _EntryView) -> list[int]:
        """Indexes of the topics whose gate the entry passes, in configuration order."""
        present: dict[Field, frozenset[str]] = {}
        for field in self._fields:
            text = view.text(field)
            if text:
                present[field] = self._keys.intersection(map(_key, text.split()))
        chosen = set(self._ungated)
        unions: dict[tuple[Field, ...], frozenset[str]] = {}
        for field, keys in present.items():
            for key in keys:
                for i, term in self._by_key.get(key, ()):
                    fields = self._topics[i].rule.fields
                    if i in chosen or field not in fields:
                        continue
                    if fields not in unions:
                        unions[fields] = frozenset().union(*(present.get(f, ()) for f in fields))
                    if term <= unions[fields]:
                        chosen.add(i)
        return sorted(chosen)

    def _match_topic(self, topic: _Topic, view: _EntryView) -> Match | None:
        fields = topic.rule.fields
        if not all(view.matches(phrase, fields) for phrase in topic.all):
            return None
        if topic.query is not None and not _evaluate(topic.query, topic, view):
            return None
        matched_any = [phrase for phrase in topic.any if view.matches(phrase, fields)]
        if topic.any and not matched_any:
            return None
        if any(view.matches(phrase, fields) for phrase in topic.none):
            return None
        positive = [*topic.all, *matched_any, *self._query_hits(topic, view)]
        hits = sorted(
            (hit for phrase in dict.fromkeys(positive) for hit in view.hits(phrase, fields)),
            key=lambda hit: (FIELDS.index(hit.field), hit.start, hit.end),
        )
        return Match(topic.rule.name, view.entry, _topic_score(topic.rule, hits), tuple(hits))

    @staticmethod
    def _query_hits(topic: _Topic, view: _EntryView) -> list[_Phrase]:
        if topic.query is None:
            return []
        return [
            topic.terms[id(term)]
            for term, negated in terms(topic.query)
            if not negated and view.matches(topic.terms[id(term)], topic.rule.fields)
        ]


def _topic_score(rule: TopicRule, hits: Sequence[Hit]) -> float:
    top = max(rule.title_weight, 1.0)
    weighted = (hit.score * (rule.title_weight if hit.field == "title" else 1.0) for hit in hits)
    return round(min(100.0, max(weighted, default=0.0) / top), 1)
