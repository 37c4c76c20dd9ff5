"""Quality of the story engine on data it was not fitted on, streamed as the daemon would.

Run: .venv/bin/python benchmarks/story_quality.py [--members N] [--lexical] [--threshold P]

- UCI News Aggregator subset (tests/data/stories/uci-news-aggregator-subset.csv, titles
  only, 44 labelled clusters): entries in time order through one `StoryIndex` (one
  catch-all topic, 72 h window); every seen entry is first counted in the stream's word
  frequencies (`observe`), then `assign`ed. Pairwise precision/recall of "same story",
  B-cubed precision/recall/F1, and alerts per true story (stories opened per label; 1 is
  ideal). Also with the two stories the aggregator split in two merged back.
- Kursk/ICRC set (tests/data/stories/kursk-evacuations.csv, en/ru/de, 16 stories): the
  same streaming, topic words of the design's example topic ignored; pairwise P/R
  same-language and cross-language apart, and alerts per true story.
- Topic words: tests/data/stories/topic-word-pairs.csv, pairs that share only a topic's
  words, none of which may be merged.

SemEval figures (cross-validated) are printed by benchmarks/story_fit.py.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import subprocess
import sys
import types
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from story_fit import embed_cached  # noqa: E402

from watcher.embed import entry_text  # noqa: E402
from watcher.story import constants  # noqa: E402
from watcher.story import index as index_module  # noqa: E402
from watcher.story.evidence import DocFreq, evidence, topic_terms  # noqa: E402
from watcher.story.index import StoryIndex  # noqa: E402

DATA = ROOT / "tests" / "data" / "stories"
WINDOW = timedelta(hours=72)
UCI_SPLIT = {
    "dUtPmDoOKHwco0M4wh2hZy-Sx5CrM": "d85PwV5UxEUaHMM0to00pLgkAXkbM",  # Mt. Gox files in the US
    "dZ9Dt3M_96s6vvMSB5n0INMObqVuM": "dF8Q4zU4z14K2OMVh3PR3dzl6x5BM",  # "Cosmos" premiere
}
OLD = False  # --old: stream through watcher/matching/dedupe.py instead
BRIDGE = index_module.BRIDGE  # --bridge P; 2 = never merge open stories
KURSK_TOPIC = ["Kursk evacuation", "evacuate Kursk residents"]  # DESIGN.md's example topic


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    label: str
    lang: str
    at: datetime
    title: str
    summary: str
    source: str = ""  # the labelled set's file


def uci() -> list[Item]:
    with (DATA / "uci-news-aggregator-subset.csv").open(encoding="utf-8", newline="") as handle:
        return [
            Item(
                row["ID"],
                row["STORY"],
                "",
                datetime.fromtimestamp(int(row["TIMESTAMP"]) / 1000, UTC),
                row["TITLE"],
                "",
            )
            for row in csv.DictReader(handle)
        ]


LABELLED = ("kursk-evacuations.csv", "founding-multilingual.csv")  # story ids shared


def kursk(names: Sequence[str] = LABELLED) -> list[Item]:
    """The project's labelled story sets, combined by story id (README-founding.md)."""
    items: list[Item] = []
    for name in names:
        with (DATA / name).open(encoding="utf-8", newline="") as handle:
            items.extend(
                Item(
                    row["id"],
                    row["story"],
                    row["lang"],
                    datetime.fromisoformat(row["published"].replace("Z", "+00:00")),
                    row["title"],
                    row["summary"],
                    name,
                )
                for row in csv.DictReader(handle)
            )
    return items


def stream(
    items: Sequence[Item],
    *,
    lexical: bool,
    ignore: frozenset[str] = frozenset(),
    members: int = index_module.MEMBERS,
) -> tuple[dict[str, str], dict[str, str]]:
    """(story per item, the item that opened each story) after streaming in time order."""
    ordered = sorted(items, key=lambda item: (item.at, item.key))
    if OLD:
        return old_stream(ordered)
    vectors = None if lexical else embed_cached([entry_text(i.title, i.summary) for i in ordered])
    index = StoryIndex(WINDOW, members=members, bridge=BRIDGE)
    index.configure("t", ignore)
    story_of: dict[str, str] = {}
    opener: dict[str, str] = {}
    for n, item in enumerate(ordered):
        ev = evidence(
            item.title,
            item.summary,
            item.at,
            lang=item.lang or None,
            vector=None if vectors is None else vectors[n],
        )
        index.observe(ev)
        verdict = index.assign("t", item.key, ev, new_story_id=item.key, now=item.at)
        assert verdict.story_id is not None
        story_of[item.key] = verdict.story_id
        opener.setdefault(verdict.story_id, item.key)
        MERGED_INTO.update(dict.fromkeys(verdict.bridges, verdict.story_id))
    return story_of, opener


MERGED_INTO: dict[str, str] = {}  # story -> the story a bridge folded it into


def resolved(story_of: dict[str, str]) -> dict[str, str]:
    """Each entry's story once bridges are followed (the grouping the desk ends with; the
    alerts are those of `story_of`)."""

    def final(story: str) -> str:
        while story in MERGED_INTO:
            story = MERGED_INTO[story]
        return story

    return {key: final(story) for key, story in story_of.items()}


def pairwise(
    items: Sequence[Item], story_of: dict[str, str], label: dict[str, str], keep: object = None
) -> tuple[float, float, int, int]:
    tp = predicted = actual = 0
    for a, b in itertools.combinations(items, 2):
        if keep is not None and not keep(a, b):  # type: ignore[operator]
            continue
        same = label[a.key] == label[b.key]
        merged = story_of[a.key] == story_of[b.key]
        tp += same and merged
        predicted += merged
        actual += same
    return (
        tp / predicted if predicted else float("nan"),
        tp / actual if actual else float("nan"),
        predicted,
        actual,
    )


def bcubed(
    items: Sequence[Item], story_of: dict[str, str], label: dict[str, str]
) -> tuple[float, float, float]:
    by_story: dict[str, list[str]] = defaultdict(list)
    by_label: dict[str, list[str]] = defaultdict(list)
    for item in items:
        by_story[story_of[item.key]].append(item.key)
        by_label[label[item.key]].append(item.key)
    precision = recall = 0.0
    for item in items:
        cluster = by_story[story_of[item.key]]
        correct = sum(label[k] == label[item.key] for k in cluster)
        precision += correct / len(cluster)
        recall += correct / len(by_label[label[item.key]])
    p, r = precision / len(items), recall / len(items)
    return p, r, 2 * p * r / (p + r)


def alerts_per_story(opener: dict[str, str], label: dict[str, str]) -> float:
    per_label = Counter(label[item] for item in opener.values())
    return sum(per_label.values()) / len(per_label)


def run_uci(args: argparse.Namespace) -> list[str]:
    items = uci()
    story_of, opener = stream(items, lexical=args.lexical, members=args.members)
    lines = [
        "## UCI subset (titles only, streamed, unseen in fitting)",
        "",
        "| labels | pairwise P | pairwise R | B3 P | B3 R | B3 F1 | alerts/story |",
        "|---|---|---|---|---|---|---|",
    ]
    final = resolved(story_of)
    for name, merge, stories in (
        ("raw", {}, story_of),
        ("split stories merged", UCI_SPLIT, story_of),
        ("raw, bridges followed", {}, final),
    ):
        label = {i.key: merge.get(i.label, i.label) for i in items}
        p, r, _, _ = pairwise(items, stories, label)
        bp, br, bf = bcubed(items, stories, label)
        lines.append(
            f"| {name} | {p:.3f} | {r:.3f} | {bp:.3f} | {br:.3f} | {bf:.3f} |"
            f" {alerts_per_story(opener, label):.1f} |"
        )
    lines.append(
        f"\n{len(items)} entries, {len(set(story_of.values()))} stories opened,"
        f" {len({i.label for i in items})} labels\n"
    )
    return lines


OLD_DEDUPE = "a734ab8:watcher/matching/dedupe.py"  # the last commit with the old index


def old_index() -> Any:
    """The old same-story index (rapidfuzz, English-centred), loaded from git history."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", OLD_DEDUPE], capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType("old_dedupe")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, OLD_DEDUPE, "exec"), module.__dict__)
    return module.StoryIndex(WINDOW)


def old_stream(ordered: Sequence[Item]) -> tuple[dict[str, str], dict[str, str]]:
    """The same streaming through the old watcher/matching/dedupe.py index, for comparison."""
    index = old_index()
    story_of: dict[str, str] = {}
    opener: dict[str, str] = {}
    for item in ordered:
        index.expire(item.at)
        found = index.find("t", item.title, item.summary, item.at)
        if found is None:
            found = item.key
            index.add(found, "t", item.title, item.summary, item.at)
        story_of[item.key] = found
        opener.setdefault(found, item.key)
    return story_of, opener


def _langs(a: Item, b: Item) -> str:
    return "-".join(sorted((a.lang, b.lang)))


def _lang_pair(key: str) -> Any:
    return lambda a, b: _langs(a, b) == key


def _within(source: str) -> Any:
    return lambda a, b: a.source == b.source == source


def run_kursk(args: argparse.Namespace) -> list[str]:
    items = kursk()
    ignore = topic_terms(KURSK_TOPIC)
    story_of, opener = stream(items, lexical=args.lexical, ignore=ignore, members=args.members)
    label = {i.key: i.label for i in items}
    lines = [
        "## Kursk + founding sets (title + summary, streamed, unseen in fitting)",
        "",
        "| pairs | P | R | predicted | true |",
        "|---|---|---|---|---|",
    ]
    subsets: list[tuple[str, Any]] = [
        ("all", None),
        ("same-language", lambda a, b: a.lang == b.lang),
        ("cross-language", lambda a, b: a.lang != b.lang),
    ]
    for source in LABELLED:  # pairs within one set (stories are shared across sets)
        subsets.append((source.split("-")[0] + " set", _within(source)))
    lang_pairs = {_langs(a, b) for a, b in itertools.combinations(items, 2)}
    for key in sorted(lang_pairs, key=lambda k: (k.split("-")[0] != k.split("-")[1], k)):
        subsets.append((key, _lang_pair(key)))
    for name, keep in subsets:
        p, r, predicted, actual = pairwise(items, story_of, label, keep)
        lines.append(f"| {name} | {p:.2f} | {r:.2f} | {predicted} | {actual} |")
    p, r, predicted, actual = pairwise(items, resolved(story_of), label)
    lines.append(f"| all, bridges followed | {p:.2f} | {r:.2f} | {predicted} | {actual} |")
    lines.append(
        f"\nalerts per true story: {alerts_per_story(opener, label):.2f}"
        f" ({len(opener)} stories opened for {len(set(label.values()))} labels)\n"
    )
    return lines


def run_topic_words(args: argparse.Namespace) -> list[str]:
    path = DATA / "topic-word-pairs.csv"
    at = datetime(2021, 12, 1, tzinfo=UTC)
    merged = total = 0
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    stream_freq = DocFreq()  # the feeds' entries, as the daemon's stream would count them
    seen = {(r[f"title_{s}"], r[f"summary_{s}"]) for r in rows for s in "ab"}
    vectors = dict(
        zip(sorted(seen), embed_cached([entry_text(*k) for k in sorted(seen)]), strict=True)
    )
    for title, summary in sorted(seen):
        stream_freq.observe(
            evidence(title, summary, at, vector=None if args.lexical else vectors[(title, summary)])
        )
    for row in rows:
        index = StoryIndex(WINDOW, stream=stream_freq)
        texts = [
            entry_text(row["title_a"], row["summary_a"]),
            entry_text(row["title_b"], row["summary_b"]),
        ]
        vecs = [None, None] if args.lexical else list(embed_cached(texts))
        index.configure("t", topic_terms(row["topic"].split("|")))
        a = evidence(row["title_a"], row["summary_a"], at, vector=vecs[0])
        b = evidence(row["title_b"], row["summary_b"], at, vector=vecs[1])
        index.assign("t", "a", a, new_story_id="a")
        verdict = index.assign("t", "b", b, new_story_id="b")
        total += 1
        merged += verdict.story_id == "a"
    return ["## Pairs sharing only topic words", "", f"{merged} of {total} merged (must be 0)", ""]


def model_name(args: argparse.Namespace) -> str:
    if OLD:
        return "old dedupe.py"
    return "lexical only" if args.lexical else "embedding + lexical"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=index_module.MEMBERS)
    parser.add_argument("--lexical", action="store_true", help="no embeddings")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--old", action="store_true", help="the old dedupe.py on the same streams")
    parser.add_argument("--bridge", type=float, default=index_module.BRIDGE,
                        help="merge open stories an entry matches with this probability (2: never)")
    args = parser.parse_args(argv)
    global OLD, BRIDGE
    OLD = args.old
    BRIDGE = args.bridge
    if args.threshold is not None:
        constants.THRESHOLD = constants.LEXICAL_THRESHOLD = args.threshold
        constants.TITLE_THRESHOLD = args.threshold
    threshold = (
        f"{constants.LEXICAL_THRESHOLD}"
        if args.lexical
        else f"{constants.THRESHOLD} (title only {constants.TITLE_THRESHOLD})"
    )
    print(
        f"model: {model_name(args)}, members {args.members}, threshold {threshold},"
        f" bridge {BRIDGE}\n"
    )
    out = run_kursk(args) + ([] if OLD else run_topic_words(args)) + run_uci(args)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
