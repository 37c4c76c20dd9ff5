"""watcher.story.index: online clustering against open stories, bounded, and restorable."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from watcher.embed import Embedder, entry_text, load_embedder
from watcher.story.evidence import Evidence, evidence, topic_terms
from watcher.story.index import CANDIDATES, NEAREST, StoryIndex

DATA = Path(__file__).parent / "data" / "stories"
WINDOW = timedelta(hours=72)


@pytest.fixture(scope="module")
def model() -> Embedder:
    return load_embedder()


def kursk_rows() -> list[dict[str, str]]:
    with (DATA / "kursk-evacuations.csv").open(encoding="utf-8", newline="") as handle:
        return sorted(csv.DictReader(handle), key=lambda r: (r["published"], int(r["id"])))


def at(row: dict[str, str]) -> datetime:
    return datetime.fromisoformat(row["published"].replace("Z", "+00:00"))


def stream(
    rows: list[dict[str, str]], vectors: np.ndarray | None
) -> tuple[StoryIndex, dict[str, str]]:
    index = StoryIndex(WINDOW)
    index.configure("kursk", topic_terms(["Kursk evacuation", "evacuate Kursk residents"]))
    story_of = {}
    for n, row in enumerate(rows):
        ev = evidence(
            row["title"],
            row["summary"],
            at(row),
            lang=row["lang"],
            vector=None if vectors is None else vectors[n],
        )
        index.observe(ev)
        story_of[row["id"]] = index.assign("kursk", row["id"], ev, new_story_id=row["id"]).story_id
    return index, story_of


@pytest.mark.parametrize("with_vectors", [True, False])
def test_streamed_reports_form_their_stories_and_keep_apart_the_others(
    model: Embedder, with_vectors: bool
) -> None:
    rows = kursk_rows()
    vectors = (
        model.embed([entry_text(r["title"], r["summary"]) for r in rows]) if with_vectors else None
    )
    _, story_of = stream(rows, vectors)
    label = {r["id"]: r["story"] for r in rows}
    merged = [(a, b) for a in story_of for b in story_of if a < b and story_of[a] == story_of[b]]
    wrong = [(a, b) for a, b in merged if label[a] != label[b]]
    assert len(wrong) <= len(merged) // 10, wrong  # precision >= 0.9
    # Same-language reports of one story, with the same number, meet:
    for a, b in [("19", "20"), ("23", "24"), ("33", "34"), ("12", "14")]:
        assert story_of[a] == story_of[b], (a, b)
    # 68 evacuated on the 12th and 120 more on the 13th are two stories:
    assert story_of["20"] != story_of["23"]


def test_the_index_survives_a_restart_and_decides_the_same(model: Embedder) -> None:
    rows = kursk_rows()
    vectors = model.embed([entry_text(r["title"], r["summary"]) for r in rows])
    index, _ = stream(rows[:-5], vectors)
    back = StoryIndex.from_state(json.loads(json.dumps(index.to_state())))
    assert len(back) == len(index)
    for n, row in enumerate(rows[-5:], start=len(rows) - 5):
        ev = evidence(row["title"], row["summary"], at(row), lang=row["lang"], vector=vectors[n])
        before, after = index.find("kursk", ev), back.find("kursk", ev)
        assert after.story_id == before.story_id
        assert after.probability == pytest.approx(before.probability, abs=0.01)  # float16 vectors


def test_a_story_with_old_dates_stays_open_while_it_is_touched() -> None:
    index = StoryIndex(WINDOW)
    now = datetime(2025, 3, 22, tzinfo=UTC)
    old = evidence("Khinshtein: 68 civilians evacuated from Sudzha", "", now - timedelta(days=10))
    index.open("t", "s1", "e1", old, now=now)
    assert index.expire(now + timedelta(hours=71)) == 0
    later = evidence(
        "Khinshtein says 68 civilians evacuated from Sudzha", "", old.at + timedelta(hours=2)
    )
    assert index.find("t", later).story_id == "s1"
    assert index.expire(now + timedelta(hours=73)) == 1
    assert index.find("t", later).story_id is None


def test_candidates_stay_bounded_whatever_the_number_of_stories() -> None:
    index = StoryIndex(WINDOW)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    rng = np.random.default_rng(5)
    for i in range(3000):
        vec = rng.standard_normal(384).astype(np.float32)
        ev = evidence(
            f"Covid update {i} cases in district {i % 97} ward {i % 89}",
            "",
            base,
            vector=vec / np.linalg.norm(vec),
        )
        index.observe(ev)
        index.open("t", f"s{i}", f"e{i}", ev)
    query = evidence(
        "Covid update 17 cases in district 17 ward 17",
        "",
        base,
        vector=np.ones(384, dtype=np.float32) / np.sqrt(384),
    )
    assert len(index.candidates("t", query)) <= CANDIDATES + NEAREST


def test_without_embeddings_the_engine_still_decides() -> None:
    index = StoryIndex(WINDOW)
    t0 = datetime(2025, 3, 3, 13, 45, tzinfo=UTC)
    first = evidence("Еще 33 жителя Курской области, вывезенных ВСУ, вернулись в Россию", "", t0)
    again = evidence(
        "33 жителя Курской области вернулись из Украины в Россию", "", t0 + timedelta(hours=1)
    )
    assert isinstance(first, Evidence) and first.vector is None
    index.open("t", "s", "e1", first)
    assert index.find("t", again).story_id == "s"


def test_detach_undoes_an_attach_to_a_full_story() -> None:
    """A failed poll's attach is undone exactly: the member it pushed out of a full story is
    back, and the detached entry's rare words no longer lead to the story."""
    index = StoryIndex(WINDOW, members=3)
    index.configure("t", frozenset())
    t0 = datetime(2025, 2, 24, 12, 0, tzinfo=UTC)
    evs = [
        evidence(f"Sudzha shelter {n} takes in 46 evacuees from Gorodishche", "", t0)
        for n in range(3)
    ]
    index.open("t", "s", "e0", evs[0], t0)
    for n in (1, 2):
        index.attach("t", "s", f"e{n}", evs[n], t0 + timedelta(minutes=n))
    before = json.dumps(index.to_state(), sort_keys=True)
    late = evidence("Sudzha shelter 3 takes in 46 evacuees from Zvannoye", "", t0)
    index.attach("t", "s", "e3", late, t0 + timedelta(hours=1))
    story = index.story("t", "s")
    assert story is not None and [m.entry_id for m in story.members] == ["e0", "e2", "e3"]
    assert index.detach("t", "s", "e3", late)
    assert [m.entry_id for m in story.members] == ["e0", "e1", "e2"]
    assert json.dumps(index.to_state(), sort_keys=True) == before
    assert "s" not in index._topics["t"].by_postings(
        evidence("Zvannoye", "", t0)
    )  # its own rare word no longer leads to the story
    assert not index.detach("t", "s", "e3", late)  # once


def _bridge_evidence(index: StoryIndex, title: str, direction: np.ndarray) -> Evidence:
    """Evidence whose language-centred embedding points along `direction`."""
    ev = evidence(title, "", datetime(2025, 2, 24, 12, 0, tzinfo=UTC), lang="en")
    centre = index.stream.centres.get("en")
    assert centre is not None
    return ev.with_vector((centre + direction / np.linalg.norm(direction)).astype(np.float32))


def test_an_entry_sure_of_two_open_stories_merges_them() -> None:
    """Two reports opened apart (cosine 0) and a third that is each's story (cosine 0.71 to
    both): the third joins one story and the other folds into it, so a later report like
    the folded one finds the merged story instead of a story of its own; `unmerge` undoes it."""
    index = StoryIndex(WINDOW)
    index.configure("t", frozenset())
    u1, u2 = np.eye(384, dtype=np.float32)[:2]
    first = _bridge_evidence(index, "Shelling hits the Belovsky district overnight", u1)
    second = _bridge_evidence(index, "Families leave Krasnaya Yaruga by bus", u2)
    index.assign("t", "a", first, new_story_id="A")
    assert index.assign("t", "b", second, new_story_id="B").story_id == "B"
    before = json.dumps(index.to_state(), sort_keys=True)

    verdict = index.find("t", _bridge_evidence(index, "Border villages emptied", u1 + u2))
    assert verdict.story_id == "A" and verdict.bridges == ("B",)
    assert verdict.probability >= index.bridge
    undo = index.merge("t", "A", verdict.bridges)
    assert undo is not None and index.story("t", "B") is None
    merged = index.story("t", "A")
    assert merged is not None and [m.entry_id for m in merged.members] == ["a", "b"]
    later = _bridge_evidence(index, "More families leave Krasnaya Yaruga", u2 + 0.1 * u1)
    assert index.find("t", later).story_id == "A"

    index.unmerge(undo)
    assert json.dumps(index.to_state(), sort_keys=True) == before
    assert index.find("t", later).story_id == "B"


def test_no_bridge_below_the_bridge_probability() -> None:
    index = StoryIndex(WINDOW, bridge=2.0)  # never
    index.configure("t", frozenset())
    u1, u2 = np.eye(384, dtype=np.float32)[:2]
    index.assign("t", "a", _bridge_evidence(index, "Shelling hits Belovsky", u1), "A")
    index.assign("t", "b", _bridge_evidence(index, "Families leave Yaruga", u2), "B")
    verdict = index.assign("t", "c", _bridge_evidence(index, "Villages emptied", u1 + u2), "C")
    assert verdict.story_id == "A" and verdict.bridges == ()
    assert index.story("t", "B") is not None
