"""Topic matching (pure): which topics an entry matches, how well, and why.

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
  "вернувшихся"); see "word forms" below. A phrase with `exact = true` matches equal words
  only (still in any case and script).
- Explanations name the alternative of a phrase that matched, not the whole phrase.
- Concepts: a topic with `about`/`like` counts an entry close enough in meaning as one more
  `any` hit (with `any` empty, the concept is required); see "concepts" below.
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
stems wait for the first match that needs them (see "word forms").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, Literal

from rapidfuzz.distance import Indel, Prefix

from watcher.matching.query import (
    And,
    Gate,
    Not,
    QueryNode,
    Term,
    all_of,
    any_of,
    parse_query,
    query_gate,
    terms,
)
from watcher.matching.text import (
    STOPWORDS,
    mask_markup,
    match_bytes,
    match_text,
    match_words,
    tokenize,
    word_spans,
)
from watcher.model import FIELDS, Entry, Field, Hit, Match, Phrase, TopicRule

if TYPE_CHECKING:
    import numpy as np  # only concept topics use it: imported there (start-up cost)

    from watcher.embed import Embedder

GAP_PENALTY = 2.0
WILDCARD = "*"  # "evacu*": any word that starts with "evacu"
_KEY_LENGTH = 4
_Result = tuple[float, int, int]  # score, first and last word of the best window
_NO_MATCH: _Result = (0.0, -1, -1)
CATCH_ALL = "*"  # any = ["*"]: every entry of the topic's feeds


class ConceptUnavailable(Exception):
    """Concept topics (`about`/`like`) were configured but no embedding model is loaded.

    `topics` names them. `Matcher.keywords_only(rules)` builds the fallback matcher: those
    topics run on their keywords alone (a topic whose `any` was only the concept matches
    nothing until the model loads).
    """

    def __init__(self, topics: Sequence[str]) -> None:
        self.topics = tuple(topics)
        self.topic = self.topics[0] if self.topics else ""  # the first, for one-line logs
        names = ", ".join(repr(name) for name in self.topics)
        super().__init__(
            f"topic {names}: `about`/`like` need the embedding model, which is not loaded;"
            " matching on keywords alone (a topic with no `any` keywords matches nothing)"
        )


@dataclass(frozen=True, slots=True)
class NearMiss:
    """An entry a topic did not match, and why: just under a threshold, or dropped by `none`."""

    topic: str
    entry: Entry
    reason: Literal["below threshold", "dropped by none"]
    score: float  # the best score it reached (0..100); for "dropped by none", the topic's
    threshold: float  # what it needed
    hits: tuple[Hit, ...]  # what came closest, or the `none` phrase that dropped it


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
            found.update((language, str(parse.normal_form)) for parse in analyser.parse(word)
                         if parse.tag.POS == "NOUN")
    return frozenset(found)


def _case_form(original: str, written: str) -> bool:
    """Whether the text word `written` is a case form of the phrase's name `original`: both
    Cyrillic and one noun in one language ("Сумах" of "Сумы"; not "сумо", "Sum" or, of
    "Мали", "мало")."""
    return (_script(written) == "cyrillic"
            and not _noun_lemmas(original.casefold()).isdisjoint(_noun_lemmas(written)))


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
    if (not original or len(token) != _KEY_LENGTH or token[-1] not in _VOWELS
            or _script(original) != "cyrillic"):
        return (_key(token),)
    stem = token[:-1]
    return (token, stem, *(stem + vowel for vowel in _VOWELS if stem + vowel != token))


@lru_cache(maxsize=1)
def _places() -> dict[str, tuple[str, ...]]:
    """watcher.lang.PLACE_WORDS by the match form of each name of the place."""
    from watcher import lang

    return {match_text(name).strip(): words for names, words in lang.PLACE_WORDS.items()
            for name in names}


def _place_words(part: str) -> list[tuple[str, str]]:
    """Alternatives of a phrase part with a place's name replaced by each word derived from
    it ("Kursk residents" -> "курян* residents"), labelled "курян* (for Kursk) residents"."""
    pieces = part.split()
    derived: list[tuple[str, str]] = []
    for i, piece in enumerate(pieces):
        words = _places().get(match_text(piece).strip()) if not piece.endswith(WILDCARD) else None
        for word in words or ():
            text = " ".join([*pieces[:i], word, *pieces[i + 1:]])
            label = " ".join([*pieces[:i], f"{word} (for {piece})", *pieces[i + 1:]])
            derived.append((text, label))
    return derived


@dataclass(frozen=True, slots=True)
class _Words:
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
            pairs += [(w, "" if w.endswith(WILDCARD) else o)
                      for w, o in zip(words, originals, strict=True)]
        if not pairs:
            return None
        kept = [pair for pair in pairs if pair[0] not in STOPWORDS] or pairs
        tokens = tuple(word for word, _ in kept)
        weights = tuple(float(len(token.rstrip(WILDCARD))) for token in tokens)
        window = 1 if len(tokens) == 1 else len(tokens) + max(1, len(tokens) // 2)
        lookup = tuple(_lookup_keys(token, original) for token, original in kept)
        keys = frozenset(key for keys in lookup for key in keys)
        return _Words(label or " ".join(text.split()), tokens, weights, sum(weights), window,
                      keys, exact, tuple(original for _, original in kept), lookup)

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


@dataclass(frozen=True, slots=True)
class _Phrase:
    text: str  # as the user wrote it
    alternatives: tuple[_Words, ...]
    threshold: float

    @classmethod
    def compile(cls, phrase: Phrase, default_threshold: float) -> _Phrase:
        parts = [(part, "") for part in phrase.text.split("|")]
        if not phrase.exact:
            parts += [derived for part in phrase.text.split("|") for derived in _place_words(part)]
        compiled = (_Words.compile(part, phrase.exact, label) for part, label in parts)
        unique = {(words.tokens, words.lookup): words
                  for words in reversed([c for c in compiled if c])}
        alternatives = tuple(reversed(unique.values()))  # the first of equal alternatives
        if not alternatives:
            raise ValueError(f"phrase {phrase.text!r} has no words to match")
        threshold = default_threshold if phrase.threshold is None else phrase.threshold
        return cls(phrase.text, alternatives, threshold)

    def gate(self) -> Gate:
        return any_of(alternative.gate(self.threshold) for alternative in self.alternatives)


# --- concepts -------------------------------------------------------------------------------
# A concept topic (`about`, `like`, `unlike`) compares the entry's embedding (the vector the
# pipeline makes for the story engine: title and lead, e5 "query: " prefix, L2-normalised)
# with its texts' embeddings, made once when the topic is compiled. Its similarity is the
# mean of the cosine with `about` and the mean cosine with the `like` examples (one example
# alone cannot pull the topic off course). An `unlike` example closer to the entry than the
# nearest positive text (`about` or a `like`) pushes the similarity down by the difference:
# one text is weighed against one text. (Against the mean, as before, a near miss written in
# the entry's language pushed away reports that only one positive text shared a language
# with: cosines between texts of one language run 0.02-0.06 higher, e.g. de-de 0.847 against
# de-en 0.793 on the dev items; the English founding reports were lost to an English
# `unlike`.) The similarity is mapped to 0..100 by a logistic curve
# fitted on the dev half of the cross-language evaluation set (benchmarks/match_quality.py
# --fit), among entries the topics' keywords let through: the score is the chance, in
# percent, that such an entry is on the topic, so the default threshold of 85 asks for a
# confident hit, as it does of a phrase; `about_threshold` trades precision for recall (the
# founding topics use 35 and 75). Fitted with the topics of benchmarks/match_quality.py's
# TARGET_TOPICS (as of commit acbaf17) on the dev half of items_xlang.jsonl plus items.jsonl
# (218 pairs; refitted on today's 230 pairs: slope 77.8, midpoint 0.820, the same). Measured
# there (uncentred vs language-centred cosines, max vs mean over the examples): the
# uncentred mean separated best. Also measured there, not adopted: a per-language-pair offset
# (cosine less the mean cosine of unrelated news in those two languages): no better; taking
# off half the cosine with the topic's required `all` names: ROC AUC up (0.72 -> 0.79 for the
# Red Cross concept) but it lifts entries far from the names too (clamped to the excess, the
# Kursk gain vanishes) and lost a founding report at the shipped threshold.
CONCEPT_SLOPE = 81.4  # logistic slope per unit of cosine
CONCEPT_MIDPOINT = 0.821  # the cosine that scores 50
UNLIKE_WEIGHT = 1.0  # how much an `unlike` example nearer than every positive text pushes away


def calibrated(similarity: float) -> float:
    """A concept similarity (cosine) as a 0..100 score (logistic; see CONCEPT_SLOPE)."""
    return round(100.0 / (1.0 + math.exp(-CONCEPT_SLOPE * (similarity - CONCEPT_MIDPOINT))), 1)


@dataclass(frozen=True, slots=True)
class ConceptScore:
    """How close an entry is to a concept: calibrated score, similarity, nearest example."""

    score: float  # 0..100
    similarity: float  # the cosine the score is made from (after any `unlike` push)
    nearest: str  # explanation label of the nearest text: 'about "..."' or 'like "..."'
    pushed_by: str  # the `unlike` example that pushed it away, or ""


@dataclass(frozen=True, slots=True)
class _Concept:
    about: np.ndarray | None  # (dim,) the `about` sentence
    like: np.ndarray  # (n, dim) the `like` examples
    labels: tuple[str, ...]  # 'about "..."' (if any), then 'like "..."' per example
    unlike: tuple[str, ...]
    negative: np.ndarray  # (m, dim)
    threshold: float

    @classmethod
    def compile(cls, rule: TopicRule, embedder: Embedder) -> _Concept:
        about = rule.about.strip()
        like = tuple(text.strip() for text in rule.like if text.strip())
        unlike = tuple(text.strip() for text in rule.unlike if text.strip())
        if not about and not like:
            raise ValueError(f"topic {rule.name!r}: `about` and `like` are empty")
        texts = ([about] if about else []) + list(like) + list(unlike)
        import numpy as np

        vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
        first = 1 if about else 0
        labels = ([f"about {about!r}"] if about else []) + [f"like {text!r}" for text in like]
        threshold = rule.threshold if rule.about_threshold is None else rule.about_threshold
        return cls(vectors[0] if about else None, vectors[first:first + len(like)],
                   tuple(labels), unlike, vectors[first + len(like):], threshold)

    def score(self, vector: np.ndarray) -> ConceptScore:
        sims = [float(self.about @ vector)] if self.about is not None else []
        sims += [float(value) for value in self.like @ vector]
        like = sims[1:] if self.about is not None else sims
        parts = ([sims[0]] if self.about is not None else []) + ([sum(like) / len(like)]
                                                                 if like else [])
        similarity = sum(parts) / len(parts)
        nearest = self.labels[max(range(len(sims)), key=sims.__getitem__)]
        pushed_by = ""
        if len(self.negative):
            against = self.negative @ vector
            worst = int(against.argmax())
            closest = max(sims)  # the nearest positive text, one text against one text
            if float(against[worst]) > closest:
                pushed_by = self.unlike[worst]
                similarity -= UNLIKE_WEIGHT * (float(against[worst]) - closest)
        return ConceptScore(calibrated(similarity), similarity, nearest, pushed_by)


@dataclass(frozen=True, slots=True)
class _Topic:
    rule: TopicRule
    all: tuple[_Phrase, ...]
    any: tuple[_Phrase, ...]
    none: tuple[_Phrase, ...]
    query: QueryNode | None
    terms: dict[int, _Phrase]  # id(Term) -> phrase
    gate: Gate
    catch_all: bool
    concept: _Concept | None
    needs_concept: bool  # rule.concept: with no embedder the concept never hits

    @classmethod
    def compile(cls, rule: TopicRule, embedder: Embedder | None) -> _Topic:
        def phrases(items: Sequence[Phrase]) -> tuple[_Phrase, ...]:
            return tuple(_Phrase.compile(item, rule.threshold) for item in items)

        query = parse_query(rule.query) if rule.query is not None else None
        term_phrases = {
            id(term): _Phrase.compile(Phrase(term.text), rule.threshold)
            for term, _ in (terms(query) if query is not None else ())
        }
        catch_all = rule.catch_all
        all_, any_ = phrases(rule.all), () if catch_all else phrases(rule.any)
        concept = _Concept.compile(rule, embedder) if rule.concept and embedder else None
        conditions = [phrase.gate() for phrase in all_]
        if any_ and concept is None:  # a concept hit needs none of the any-words
            conditions.append(any_of(phrase.gate() for phrase in any_))
        if query is not None:
            conditions.append(query_gate(query, lambda term: term_phrases[id(term)].gate()))
        gate = all_of(conditions)
        if rule.concept and not any_ and concept is None:
            gate = frozenset()  # the concept is required and cannot be evaluated: never
        return cls(rule, all_, any_, phrases(rule.none), query, term_phrases, gate,
                   catch_all, concept, rule.concept)


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


@dataclass(frozen=True, slots=True)
class _FieldWords:
    """A field's words in match form, indexed for the phrases that look for them."""

    words: list[str]
    index: dict[str, list[int]]  # key -> positions (a word shorter than a key is its own key)
    ranks: list[int]  # ranks[i]: how many words before word i are not stop words
    stem: Callable[[int], frozenset[str]] | None = None  # the stems of the word at a position
    written: Callable[[int], str] | None = None  # the word at a position as written, casefolded

    @classmethod
    def of(cls, words: list[str], stem: Callable[[int], frozenset[str]] | None = None,
           written: Callable[[int], str] | None = None) -> _FieldWords:
        index: dict[str, list[int]] = {}
        ranks: list[int] = []
        rank = 0
        for position, word in enumerate(words):
            index.setdefault(word[:_KEY_LENGTH], []).append(position)
            ranks.append(rank)
            rank += word not in STOPWORDS
        return cls(words, index, ranks, stem, written)


def _exact_score(token: str, word: str) -> float:
    """An `exact` phrase's word: equal words only (a wildcard still matches its prefix)."""
    if token[-1] == WILDCARD:
        return 100.0 if word.startswith(token[:-1]) else 0.0
    return 100.0 if token == word else 0.0


def best_window(alt: _Words, field: _FieldWords) -> _Result:
    """(score, first word, last word) of the alternative's best window in the field."""
    found: list[tuple[int, int, float]] = []
    words, stem = field.words, field.stem
    score_of = _exact_score if alt.exact else word_score
    for token_index, token in enumerate(alt.tokens):
        original = alt.originals[token_index]
        for key_index, key in enumerate(alt.lookup[token_index]):
            for position in field.index.get(key, ()):
                if key_index and (field.written is None  # a case ending's key (_lookup_keys)
                                  or not _case_form(original, field.written(position))):
                    continue
                score = score_of(token, words[position])
                # word forms: only for words the spelling rules do not already count
                if score < 90.0 and original and stem is not None and not word_stems(
                        original).isdisjoint(stem(position)):
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
            self._words[field] = _FieldWords.of(text.split(), partial(self._stem, field),
                                                partial(self._written, field))
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

    def hits(self, phrase: _Phrase, fields: Sequence[Field], *, any_score: bool = False
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


def _evaluate(node: QueryNode, topic: _Topic, view: _EntryView) -> bool:
    if isinstance(node, Term):
        return view.matches(topic.terms[id(node)], topic.rule.fields)
    if isinstance(node, Not):
        return not _evaluate(node.child, topic, view)
    if isinstance(node, And):
        return all(_evaluate(child, topic, view) for child in node.children)
    return any(_evaluate(child, topic, view) for child in node.children)


def _whole_field(entry: Entry) -> tuple[Field, str]:
    """The field a concept or catch-all hit points at: the title, else the summary."""
    return ("title", entry.title) if entry.title.strip() else ("summary", entry.summary)


CATCH_ALL_TEXT = "catch-all"
_CONCEPT_LABELS = ("about '", 'about "', "like '", 'like "')


def catch_all_hit(entry: Entry) -> Hit:
    field, _ = _whole_field(entry)
    return Hit(CATCH_ALL, field, CATCH_ALL_TEXT, 0, 0, 100.0)


def concept_hit(entry: Entry, found: ConceptScore) -> Hit:
    """A concept hit: the nearest example as the phrase, the whole title as the text."""
    field, text = _whole_field(entry)
    return Hit(found.nearest, field, text, 0, len(text), found.score)


def hit_kind(hit: Hit) -> Literal["phrase", "concept", "catch-all"]:
    """What made a hit: a phrase (its alternative), the concept, or the catch-all."""
    if hit.phrase == CATCH_ALL and hit.text == CATCH_ALL_TEXT and hit.start == hit.end == 0:
        return "catch-all"
    if hit.phrase.startswith(_CONCEPT_LABELS) and hit.start == 0 and hit.end == len(hit.text):
        return "concept"
    return "phrase"


def similarity_of(score: float) -> float:
    """The cosine a calibrated concept score stands for (the inverse of `calibrated`)."""
    score = min(max(score, 0.01), 99.99)
    return CONCEPT_MIDPOINT + math.log(score / (100.0 - score)) / CONCEPT_SLOPE


def entry_vector_text(entry: Entry) -> str:
    """What is embedded for an entry (the story engine embeds the same text)."""
    from watcher.embed import entry_text

    return entry_text(entry.title, entry.summary)


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

    def __init__(self, topics: Sequence[TopicRule],
                 embedder: Embedder | _Unset | None = _UNSET, *, concepts: bool = True) -> None:
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

    def match(self, entry: Entry, topics: Collection[str] | None = None,
              vector: np.ndarray | None = None) -> list[Match]:
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

    def near(self, entry: Entry, topics: Collection[str] | None = None,
             vector: np.ndarray | None = None, margin: float = 15.0) -> list[NearMiss]:
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

    def concept_score(self, entry: Entry, topic: str, vector: np.ndarray | None = None
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

    def _concept(self, topic: _Topic, view: _EntryView, vector: np.ndarray | None
                 ) -> ConceptScore | None:
        if topic.concept is None:
            return None
        centred = self._vector(view, vector)
        return None if centred is None else topic.concept.score(centred)

    def _match_topic(self, topic: _Topic, view: _EntryView, vector: np.ndarray | None
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

    def _near_topic(self, topic: _Topic, view: _EntryView, vector: np.ndarray | None,
                    margin: float) -> NearMiss | None:
        fields, name, entry = topic.rule.fields, topic.rule.name, view.entry
        failing: list[tuple[float, float, list[Hit]]] = []  # score, threshold, closest hits
        for phrase in topic.all:
            if not view.matches(phrase, fields):
                failing.append(self._closest(phrase, view, fields))
        if topic.query is not None and not _evaluate(topic.query, topic, view):
            return None  # a boolean query has no "almost"
        if not topic.catch_all and (topic.any or topic.needs_concept) and not any(
                view.matches(phrase, fields) for phrase in topic.any):
            options = [self._closest(phrase, view, fields) for phrase in topic.any]
            concept = self._concept(topic, view, vector)
            if concept is not None and topic.concept is not None:
                if concept.score >= topic.concept.threshold:
                    options = []  # the concept is met
                else:
                    options.append((concept.score, topic.concept.threshold,
                                    [concept_hit(entry, concept)]))
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
            return NearMiss(name, entry, "dropped by none", 0.0, topic.rule.threshold,
                            tuple(dropping))
        return None  # pragma: no cover - a topic that matches nothing and misses nothing

    @staticmethod
    def _closest(phrase: _Phrase, view: _EntryView, fields: Sequence[Field]
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
