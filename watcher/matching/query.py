"""Boolean topic queries: parse `"Red Cross" AND (Kursk OR Sumy) AND NOT submarine` (pure).

Grammar (operators are upper-case words; anything else is a search term):

    query   := or
    or      := and ("OR" and)*
    and     := not (["AND"] not)*        adjacent terms are joined by an implicit AND
    not     := "NOT" not | primary
    primary := "(" query ")" | '"' phrase '"' | word

A bare word is one term (`Red Cross` means `Red AND Cross`); quote a phrase to match its
words together. Each term is matched like a topic phrase, with the topic's threshold.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterable, Iterator

from msgspec import Struct

_OPERATORS = ("AND", "OR", "NOT")
_TOKEN = re.compile(r'\s*(?:(?P<paren>[()])|(?P<quote>")|(?P<word>[^\s()"]+))')


class QueryError(ValueError):
    """A query that cannot be parsed; `position` is the 0-based index of the bad character."""

    def __init__(self, message: str, query: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.query = query
        self.position = position

    def __str__(self) -> str:
        caret = " " * self.position + "^"
        return f"{self.message} (at character {self.position + 1})\n  {self.query}\n  {caret}"


class Term(Struct, frozen=True):
    text: str
    start: int  # where the term is in the query text


class Not(Struct, frozen=True):
    child: QueryNode


class And(Struct, frozen=True):
    children: tuple[QueryNode, ...]


class Or(Struct, frozen=True):
    children: tuple[QueryNode, ...]


QueryNode = Term | Not | And | Or


class _Lexeme(Struct, frozen=True):
    kind: str  # "(", ")", "AND", "OR", "NOT", "term", "end"
    text: str
    start: int


def _lex(query: str) -> Iterator[_Lexeme]:
    position = 0
    while True:
        found = _TOKEN.match(query, position)
        if found is None:
            yield _Lexeme("end", "", len(query.rstrip()))
            return
        position = found.end()
        if found.group("paren"):
            yield _Lexeme(found.group("paren"), found.group("paren"), found.start("paren"))
        elif found.group("quote"):
            position = yield from _lex_phrase(query, found.start("quote"))
        else:
            word = found.group("word")
            kind = word if word in _OPERATORS else "term"
            yield _Lexeme(kind, word, found.start("word"))


def _lex_phrase(query: str, quote: int) -> Generator[_Lexeme, None, int]:
    """The quoted phrase starting at `quote`; returns the position after its closing quote."""
    close = query.find('"', quote + 1)
    if close < 0:
        raise QueryError("unterminated quote", query, quote)
    phrase = query[quote + 1 : close].strip()
    if not phrase:
        raise QueryError("empty quoted phrase", query, quote)
    yield _Lexeme("term", phrase, quote)
    return close + 1


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.lexemes = list(_lex(query))
        self.index = 0

    @property
    def current(self) -> _Lexeme:
        return self.lexemes[self.index]

    def error(self, message: str, lexeme: _Lexeme | None = None) -> QueryError:
        return QueryError(message, self.query, (lexeme or self.current).start)

    def advance(self) -> _Lexeme:
        lexeme = self.current
        self.index += 1
        return lexeme

    def parse(self) -> QueryNode:
        if self.current.kind == "end":
            raise self.error("empty query")
        node = self.parse_or()
        if self.current.kind == ")":
            raise self.error("')' without a matching '('")
        if self.current.kind != "end":  # pragma: no cover - every other lexeme starts a term
            raise self.error(f"unexpected {self.current.text!r}")
        return node

    def expect_operand(self, operator: _Lexeme) -> None:
        """An operator with nothing usable after it is an error pointing at the operator."""
        if self.current.kind in ("end", ")", "AND", "OR"):
            raise self.error(f"{operator.text} needs a term after it", operator)

    def parse_or(self) -> QueryNode:
        children = [self.parse_and()]
        while self.current.kind == "OR":
            self.expect_operand(self.advance())
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else Or(tuple(children))

    def parse_and(self) -> QueryNode:
        children = [self.parse_not()]
        while self.current.kind in ("AND", "NOT", "term", "("):
            if self.current.kind == "AND":
                self.expect_operand(self.advance())
            children.append(self.parse_not())
        return children[0] if len(children) == 1 else And(tuple(children))

    def parse_not(self) -> QueryNode:
        if self.current.kind == "NOT":
            self.expect_operand(self.advance())
            return Not(self.parse_not())
        return self.parse_primary()

    def parse_primary(self) -> QueryNode:
        lexeme = self.current
        if lexeme.kind == "term":
            self.advance()
            return Term(lexeme.text, lexeme.start)
        if lexeme.kind == "(":
            self.advance()
            if self.current.kind == ")":
                raise self.error("empty parentheses")
            if self.current.kind == "end":
                raise self.error("'(' is never closed", lexeme)
            node = self.parse_or()
            if self.current.kind != ")":
                raise self.error("'(' is never closed", lexeme)
            self.advance()
            return node
        if lexeme.kind in ("AND", "OR"):
            raise self.error(f"{lexeme.text} needs a term before it")
        raise self.error("')' without a matching '('")


def parse_query(text: str) -> QueryNode:
    """Parse a topic query; raises QueryError pointing at the first problem."""
    return _Parser(text).parse()


def terms(node: QueryNode, negated: bool = False) -> Iterator[tuple[Term, bool]]:
    """Every term of the query with whether it sits under an odd number of NOTs."""
    if isinstance(node, Term):
        yield node, negated
    elif isinstance(node, Not):
        yield from terms(node.child, not negated)
    else:
        for child in node.children:
            yield from terms(child, negated)


# --- prefilter conditions -------------------------------------------------------------------
# A Gate is a necessary condition in disjunctive normal form over word keys: an entry can only
# satisfy the expression if it contains every key of at least one of the sets. None means
# "no condition" (the expression may hold for any entry, e.g. NOT x).

Gate = frozenset[frozenset[str]] | None
_MAX_TERMS = 128  # combining conditions multiplies their terms; stop before it gets silly


def any_of(gates: Iterable[Gate]) -> Gate:
    """The gate of an expression that holds when any of several does."""
    combined: set[frozenset[str]] = set()
    for gate in gates:
        if gate is None:
            return None
        combined |= gate
    return frozenset(combined)


def _selectivity(gate: frozenset[frozenset[str]]) -> tuple[int, int]:
    return len(gate), -min(len(term) for term in gate)


def all_of(gates: Iterable[Gate]) -> Gate:
    """The gate of an expression that holds when all of several do (most selective first)."""
    known = sorted((gate for gate in gates if gate is not None), key=_selectivity)
    if not known:
        return None
    combined = known[0]
    for gate in known[1:]:
        if len(combined) * len(gate) > _MAX_TERMS:
            break
        combined = frozenset(a | b for a in combined for b in gate)
    return combined


def query_gate(node: QueryNode, term_gate: Callable[[Term], Gate]) -> Gate:
    """The gate of a whole query, given each term's."""
    if isinstance(node, Term):
        return term_gate(node)
    if isinstance(node, Not):
        return None
    gates = (query_gate(child, term_gate) for child in node.children)
    return all_of(gates) if isinstance(node, And) else any_of(gates)
