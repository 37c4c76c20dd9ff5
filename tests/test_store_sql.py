"""The store's SQL is written once: rendering for psycopg keeps casts and literal percent
signs, and every shared statement renders without leftover `:name` parameters."""

from __future__ import annotations

import re

import pytest

from watcher.store import sql
from watcher.store.sql import Dialect, PostgresDialect

STATEMENTS = [value for name, value in vars(sql).items()
              if name.isupper() and isinstance(value, str) and " " in value]


def test_pyformat_keeps_casts_and_escapes_percent() -> None:
    rendered = PostgresDialect().render(
        "SELECT :a::text[], CAST(:b AS TEXT) WHERE x LIKE '5%' AND y = :a")
    assert rendered == ("SELECT %(a)s::text[], CAST(%(b)s AS TEXT) WHERE x LIKE '5%%' "
                        "AND y = %(a)s")


@pytest.mark.parametrize("statement", STATEMENTS)
def test_every_shared_statement_renders_for_both_drivers(statement: str) -> None:
    assert Dialect().render(statement) == statement  # sqlite3 takes :name as it is
    rendered = PostgresDialect().render(statement)
    assert not re.search(r"(?<![:\w]):[A-Za-z_]", rendered), rendered
    assert set(re.findall(r"%\((\w+)\)s", rendered)) == set(
        re.findall(r"(?<![:\w]):([A-Za-z_]\w*)", statement))
