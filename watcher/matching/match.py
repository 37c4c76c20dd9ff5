"""Topic matching (pure): which topics an entry matches, how well, and why.

This module holds `Matcher` (the topics, compiled once; the prefilter that picks the topics
an entry can match; each topic's match or near miss) and `NearMiss`, and re-exports the names
callers import from here. The parts live beside it in watcher.matching: `words` (one text word
against one phrase word: spelling rules, word forms), `phrase` (phrases compiled), `view` (an
entry's fields in match form and the phrases' best windows there), `concept` (concept topics)
and `topic` (a topic compiled, its query, the catch-all and concept hits).

Everything is compared in `text.match_form`, so case, accents, punctuation, HTML and the
Cyrillic or Latin spelling of a word make no difference ("Kursk" finds "Курской").

- Words score 100 when equal and 90-100 when the text word is an inflection of the phrase
  word: it starts with the phrase word less up to 3 final letters (none for words of 5
  letters or fewer) and adds at most 4 ("evacuation" ~ "evacuated", "Kursk" ~ "Курской",
  never "Kursk" ~ "курс"). Other words of 5+ letters that share their first four letters
  get a typo score, rapidfuzz's Indel similarity r stretched as 100 - 2 * (100 - r): one
  dropped letter in 10 still scores ~90, "evaluation" ~ "evacuation" only 80. Words under
  four letters match only themselves; "evacu*" matches any word starting with "evacu".
- A phrase of n words (stop words like "of", "в" aside) is compared, in any word order,
  with each window of n + max(1, n // 2) words of a field (one word if n = 1; stop words in
  the text do not count): the length-weighted mean of its words' best scores, less 2 points
  per unmatched word between matched ones. It matches a field when its best window scores
  at least its threshold (the phrase's own, else the topic's). "a | b" means a or b.
- Word forms: a text word whose stem (or lemma) equals the phrase word's scores 95 even
  when the spelling rules above miss it ("Rotes Kreuz" ~ "Roten Kreuzes", "вернуть" ~
  "вернувшихся"); see "word forms" in watcher.matching.words. A phrase with `exact = true`
  matches equal words only (still in any case and script).
- Explanations name the alternative of a phrase that matched, not the whole phrase.
- Concepts: a topic with `about`/`like` counts an entry close enough in meaning as one more
  `any` hit (with `any` empty, the concept is required); see watcher.matching.concept.
- `any = ["*"]`: the catch-all matches every entry (score 100, explained "catch-all");
  `all`, `query` and `none` still filter.
- Topic score: the best hit, a title hit counting title_weight times, divided by
  max(1, title_weight) to stay in 0..100 (with 1.5, a 90 in the title outranks a 100 in the
  summary, 66.7).

Speed: entries are turned into match form once, and a topic is evaluated only if the entry
has the four-letter prefixes of words it cannot match without (its gate, a necessary
condition; see query.Gate), so most entry/topic pairs cost one set intersection. The gate
loses nothing: a word only scores when it shares the phrase word's first four letters (or,
for a four-letter Cyrillic word ending in a vowel, its first three and a vowel: the keys
it is looked up under). Compiling a topic embeds nothing it does not need and stems nothing:
stems wait for the first match that needs them (see watcher.matching.words).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Literal

from msgspec import Struct

from watcher.matching.concept import (
    ConceptScore,
    ConceptUnavailable,
    entry_vector_text,
    similarity_of,
)
from watcher.matching.phrase import _Phrase
from watcher.matching.query import terms
from watcher.matching.text import match_bytes
from watcher.matching.topic import (
    CATCH_ALL,
    _evaluate,
    _Topic,
    catch_all_hit,
    concept_hit,
    hit_kind,
)
from watcher.matching.view import _EntryView
from watcher.matching.words import _key, stem_form, word_score, word_stems
from watcher.matching.words import _morph as _morph  # tests clear its cache through this module
from watcher.model import FIELDS, Entry, Field, Hit, Match, TopicRule

if TYPE_CHECKING:
    import numpy as np  # only concept topics use it: imported there (start-up cost)

    from watcher.embed import Embedder

# What callers and tests import from here, wherever it is defined (tests also clear the caches
# of word_stems, stem_form and _morph through this module).
__all__ = [
    "CATCH_ALL",
    "ConceptScore",
    "ConceptUnavailable",
    "Matcher",
    "NearMiss",
    "entry_vector_text",
    "hit_kind",
    "similarity_of",
    "stem_form",
    "word_score",
    "word_stems",
]


class NearMiss(Struct, frozen=True):
    """An entry a topic did not match, and why: just under a threshold, or dropped by `none`."""

    topic: str
    entry: Entry
    reason: Literal["below threshold", "dropped by none"]
    score: float  # the best score it reached (0..100); for "dropped by none", the topic's
    threshold: float  # what it needed
    hits: tuple[Hit, ...]  # what came closest, or the `none` phrase that dropped it


class _Unset:
    """The type of `_UNSET`: no embedder argument given."""


_UNSET = _Unset()


class Matcher:
    """Matches entries against a fixed set of topics, compiled once.

    Concept topics (`about`/`like`) need `embedder`: their texts are embedded here, once.
    Entries are compared through their embedding: `match(..., vector=...)` takes the one the
    pipeline made (`needs_vectors` says when it must); without it the Matcher embeds the
    entry itself. With concept topics and `embedder=None`, the constructor raises
    ConceptUnavailable; `Matcher.keywords_only(rules)` is the fallback. `Matcher(rules)` with
    no embedder argument is that fallback too: it checks and compiles the phrases (what
    config validation needs) and never raises for a concept.
    """

    def __init__(
        self,
        topics: Sequence[TopicRule],
        embedder: Embedder | _Unset | None = _UNSET,
        *,
        concepts: bool = True,
    ) -> None:
        # No embedder argument at all (config validation): check and compile the keywords,
        # leave concepts out. An explicit None: the model was wanted and is missing.
        if isinstance(embedder, _Unset):
            embedder, concepts = None, False
        if concepts and embedder is None:  # refused before compiling anything
            missing = [rule.name for rule in topics if rule.concept]
            if missing:
                raise ConceptUnavailable(missing)
        self._embedder = embedder if concepts else None
        self._topics = [_Topic.compile(rule, self._embedder) for rule in topics]
        missing = [t.rule.name for t in self._topics if t.needs_concept and t.concept is None]
        if missing and concepts:
            raise ConceptUnavailable(missing)
        self._concept_names = frozenset(t.rule.name for t in self._topics if t.concept)
        self._ungated = [i for i, topic in enumerate(self._topics) if topic.gate is None]
        # The prefilter works on ASCII bytes: each gate term is indexed under one of its keys.
        self._by_key: dict[bytes, list[tuple[int, frozenset[bytes]]]] = {}
        for i, topic in enumerate(self._topics):
            for term in topic.gate or ():
                encoded = frozenset(key.encode("ascii") for key in term)
                self._by_key.setdefault(min(encoded), []).append((i, encoded))
        self._keys = frozenset(k for listed in self._by_key.values() for _, t in listed for k in t)
        self._index_keys = frozenset(self._by_key)
        fields = [f for f in FIELDS if any(f in t.rule.fields for t in self._topics)] or ["title"]
        self._field_texts = attrgetter(*fields)

    @classmethod
    def keywords_only(cls, topics: Sequence[TopicRule]) -> Matcher:
        """The topics on their keywords alone (no embedding model): a concept never hits."""
        return cls(topics, None, concepts=False)

    def needs_vectors(self, topics: Collection[str] | None = None) -> bool:
        """Whether matching entries for these topics (None: all) uses their embedding."""
        if topics is None:
            return bool(self._concept_names)
        return not self._concept_names.isdisjoint(topics)

    def match(
        self, entry: Entry, topics: Collection[str] | None = None, vector: np.ndarray | None = None
    ) -> list[Match]:
        """One Match per topic the entry matches (all topics, or only those named).

        `vector`: the entry's embedding (`embed([entry_vector_text(entry)])[0]`), if made.
        """
        candidates = self._candidates(entry)
        if not candidates:
            return []
        view = _EntryView(entry)
        matches: list[Match] = []
        for i in candidates:
            topic = self._topics[i]
            if topics is None or topic.rule.name in topics:
                found = self._match_topic(topic, view, vector)
                if found is not None:
                    matches.append(found)
        return matches

    def near(
        self,
        entry: Entry,
        topics: Collection[str] | None = None,
        vector: np.ndarray | None = None,
        margin: float = 15.0,
    ) -> list[NearMiss]:
        """Topics the entry just missed: every failing condition within `margin` points of
        its threshold, or all conditions met but a `none` phrase dropped it."""
        view = _EntryView(entry)
        missed: list[NearMiss] = []
        for topic in self._topics:
            if topics is not None and topic.rule.name not in topics:
                continue
            if self._match_topic(topic, view, vector) is not None:
                continue
            found = self._near_topic(topic, view, vector, margin)
            if found is not None:
                missed.append(found)
        return missed

    def concept_score(
        self, entry: Entry, topic: str, vector: np.ndarray | None = None
    ) -> ConceptScore | None:
        """How close the entry is to the topic's concept (None: no concept, or no model)."""
        for compiled in self._topics:
            if compiled.rule.name == topic:
                return self._concept(compiled, _EntryView(entry), vector)
        raise KeyError(f"no topic {topic!r}")

    def _candidates(self, entry: Entry) -> list[int]:
        """Indexes of the topics whose gate the entry passes, in configuration order.

        The gate is checked against all the fields any topic looks at, joined: a topic
        that looks at fewer fields may be evaluated for nothing, never skipped wrongly.
        """
        texts = self._field_texts(entry)
        texts = (texts,) if isinstance(texts, str) else texts
        joined = "\n".join(texts)
        if "<" in joined or "&" in joined:  # HTML: each field on its own, as for matching
            data = b" ".join(map(match_bytes, texts))
        else:
            data = match_bytes(joined)
        present = self._keys.intersection(map(_key, data.split()))
        if not present.intersection(self._index_keys):
            return self._ungated
        chosen = set(self._ungated)
        for key in present:
            for i, term in self._by_key.get(key, ()):
                if term <= present:
                    chosen.add(i)
        return sorted(chosen)

    def _vector(self, view: _EntryView, vector: np.ndarray | None) -> np.ndarray | None:
        """The entry's embedding: the pipeline's, else made here (once per entry)."""
        if view.vector is None:
            if vector is None:
                if self._embedder is None:
                    return None
                vector = self._embedder.embed([entry_vector_text(view.entry)])[0]
            import numpy as np

            view.vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        return view.vector

    def _concept(
        self, topic: _Topic, view: _EntryView, vector: np.ndarray | None
    ) -> ConceptScore | None:
        if topic.concept is None:
            return None
        centred = self._vector(view, vector)
        return None if centred is None else topic.concept.score(centred)

    def _match_topic(
        self, topic: _Topic, view: _EntryView, vector: np.ndarray | None
    ) -> Match | None:
        fields = topic.rule.fields
        if not all(view.matches(phrase, fields) for phrase in topic.all):
            return None
        if topic.query is not None and not _evaluate(topic.query, topic, view):
            return None
        matched_any = [phrase for phrase in topic.any if view.matches(phrase, fields)]
        concept: ConceptScore | None = None
        if not topic.catch_all and not matched_any and (topic.any or topic.needs_concept):
            concept = self._concept(topic, view, vector)
            if concept is None or topic.concept is None or concept.score < topic.concept.threshold:
                return None
        if any(view.matches(phrase, fields) for phrase in topic.none):
            return None
        positive = [*topic.all, *matched_any, *self._query_hits(topic, view)]
        hits = [hit for phrase in dict.fromkeys(positive) for hit in view.hits(phrase, fields)]
        if topic.catch_all:
            hits.append(catch_all_hit(view.entry))
        if concept is not None:
            hits.append(concept_hit(view.entry, concept))
        unique = dict.fromkeys(hits)
        ordered = sorted(unique, key=lambda hit: (FIELDS.index(hit.field), hit.start, hit.end))
        return Match(topic.rule.name, view.entry, _topic_score(topic, ordered), tuple(ordered))

    def _near_topic(
        self, topic: _Topic, view: _EntryView, vector: np.ndarray | None, margin: float
    ) -> NearMiss | None:
        fields, name, entry = topic.rule.fields, topic.rule.name, view.entry
        failing: list[tuple[float, float, list[Hit]]] = []  # score, threshold, closest hits
        for phrase in topic.all:
            if not view.matches(phrase, fields):
                failing.append(self._closest(phrase, view, fields))
        if topic.query is not None and not _evaluate(topic.query, topic, view):
            return None  # a boolean query has no "almost"
        if (
            not topic.catch_all
            and (topic.any or topic.needs_concept)
            and not any(view.matches(phrase, fields) for phrase in topic.any)
        ):
            options = [self._closest(phrase, view, fields) for phrase in topic.any]
            concept = self._concept(topic, view, vector)
            if concept is not None and topic.concept is not None:
                if concept.score >= topic.concept.threshold:
                    options = []  # the concept is met
                else:
                    options.append(
                        (concept.score, topic.concept.threshold, [concept_hit(entry, concept)])
                    )
            if options:
                failing.append(max(options, key=lambda item: item[0] - item[1]))
        if failing:
            if all(score >= threshold - margin and score > 0 for score, threshold, _ in failing):
                score, threshold, _ = min(failing, key=lambda item: item[0] - item[1])
                hits = tuple(hit for _, _, found in failing for hit in found)
                return NearMiss(name, entry, "below threshold", score, threshold, hits)
            return None
        dropping = [hit for phrase in topic.none for hit in view.hits(phrase, fields)]
        if dropping:
            return NearMiss(
                name, entry, "dropped by none", 0.0, topic.rule.threshold, tuple(dropping)
            )
        return None  # pragma: no cover - a topic that matches nothing and misses nothing

    @staticmethod
    def _closest(
        phrase: _Phrase, view: _EntryView, fields: Sequence[Field]
    ) -> tuple[float, float, list[Hit]]:
        hits = view.hits(phrase, fields, any_score=True)
        best = max((hit.score for hit in hits), default=0.0)
        return best, phrase.threshold, [hit for hit in hits if hit.score == best][:1]

    @staticmethod
    def _query_hits(topic: _Topic, view: _EntryView) -> list[_Phrase]:
        if topic.query is None:
            return []
        return [
            topic.terms[id(term)]
            for term, negated in terms(topic.query)
            if not negated and view.matches(topic.terms[id(term)], topic.rule.fields)
        ]


def _topic_score(topic: _Topic, hits: Sequence[Hit]) -> float:
    rule = topic.rule
    top = max(rule.title_weight, 1.0)
    weighted = (hit.score * (rule.title_weight if hit.field == "title" else 1.0) for hit in hits)
    return round(min(100.0, max(weighted, default=0.0) / top), 1)
