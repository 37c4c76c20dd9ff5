"""Cross-language evaluation data: schema, citations, unique ids, the counts the READMEs state.

Covers tests/data/match_eval/items_xlang.jsonl (README-xlang.md) and
tests/data/stories/founding-multilingual.csv (README-founding.md).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

DATA = Path(__file__).parent / "data"
EVAL = DATA / "match_eval"
STORIES = DATA / "stories"
TOPICS = ("kursk-evacuation", "red-cross-repatriation")
LANGS = {"en", "de", "ru", "uk"}
FOUNDING_STORY = "2025-02-24-moskalkova-belarus-icrc"
REQUIRED = {
    "id",
    "title",
    "summary",
    "lang",
    "labels",
    "outlet",
    "source_url",
    "text_kind",
    "split",
}
OPTIONAL = {"trap", "note", "kind", "story"}
TEXT_KINDS_NO_HEADLINE = "no headline in the stored copy; summary paraphrased"
TEXT_KIND_STORIES = "headline and lead as in tests/data/stories/kursk-evacuations.csv"
TEXT_KINDS = {"headline verbatim; summary paraphrased", TEXT_KINDS_NO_HEADLINE, TEXT_KIND_STORIES}
CSV_COLUMNS = [
    "id",
    "story",
    "lang",
    "published",
    "date_source",
    "outlet",
    "url",
    "title",
    "summary",
]


def _items() -> list[dict[str, Any]]:
    lines = (EVAL / "items_xlang.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _is_http_url(value: str) -> bool:
    parsed = urlparse(value)
    return parsed.scheme in {"http", "https"} and bool(parsed.netloc)


def _readme_table(path: Path, first_header: str) -> dict[str, list[str]]:
    """The Markdown table whose first header cell is `first_header`: first cell -> the rest."""
    rows: dict[str, list[str]] = {}
    inside = False
    for line in path.read_text("utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_header:
            inside = True
        elif inside and line.startswith("|") and not set(cells[0]) <= {"-", ":"}:
            rows[cells[0]] = cells[1:]
        elif inside and not line.startswith("|"):
            break
    assert rows, f"{path.name}: no table starting with {first_header!r}"
    return rows


def _readme_number(path: Path, label: str) -> int:
    """The integer in a README line `- label: N`."""
    found = re.search(rf"^- {re.escape(label)}: (\d+)$", path.read_text("utf-8"), re.MULTILINE)
    assert found, f"{path.name} states no '- {label}: N'"
    return int(found.group(1))


# --- items_xlang.jsonl -------------------------------------------------------------------


def test_every_item_has_the_schema_of_items_jsonl_and_cites_its_outlet_and_url() -> None:
    items = _items()
    assert items
    for item in items:
        keys = set(item)
        assert REQUIRED <= keys <= REQUIRED | OPTIONAL, (item["id"], keys ^ REQUIRED)
        assert item["lang"] in LANGS, item["id"]
        assert set(item["labels"]) <= set(TOPICS), item["id"]
        assert len(set(item["labels"])) == len(item["labels"]), item["id"]
        assert item["title"] or item["summary"], item["id"]
        assert item["outlet"].strip(), item["id"]
        assert _is_http_url(item["source_url"]), (item["id"], item["source_url"])
        assert item["text_kind"] in TEXT_KINDS, item["id"]
        assert (item["text_kind"] == TEXT_KINDS_NO_HEADLINE) == (not item["title"]), item["id"]
        assert item["split"] in {"dev", "test"}, item["id"]
        assert item.get("kind", "concept") == "concept", item["id"]
        if not item["labels"]:
            assert item.get("trap"), f"{item['id']}: a negative must say what makes it tempting"


def test_ids_and_urls_are_unique_and_new_to_the_existing_set() -> None:
    items = _items()
    ids = Counter(item["id"] for item in items)
    urls = Counter(item["source_url"] for item in items)
    assert not [key for key, n in ids.items() if n > 1]
    assert not [key for key, n in urls.items() if n > 1]
    old = [json.loads(line) for line in (EVAL / "items.jsonl").read_text("utf-8").splitlines()]
    assert not {item["id"] for item in old} & set(ids)
    assert not {item["source_url"] for item in old} & set(urls), "the sets must combine cleanly"


def test_founding_story_items_report_both_founding_topics() -> None:
    story = [item for item in _items() if "story" in item]
    assert {item["story"] for item in story} == {FOUNDING_STORY}
    for item in story:
        assert set(item["labels"]) == set(TOPICS), item["id"]
    assert len({item["lang"] for item in story}) >= 3


def test_about_a_third_is_dev_and_every_concept_topic_has_dev_and_test_positives() -> None:
    items = _items()
    dev = sum(item["split"] == "dev" for item in items)
    assert 0.25 <= dev / len(items) <= 0.4
    for name in TOPICS:
        splits = Counter(item["split"] for item in items if name in item["labels"])
        assert splits["dev"] >= 5 and splits["test"] >= 10, (name, splits)


def test_counts_match_the_readme() -> None:
    readme = EVAL / "README-xlang.md"
    items = _items()
    table = _readme_table(readme, "lang")
    computed: dict[str, list[str]] = {}
    for lang in [*sorted(LANGS), "all"]:
        chosen = [item for item in items if lang in (item["lang"], "all")]
        counts = [
            sum(TOPICS[0] in item["labels"] for item in chosen),
            sum(TOPICS[1] in item["labels"] for item in chosen),
            sum(bool(item["labels"]) for item in chosen),
            sum(not item["labels"] for item in chosen),
            sum(item.get("kind") == "concept" for item in chosen),
            sum(item["split"] == "dev" for item in chosen),
            len(chosen),
        ]
        computed[lang] = [str(n) for n in counts]
    assert table == computed
    assert _readme_number(readme, "founding-story items") == sum("story" in item for item in items)
    positives = [item for item in items if item["labels"]]
    assert sum(item["lang"] != "en" for item in positives) >= 40
    assert sum(item["lang"] == "de" for item in positives) >= 10
    assert sum(not item["labels"] for item in items) >= 40


# --- founding-multilingual.csv -----------------------------------------------------------


def _story_rows() -> list[dict[str, str]]:
    return _rows(STORIES / "founding-multilingual.csv")


def test_story_rows_have_the_columns_of_kursk_evacuations_csv_and_cite_their_source() -> None:
    with (STORIES / "founding-multilingual.csv").open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle))
    with (STORIES / "kursk-evacuations.csv").open(encoding="utf-8", newline="") as handle:
        assert header == next(csv.reader(handle)) == CSV_COLUMNS
    for row in _story_rows():
        assert row["lang"] in LANGS, row["id"]
        assert row["date_source"] in {"page", "event"}, row["id"]
        assert row["published"].endswith("Z"), row["id"]
        datetime.fromisoformat(row["published"])
        assert row["outlet"].strip() and row["title"].strip() and row["story"].strip(), row["id"]
        assert _is_http_url(row["url"]), row["id"]


def test_story_ids_and_urls_are_unique_also_when_combined_with_kursk_evacuations() -> None:
    rows = _story_rows()
    old = _rows(STORIES / "kursk-evacuations.csv")
    ids = [row["id"] for row in rows + old]
    assert len(ids) == len(set(ids))
    urls = [row["url"] for row in rows + old]
    assert len(urls) == len(set(urls))


def test_reports_of_one_story_fall_within_the_default_story_window() -> None:
    by_story: dict[str, list[datetime]] = defaultdict(list)
    for row in _story_rows() + _rows(STORIES / "kursk-evacuations.csv"):
        by_story[row["story"]].append(datetime.fromisoformat(row["published"]))
    for story, times in by_story.items():
        assert max(times) - min(times) <= timedelta(hours=72), story


def test_story_counts_and_reused_stories_match_the_readme() -> None:
    readme = STORIES / "README-founding.md"
    rows = _story_rows()
    langs: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        langs[row["story"]].add(row["lang"])
    table = _readme_table(readme, "story")
    assert set(table) == {f"`{story}`" for story in langs}
    for story, (languages, count) in table.items():
        key = story.strip("`")
        assert languages == ", ".join(sorted(langs[key])), story
        assert int(count) == sum(row["story"] == key for row in rows), story
    assert _readme_number(readme, "rows") == len(rows)
    assert _readme_number(readme, "stories") == len(langs)
    multi = sum(len(found) >= 2 for found in langs.values())
    assert _readme_number(readme, "stories in two or more languages") == multi
    assert multi >= 15 and len(rows) >= 60
    old_stories = {row["story"] for row in _rows(STORIES / "kursk-evacuations.csv")}
    reused = re.findall(r"^- reused: `([^`]+)`", readme.read_text("utf-8"), re.MULTILINE)
    assert reused and set(reused) == set(langs) & old_stories
