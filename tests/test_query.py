"""Topic query parsing: AND, OR, NOT, parentheses, quoted phrases, pointed errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcher.matching.query import And, Not, Or, QueryError, QueryNode, Term, parse_query, terms


def t(text: str, start: int) -> Term:
    return Term(text, start)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Kursk", t("Kursk", 0)),
        ("Kursk AND evacuation", And((t("Kursk", 0), t("evacuation", 10)))),
        ("Kursk evacuation", And((t("Kursk", 0), t("evacuation", 6)))),  # implicit AND
        ("Kursk OR Sumy", Or((t("Kursk", 0), t("Sumy", 9)))),
        ("a OR b c", Or((t("a", 0), And((t("b", 5), t("c", 7)))))),  # AND binds tighter
        ("(a OR b) c", And((Or((t("a", 1), t("b", 6))), t("c", 9)))),
        ("NOT submarine", Not(t("submarine", 4))),
        ("NOT NOT x", Not(Not(t("x", 8)))),
        ("Kursk NOT submarine", And((t("Kursk", 0), Not(t("submarine", 10))))),
        ('"Red Cross" AND ICRC', And((t("Red Cross", 0), t("ICRC", 16)))),
        ('" Red  Cross "', t("Red  Cross", 0)),
        ("Курск ИЛИ", And((t("Курск", 0), t("ИЛИ", 6)))),  # only upper-case English operators
        ("kursk and evacuation", And((t("kursk", 0), t("and", 6), t("evacuation", 10)))),
        ("evacu* AND Kursk", And((t("evacu*", 0), t("Kursk", 11)))),
    ],
)
def test_parse(query: str, expected: QueryNode) -> None:
    assert parse_query(query) == expected


@pytest.mark.parametrize(
    ("query", "position", "message"),
    [
        ("", 0, "empty query"),
        ("   ", 0, "empty query"),
        ("(Kursk OR Sumy", 0, "never closed"),
        ("Kursk (a OR (b)", 6, "never closed"),
        ("Kursk)", 5, "without a matching"),
        ("Kursk AND", 6, "AND needs a term after it"),
        ("Kursk OR", 6, "OR needs a term after it"),
        ("AND Kursk", 0, "AND needs a term before it"),
        ("Kursk AND OR Sumy", 6, "AND needs a term after it"),
        ("Kursk NOT", 6, "NOT needs a term after it"),
        ("(Kursk OR) Sumy", 7, "OR needs a term after it"),
        ("()", 1, "empty parentheses"),
        ('"Red Cross AND Kursk', 0, "unterminated quote"),
        ('Kursk AND "Red Cross', 10, "unterminated quote"),
        ('Kursk ""', 6, "empty quoted phrase"),
    ],
)
def test_syntax_errors_point_at_the_problem(query: str, position: int, message: str) -> None:
    with pytest.raises(QueryError) as raised:
        parse_query(query)
    assert raised.value.position == position
    assert message in str(raised.value)


def test_error_message_shows_a_caret_under_the_bad_character() -> None:
    with pytest.raises(QueryError) as raised:
        parse_query("Kursk AND (Sumy OR")
    lines = str(raised.value).splitlines()
    assert lines[0] == "OR needs a term after it (at character 17)"
    assert lines[1] == "  Kursk AND (Sumy OR"
    assert lines[2] == "  " + " " * 16 + "^"
    assert isinstance(raised.value, ValueError)


def test_terms_reports_negation() -> None:
    query = parse_query('Kursk AND NOT (submarine OR "Battle of Kursk") AND NOT NOT evacuation')
    assert [(term.text, negated) for term, negated in terms(query)] == [
        ("Kursk", False),
        ("submarine", True),
        ("Battle of Kursk", True),
        ("evacuation", False),
    ]


@given(st.text(alphabet='ab ()"ANDORT', max_size=30))
def test_parser_raises_only_query_errors(query: str) -> None:
    try:
        parse_query(query)
    except QueryError as error:
        assert 0 <= error.position <= len(query)
