"""A topic compiled for matching, its boolean query, and the hits that are not phrases.

This module holds `_Topic` (a TopicRule compiled once: its `all`, `any` and `none` phrases,
its `query` and the phrases of its terms, its concept and its prefilter gate), `_evaluate`
(its `query` on an entry), and the hits that explain a match other than by a phrase: the
catch-all's (`any = ["*"]`, CATCH_ALL) and the concept's nearest text, with `hit_kind`
telling the three kinds of Hit apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from msgspec import Struct

from watcher.matching.concept import ConceptScore, _Concept
from watcher.matching.phrase import _Phrase
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
from watcher.matching.view import _EntryView
from watcher.model import Entry, Field, Hit, Phrase, TopicRule

if TYPE_CHECKING:
    from watcher.embed import Embedder

CATCH_ALL = "*"  # any = ["*"]: every entry of the topic's feeds


class _Topic(Struct, frozen=True):
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
        return cls(
            rule,
            all_,
            any_,
            phrases(rule.none),
            query,
            term_phrases,
            gate,
            catch_all,
            concept,
            rule.concept,
        )


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
