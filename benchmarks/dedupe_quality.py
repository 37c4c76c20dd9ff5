"""Quality of same-story detection on the labelled sets in tests/data/stories.

Run: .venv/bin/python benchmarks/dedupe_quality.py [--sweep] [--threshold T]

Two ways of forming the pairs that precision and recall are counted on:

- streaming (what the daemon does): entries go in time order through one `StoryIndex` with a
  72 h window (one topic); an entry `find`s an open story or opens a new one (`add`), and
  `expire` runs before each entry. Every pair of entries put in the same story is a
  predicted "same story" pair; every pair sharing a label is a true one.
- pairwise (the classifier alone): every pair of entries, predicted same when
  `same_story_score >= threshold`. Shown over all pairs (time ignored) and, for the hand-built
  set, over pairs published within 72 h of each other (the pairs the index can ever compare).

precision = predicted pairs that are true / predicted pairs;
recall = true pairs predicted / true pairs. The hand-built set mixes English, Russian and one
German report of the same event; text similarity cannot link languages, so recall is also
given over same-language pairs. The UCI labels are noisy (see tests/data/stories/README.md):
figures are also given with the two stories the aggregator split in two merged back.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rapidfuzz import fuzz, process

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from watcher.matching.dedupe import (  # noqa: E402
    NUMBER_SHARED,
    SAME_STORY_THRESHOLD,
    StoryIndex,
    StoryText,
    _Prepared,
    _score,
    prepare,
)

DATA = ROOT / "tests" / "data" / "stories"
WINDOW = timedelta(hours=72)
# Stories the aggregator split under two ids (same event, same headlines; see README.md).
UCI_SPLIT = {
    "dUtPmDoOKHwco0M4wh2hZy-Sx5CrM": "d85PwV5UxEUaHMM0to00pLgkAXkbM",  # Mt. Gox files in the US
    "dZ9Dt3M_96s6vvMSB5n0INMObqVuM": "dF8Q4zU4z14K2OMVh3PR3dzl6x5BM",  # "Cosmos" premiere
}


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    title: str
    summary: str
    at: datetime
    label: str
    lang: str = "en"


def load_kursk(titles_only: bool = False) -> list[Item]:
    with (DATA / "kursk-evacuations.csv").open(encoding="utf-8") as f:
        return [
            Item(
                row["id"],
                row["title"],
                "" if titles_only else row["summary"],
                datetime.fromisoformat(row["published"]),
                row["story"],
                row["lang"],
            )
            for row in csv.DictReader(f)
        ]


def load_uci(merge_split: bool = False) -> list[Item]:
    with (DATA / "uci-news-aggregator-subset.csv").open(encoding="utf-8") as f:
        items = [
            Item(
                row["ID"],
                row["TITLE"],
                "",
                datetime.fromtimestamp(int(row["TIMESTAMP"]) / 1000, UTC),
                row["STORY"],
            )
            for row in csv.DictReader(f)
        ]
    if merge_split:
        items = [
            Item(i.key, i.title, i.summary, i.at, UCI_SPLIT.get(i.label, i.label), i.lang)
            for i in items
        ]
    return items


def stream(items: Sequence[Item], threshold: float) -> dict[str, str]:
    """Entry key -> story id, as the daemon would assign them (one topic)."""
    index = StoryIndex(WINDOW, threshold=threshold)
    story: dict[str, str] = {}
    for item in sorted(items, key=lambda i: (i.at, i.key)):
        index.expire(item.at)
        found = index.find("t", item.title, item.summary, item.at)
        if found is None:
            found = item.key
            index.add(found, "t", item.title, item.summary, item.at)
        story[item.key] = found
    return story


@dataclass(slots=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tp_same_lang: int = 0
    fn_same_lang: int = 0

    def add(self, predicted: bool, a: Item, b: Item) -> None:
        true = a.label == b.label
        same_lang = a.lang == b.lang
        self.tp += predicted and true
        self.fp += predicted and not true
        self.fn += true and not predicted
        self.tp_same_lang += predicted and true and same_lang
        self.fn_same_lang += true and not predicted and same_lang

    def line(self, with_lang: bool) -> str:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        text = f"P={p:.3f} R={r:.3f}"
        if with_lang:
            rs = self.tp_same_lang / max(1, self.tp_same_lang + self.fn_same_lang)
            text += f" R(same-lang)={rs:.3f}"
        return text + f"  (tp={self.tp} fp={self.fp} fn={self.fn})"


def stream_counts(items: Sequence[Item], threshold: float) -> Counts:
    story = stream(items, threshold)
    counts = Counts()
    for a, b in itertools.combinations(items, 2):
        counts.add(story[a.key] == story[b.key], a, b)
    return counts


def _maybe_pairs(prepared: Sequence[_Prepared], threshold: float) -> set[tuple[int, int]]:
    """Every pair that could reach `threshold` (exact, so the pure-classifier figures are too).

    score <= max(title ratio, lead ratio) + NUMBER_SHARED, and ratio = (token_set + dice) / 2,
    so a pair needs, on title or lead, either a shared word (dice > 0) or token_set >= 2c,
    c = threshold - NUMBER_SHARED. Shared words come from an inverted index; token_set from
    rapidfuzz at C speed with score_cutoff.
    """
    cutoff = 2 * (threshold - NUMBER_SHARED)
    n = len(prepared)
    if cutoff <= 0:
        return set(itertools.combinations(range(n), 2))
    maybe: set[tuple[int, int]] = set()
    for field in ("title", "lead"):
        texts = [getattr(p, field) for p in prepared]
        holders: dict[str, list[int]] = defaultdict(list)
        for i, text in enumerate(texts):
            for word in set(text.split()):
                holders[word].append(i)
        for ids in holders.values():
            maybe.update(itertools.combinations(ids, 2))
        for i, text in enumerate(texts):
            if text:
                for _, _, j in process.extract(
                    text, texts, scorer=fuzz.token_set_ratio, score_cutoff=cutoff, limit=None
                ):
                    if j > i:
                        maybe.add((i, j))
    return maybe


def pairwise_counts(
    items: Sequence[Item], threshold: float, keep: Callable[[Item, Item], bool] = lambda a, b: True
) -> Counts:
    """The classifier alone: a pair is predicted same when same_story_score >= threshold."""
    prepared = [prepare(StoryText(i.title, i.summary)) for i in items]
    predicted = {
        (i, j)
        for i, j in _maybe_pairs(prepared, threshold)
        if _score(prepared[i], prepared[j]) >= threshold
    }
    counts = Counts()
    for i, j in itertools.combinations(range(len(items)), 2):
        a, b = items[i], items[j]
        if keep(a, b):
            counts.add((i, j) in predicted, a, b)
    return counts


def within_window(a: Item, b: Item) -> bool:
    return abs(a.at - b.at) <= WINDOW


def report(threshold: float) -> None:
    kursk, kursk_titles = load_kursk(), load_kursk(titles_only=True)
    uci_raw, uci = load_uci(), load_uci(merge_split=True)
    print(f"threshold {threshold:g}, window {WINDOW}")
    print(f"hand-built Kursk set: {len(kursk)} entries, {len({i.label for i in kursk})} stories")
    print("  streaming               ", stream_counts(kursk, threshold).line(True))
    print("  streaming, titles only  ", stream_counts(kursk_titles, threshold).line(True))
    print("  pairwise, pairs <= 72 h ", pairwise_counts(kursk, threshold, within_window).line(True))
    print("  pairwise, all pairs     ", pairwise_counts(kursk, threshold).line(True))
    print(f"UCI subset: {len(uci_raw)} titles, {len({i.label for i in uci_raw})} stories")
    print("  streaming, raw labels   ", stream_counts(uci_raw, threshold).line(False))
    print("  streaming, split merged ", stream_counts(uci, threshold).line(False))
    print("  pairwise, raw labels    ", pairwise_counts(uci_raw, threshold).line(False))
    print("  pairwise, split merged  ", pairwise_counts(uci, threshold).line(False))


def sweep() -> None:
    kursk, kursk_titles, uci = load_kursk(), load_kursk(titles_only=True), load_uci(True)
    print("threshold | Kursk stream | Kursk titles-only stream | UCI (split merged) stream")
    for threshold in range(30, 81, 5):
        rows = [stream_counts(s, threshold) for s in (kursk, kursk_titles, uci)]
        print(
            f"{threshold:9} | "
            + " | ".join(c.line(i < 2).split("  (")[0] for i, c in enumerate(rows))
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threshold", type=float, default=SAME_STORY_THRESHOLD)
    parser.add_argument("--sweep", action="store_true", help="streaming P/R per threshold")
    args = parser.parse_args()
    sweep() if args.sweep else report(args.threshold)


if __name__ == "__main__":
    main()
