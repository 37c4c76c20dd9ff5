"""Precision and recall of the match stage on the labelled evaluation set.

    .venv/bin/python benchmarks/match_quality.py [--show]

Reads tests/data/match_eval/items.jsonl (real published headlines and summaries, labelled
by hand; see the README there) and the two founding topics in topics.toml, runs the
Matcher over every item and prints precision and recall per topic. --show lists the false
positives and false negatives with the hits that explain them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from watcher.matching.match import Matcher  # noqa: E402
from watcher.model import Entry, Phrase, TopicRule  # noqa: E402

EVAL_DIR = REPO / "tests" / "data" / "match_eval"


def _phrases(value: Iterable[str | dict[str, Any]]) -> tuple[Phrase, ...]:
    """TOML phrases: plain strings or {phrase = ..., threshold = ...} tables."""
    return tuple(
        Phrase(item) if isinstance(item, str) else Phrase(item["phrase"], item.get("threshold"))
        for item in value
    )


def load_topics(path: Path = EVAL_DIR / "topics.toml") -> list[TopicRule]:
    """The [[topics]] of a watcher TOML file as TopicRules (matcher keys only)."""
    with path.open("rb") as handle:
        tables = tomllib.load(handle)["topics"]
    return [
        TopicRule(
            name=table["name"],
            any=_phrases(table.get("any", ())),
            all=_phrases(table.get("all", ())),
            none=_phrases(table.get("none", ())),
            query=table.get("query"),
            threshold=float(table.get("threshold", 85.0)),
            fields=tuple(table.get("fields", ("title", "summary"))),
            title_weight=float(table.get("title_weight", 1.0)),
        )
        for table in tables
    ]


def load_items(path: Path = EVAL_DIR / "items.jsonl") -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def entry_of(item: dict[str, Any]) -> Entry:
    return Entry(
        key=item["id"], guid=None, title=item["title"], link=item.get("source_url"),
        canonical_link=None, summary=item["summary"], published=None,
        feed_url="eval:", feed_name=item.get("outlet", ""),
    )


@dataclass
class Score:
    topic: str
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        wanted = self.true_positives + self.false_negatives
        return self.true_positives / wanted if wanted else 1.0


def evaluate(
    topics: Sequence[TopicRule], items: Sequence[dict[str, Any]], show: bool = False
) -> dict[str, Score]:
    """Score every topic on every item; optionally print the mistakes."""
    matcher = Matcher(topics)
    scores = {topic.name: Score(topic.name) for topic in topics}
    for item in items:
        matches = {match.topic: match for match in matcher.match(entry_of(item))}
        for name, score in scores.items():
            wanted, found = name in item["labels"], name in matches
            score.true_positives += wanted and found
            score.false_positives += found and not wanted
            score.false_negatives += wanted and not found
            if show and wanted != found:
                kind = "FALSE POSITIVE" if found else "FALSE NEGATIVE"
                text = item["title"] or item["summary"][:90]
                print(f"{kind} {name} {item['id']} [{item['lang']}] {text}")
                for hit in matches[name].hits if found else ():
                    print(f"    {hit.phrase[:40]!r} {hit.field}: {hit.text!r} {hit.score}")
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="list false positives/negatives")
    args = parser.parse_args()
    items = load_items()
    scores = evaluate(load_topics(), items, show=args.show)
    print(f"{len(items)} labelled items")
    print(f"{'topic':<26}{'positives':>10}{'precision':>11}{'recall':>8}")
    for score in scores.values():
        positives = score.true_positives + score.false_negatives
        print(f"{score.topic:<26}{positives:>10}{score.precision:>11.3f}{score.recall:>8.3f}")


if __name__ == "__main__":
    main()
