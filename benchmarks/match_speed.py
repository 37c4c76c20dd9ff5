"""Throughput of the match stage: entries per second against 10 and 100 topics.

    .venv/bin/python benchmarks/match_speed.py [--rounds 5]

Entries: the 1,437 real feed entries of tests/data/match_eval/feed_sample.jsonl (52 real
feeds in 10+ languages; title plus a summary cut to 40 words) and the 242 items of the
labelled evaluation set - mostly entries that match no topic, as in real feeds. Titles
average 8 words and summaries 22 (many feeds publish short ones), so the figures are also
given for the 466 entries whose summaries have 35-40 words.

Topics: the two founding topics of topics.toml plus generated ones that look like an
analyst's: each is built from the phrases and distinctive words of one real news story of
2014 (topic_vocab.json, from the UCI News Aggregator headlines), as any-phrases, an
all-phrase with a stricter threshold, or a boolean query with an exclusion.

One process, one thread; each figure is the best of --rounds passes over the entries, in
CPU time of this process (wall-clock time on a busy shared machine mostly measures the
neighbours).

--concepts adds topics by meaning: the same 100 topics with the two founding topics of
config/watcher.toml (about/like/unlike). Their entries are embedded once by the pipeline
(shared with the story engine); the figures are the matcher given those vectors, the
embedding model alone (batches of 32, wall-clock, OMP threads as watcher.embed sets them),
and the two together per entry.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from match_quality import EVAL_DIR, REPO, entry_of, load_items, load_topics

from watcher.embed import Embedder, load_embedder
from watcher.matching.match import Matcher, entry_vector_text
from watcher.model import Entry, Phrase, TopicRule


def _story_topic(index: int, story: dict[str, Any], other: dict[str, Any]) -> TopicRule:
    """One analyst-like topic about a 2014 story; three shapes in turn."""
    phrases, words = story["phrases"], story["words"]
    name = f"story-{index}"
    excluded = (Phrase(other["words"][0]),) if other["words"] else ()
    shape = index % 3
    if shape == 0:
        return TopicRule(name, any=tuple(Phrase(p) for p in (phrases or words)[:4]), none=excluded)
    if shape == 1:
        required = (Phrase(phrases[0], threshold=90.0),) if phrases else ()
        return TopicRule(name, any=tuple(Phrase(w) for w in words[:3]), all=required)
    terms = " OR ".join(f'"{p}"' for p in (phrases[:3] or words[:3]))
    query = f"({terms})" + (f" AND NOT {other['words'][-1]}" if other["words"] else "")
    return TopicRule(name, query=query)


def make_topics(count: int) -> list[TopicRule]:
    with (EVAL_DIR / "topic_vocab.json").open(encoding="utf-8") as handle:
        vocab = json.load(handle)
    topics = load_topics()
    for index in range(count - len(topics)):
        story, other = vocab[index % len(vocab)], vocab[(index + 7) % len(vocab)]
        topics.append(_story_topic(index, story, other))
    return topics[:count]


def load_entries() -> list[Entry]:
    with (EVAL_DIR / "feed_sample.jsonl").open(encoding="utf-8") as handle:
        feed = [json.loads(line) for line in handle]
    entries = [
        entry_of({"id": f"feed-{i}", "title": row["title"], "summary": row["summary"]})
        for i, row in enumerate(feed)
    ]
    return entries + [entry_of(item) for item in load_items()]


def measure(
    topics: Sequence[TopicRule], entries: Sequence[Entry], rounds: int
) -> tuple[float, int]:
    """(best entries per second, matches per pass)."""
    matcher = Matcher(topics)
    matches = sum(len(matcher.match(entry)) for entry in entries)  # warm-up and count
    best = 0.0
    for _ in range(rounds):
        start = time.process_time()  # CPU time: other jobs on a shared machine do not count
        for entry in entries:
            matcher.match(entry)
        best = max(best, len(entries) / (time.process_time() - start))
    return best, matches


def measure_concepts(entries: Sequence[Entry], rounds: int, sample: int) -> None:
    """Entries/s with the founding topics by meaning among 100: matcher, model, both."""
    model: Embedder = load_embedder()
    topics = load_topics(REPO / "config" / "watcher.toml") + make_topics(100)[2:]
    chosen = list(entries[:sample])
    start = time.perf_counter()
    texts = [entry_vector_text(entry) for entry in chosen]
    vectors = [row for i in range(0, len(texts), 32) for row in model.embed(texts[i:i + 32])]
    embed_rate = len(chosen) / (time.perf_counter() - start)
    matcher = Matcher(topics, model)
    matches = sum(len(matcher.match(e, None, v)) for e, v in zip(chosen, vectors, strict=True))
    best = 0.0
    for _ in range(rounds):
        start = time.process_time()
        for entry, vector in zip(chosen, vectors, strict=True):
            matcher.match(entry, None, vector)
        best = max(best, len(chosen) / (time.process_time() - start))
    both = 1.0 / (1.0 / best + 1.0 / embed_rate)
    print(f"{len(chosen)} entries, 100 topics of which 2 by meaning: matcher {best:,.0f}/s"
          f" ({matches} matches), embedding model {embed_rate:,.1f}/s, both {both:,.1f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--concepts", type=int, default=0, metavar="N",
                        help="also measure topics by meaning on the first N entries")
    args = parser.parse_args()
    entries = load_entries()
    long = [entry for entry in entries if len(entry.summary.split()) >= 35]
    print(f"single process; best of {args.rounds} passes; process CPU time")
    print(f"{'entries':<38}{'topics':>7}{'entries/s':>12}{'matches/pass':>14}")
    for label, chosen in (
        (f"all {len(entries)} (summaries <= 40 words)", entries),
        (f"{len(long)} with 35-40-word summaries", long),
    ):
        for count in (10, 100):
            rate, matches = measure(make_topics(count), chosen, args.rounds)
            print(f"{label:<38}{count:>7}{rate:>12,.0f}{matches:>14}")
    if args.concepts:
        measure_concepts(entries, args.rounds, args.concepts)


if __name__ == "__main__":
    main()
